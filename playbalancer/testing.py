"""
Test doubles for playbalancer and for code built on it: members on real
sockets that record what reached them, members that misbehave, and a raw
HTTP client that shows the exact bytes of a response.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import WrappingFactory
from twisted.web import resource, server

from playbalancer.demo import TWISTD, DemoInstance


class HoldPage(resource.Resource):
    """
    A page that answers only when the test says so.

    @ivar held: the requests waiting for L{release}.
    """

    isLeaf = True

    def __init__(self):
        resource.Resource.__init__(self)
        self.held = []
        self.cancelled = []
        self._arrivals = []

    def render(self, request):
        self.held.append(request)
        request.notifyFinish().addErrback(lambda f: self.cancelled.append(request))
        waiting, self._arrivals = self._arrivals, []
        for d in waiting:
            d.callback(request)
        return server.NOT_DONE_YET

    def arrival(self):
        """
        A L{Deferred} that fires with the next request to arrive.
        """
        d = defer.Deferred()
        self._arrivals.append(d)
        return d

    def release(self, body=b"released\n"):
        """
        Answer every held request that is still connected.
        """
        held, self.held = self.held, []
        for request in held:
            if request not in self.cancelled:
                request.write(body)
                request.finish()


class _HeadersPage(resource.Resource):
    isLeaf = True

    def __init__(self, member):
        resource.Resource.__init__(self)
        self.member = member

    def render(self, request):
        request.setHeader(b"connection", b"X-Internal")
        request.setHeader(b"x-internal", b"secret")
        request.setHeader(b"keep-alive", b"timeout=5")
        request.responseHeaders.setRawHeaders(b"set-cookie", [b"a=1", b"b=2"])
        request.setHeader(b"content-location", self.member.url.encode() + b"/c")
        return b"headers\n"


class _RecordingSite(server.Site):
    def __init__(self, resource, seen):
        server.Site.__init__(self, resource)
        self.seen = seen

    def getResourceFor(self, request):
        self.seen.append(request)
        return server.Site.getResourceFor(self, request)

    def log(self, request):
        pass


class MemberServer:
    """
    A demo member listening on 127.0.0.1, recording every request that
    reached it and every connection made to it.

    Beyond the demo pages it has C{/hold} (a L{HoldPage}) and C{/headers}
    (a response with hop-by-hop headers and repeated C{Set-Cookie}).
    """

    def __init__(self, name, reactor, port=0, tls=None):
        self.name = name
        self.reactor = reactor
        self.requested = port
        #: C{(keyPath, certPath)} to serve HTTPS, or L{None}.
        self.tls = tls
        self.seen = []
        self.hold = HoldPage()
        self.connections = 0
        self._listening = None
        self._factory = None

    @property
    def url(self):
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self):
        instance = DemoInstance(self.name, self.requested, self.reactor)
        root = instance.resource()
        root.putChild(b"hold", self.hold)
        root.putChild(b"headers", _HeadersPage(self))
        self._factory = _CountingFactory(_RecordingSite(root, self.seen), self)
        if self.tls:
            from twisted.internet.ssl import PrivateCertificate

            key, cert = (open(path).read() for path in self.tls)
            options = PrivateCertificate.loadPEM(key + cert).options()
            self._listening = self.reactor.listenSSL(
                self.requested, self._factory, options, interface="127.0.0.1"
            )
        else:
            self._listening = self.reactor.listenTCP(
                self.requested, self._factory, interface="127.0.0.1"
            )
        self.port = self.requested = self._listening.getHost().port
        instance.port = self.port
        return self

    def stop(self):
        """
        Stop listening and cut every open connection, as a killed process
        would.  Fires when all are closed.
        """
        listening, self._listening = self._listening, None
        d = defer.maybeDeferred(listening.stopListening) if listening else defer.succeed(None)
        d.addCallback(lambda _: closeAll(self._factory, self.reactor))
        return d

    @property
    def paths(self):
        """
        The request targets that reached this member, in order.
        """
        return [request.uri for request in self.seen]


class _CountingFactory(WrappingFactory):
    def __init__(self, wrapped, member):
        WrappingFactory.__init__(self, wrapped)
        self.member = member

    def buildProtocol(self, addr):
        self.member.connections += 1
        return WrappingFactory.buildProtocol(self, addr)


def closeAll(wrappingFactory, reactor):
    """
    Abort every connection of a L{WrappingFactory}; fire when all are gone.
    """
    if wrappingFactory is None:
        return defer.succeed(None)
    for protocol in list(wrappingFactory.protocols):
        protocol.transport.abortConnection()
    return waitUntil(lambda: not wrappingFactory.protocols, reactor)


def waitUntil(condition, reactor, timeout=10.0):
    """
    Fire once C{condition()} is true, checking every few milliseconds;
    fail after C{timeout} seconds.
    """
    d = defer.Deferred()
    deadline = reactor.seconds() + timeout

    def check():
        if condition():
            d.callback(None)
        elif reactor.seconds() > deadline:
            d.errback(AssertionError("condition not met in time"))
        else:
            reactor.callLater(0.005, check)

    check()
    return d


class _BrokenMemberProtocol(Protocol):
    def connectionMade(self):
        self.buffer = b""

    def dataReceived(self, data):
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer or self.buffer is None:
            return
        self.factory.requests.append(self.buffer)
        self.buffer = b""
        how = self.factory.how
        if how == "close":
            self.transport.loseConnection()
        elif how == "reset":
            self.transport.abortConnection()
        elif how == "truncate-length":
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"y" * 10
            )
            self.transport.loseConnection()
        elif how == "truncate-chunked":
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"a\r\n" + b"z" * 10 + b"\r\n"
            )
            self.transport.loseConnection()
        elif how == "stall":
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        elif how == "silent":
            pass


class BrokenMember:
    """
    A member that misbehaves after reading a request head:

      - C{"close"}: closes without answering;
      - C{"reset"}: resets the connection;
      - C{"truncate-length"}: promises 100 bytes, sends 10, closes;
      - C{"truncate-chunked"}: sends one chunk, closes without the last one;
      - C{"stall"}: sends the headers and 3 of 100 bytes, then nothing;
      - C{"silent"}: never answers.

    @ivar requests: the raw request heads it read.
    """

    def __init__(self, how, reactor):
        self.how = how
        self.reactor = reactor
        self.requests = []

    def start(self):
        factory = Factory.forProtocol(_BrokenMemberProtocol)
        factory.how = self.how
        factory.requests = self.requests
        self._factory = WrappingFactory(factory)
        self._listening = self.reactor.listenTCP(0, self._factory, interface="127.0.0.1")
        self.port = self._listening.getHost().port
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def stop(self):
        d = defer.maybeDeferred(self._listening.stopListening)
        d.addCallback(lambda _: closeAll(self._factory, self.reactor))
        return d


class _RawClient(Protocol):
    def __init__(self, data, done):
        self.data = data
        self.done = done
        self.received = []

    def connectionMade(self):
        if self.data:
            self.transport.write(self.data)

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason):
        self.done.callback(b"".join(self.received))


def rawExchange(reactor, port, data, timeout=15.0):
    """
    Send raw bytes to 127.0.0.1:C{port} and collect everything that comes
    back until the server closes the connection.

    Fails if the server has not closed the connection after C{timeout}
    seconds.
    """
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    done = defer.Deferred()
    protocol = _RawClient(data, done)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    connected = connectProtocol(endpoint, protocol)
    expired = []

    def expire():
        expired.append(True)
        protocol.transport.abortConnection()

    timer = reactor.callLater(timeout, expire)

    def finished(result):
        if timer.active():
            timer.cancel()
        if expired:
            raise AssertionError(f"server did not close within {timeout}s; got {result!r}")
        return result

    connected.addErrback(done.errback)
    return done.addCallback(finished)


def freePorts(count):
    """
    C{count} distinct TCP ports on 127.0.0.1 that were free a moment ago,
    for child processes that must be told their port (there is a small
    race; in process, listen on port 0 instead).
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def freePort():
    """
    One port, as L{freePorts}.
    """
    return freePorts(1)[0]


class RawConversation(Protocol):
    """
    A raw client that sends in steps and waits for what comes back, for
    tests of timeouts and interim responses.

    Use L{RawConversation.open}; C{received} holds every byte so far and
    C{closed} fires when the connection ends (C{closedReason} says how).
    """

    def __init__(self, reactor):
        self.reactor = reactor
        self.received = b""
        self.closed = defer.Deferred()
        self.closedReason = None

    @classmethod
    def open(cls, reactor, port):
        """
        Connect to 127.0.0.1:C{port}; fires with the conversation.
        """
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        return connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), cls(reactor))

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.closedReason = reason
        self.closed.callback(None)

    def send(self, data):
        self.transport.write(data)

    def waitFor(self, needle, timeout=10.0):
        """
        Fire once C{needle} (bytes) was received; fail after C{timeout}.
        """
        return waitUntil(
            lambda: needle in self.received or self.closedReason is not None, self.reactor, timeout
        ).addCallback(lambda _: self._found(needle))

    def _found(self, needle):
        if needle not in self.received:
            raise AssertionError(f"{needle!r} never came; got {self.received!r}")
        return self.received

    def waitClosed(self, timeout=10.0):
        """
        Fire once the server closed the connection; fail after C{timeout}.
        """
        return waitUntil(lambda: self.closedReason is not None, self.reactor, timeout)

    def close(self):
        if self.closedReason is None:
            self.transport.abortConnection()
        return self.closed


class TwistdProcess:
    """
    A real C{twistd -n playbalancer --config PATH} child process, for tests
    of the whole program: started at once under this interpreter, its
    output in C{logPath} (or dropped), ended by its own PID with L{stop}.
    """

    def __init__(self, configPath, logPath=None):
        self.log = open(logPath, "w+") if logPath else None
        self.process = subprocess.Popen(
            [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "playbalancer", "--config", configPath],
            stdout=self.log if self.log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self):
        return self.process.pid

    def running(self):
        return self.process.poll() is None

    def kill(self):
        """
        SIGKILL: the process ends with no chance to clean up.
        """
        self.process.send_signal(signal.SIGKILL)

    def stop(self, grace=10.0):
        """
        SIGTERM, and SIGKILL if it is still there after C{grace} seconds;
        then close the log.
        """
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        else:
            self.process.wait()
        if self.log is not None:
            self.log.close()


def writeSelfSigned(directory, hosts=("localhost", "127.0.0.1")):
    """
    Write a fresh self-signed certificate (EC P-256, valid for a day) for
    C{hosts} (names or IP addresses) and its key into C{directory}.

    @return: C{(keyPath, certPath)}.
    """
    import datetime
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def altName(host):
        try:
            return x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            return x509.DNSName(host)

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([altName(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    keyPath = os.path.join(directory, "key.pem")
    certPath = os.path.join(directory, "cert.pem")
    with open(keyPath, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(certPath, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return keyPath, certPath
