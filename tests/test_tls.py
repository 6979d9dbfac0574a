"""
TLS over real sockets on 127.0.0.1: HTTP and TCP listeners that terminate
TLS (ALPN negotiated as RFC 7301 says), C{https://} members checked against
a configured authority, and the transport shortcuts (sends, read sizes,
send sizes), which must take the plain path on a TLS connection.
"""

from __future__ import annotations

import hashlib
import json

import treq
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketServerFactory,
)
from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    serverFromString,
    wrapClientTLS,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.tcp import Connection
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from playbalancer._net.rawsocket import closeWriting, setSendLimit, socketTransport
from playbalancer._net.readsize import LARGE, followReads
from playbalancer._net.sendnow import sendNow, sendSequenceNow
from playbalancer._net.tlslisten import negotiateProtocols, protocolsOf
from playbalancer.balancer import Balancer, Member
from playbalancer.endpoints import MemberEndpoints
from playbalancer.membertls import MemberTLS, loadAuthorities
from playbalancer.schedulers import RoundRobinScheduler
from playbalancer.tcp import TCPFrontFactory
from playbalancer.testing import MemberServer, waitUntil, writeSelfSigned

from tests.proxyharness import ProxyTestCase
from tests.test_websocket import _Client, _EchoMember

MiB = 2**20


def sslEndpoint(keyPath, certPath):
    return serverFromString(
        reactor, f"ssl:0:interface=127.0.0.1:privateKey={keyPath}:certKey={certPath}"
    )


async def listenTLS(testCase, factory, keyPath, certPath, protocols=None):
    """
    Listen with C{factory} on a fresh C{ssl:} endpoint, as the twistd plugin
    does; return the port number.
    """
    if protocols is None:
        protocols = protocolsOf(factory)
    endpoint = negotiateProtocols(sslEndpoint(keyPath, certPath), protocols)
    port = await endpoint.listen(factory)
    testCase.addCleanup(port.stopListening)
    return port.getHost().port


class _Collect(Protocol):
    """
    A raw client: sends C{request} once connected, keeps what comes back.
    """

    def __init__(self, request=b""):
        self.request = request
        self.received = b""
        self.lost = defer.Deferred()
        self.negotiated = None

    def connectionMade(self):
        if self.request:
            self.transport.write(self.request)

    def dataReceived(self, data):
        if self.negotiated is None:
            self.negotiated = getattr(self.transport, "negotiatedProtocol", None)
        self.received += data

    def connectionLost(self, reason):
        self.lost.callback(reason.value)


def tlsClientEndpoint(port, certPath, alpn=None):
    trust = loadAuthorities(certPath)[0]
    options = optionsForClientTLS("localhost", trustRoot=trust, acceptableProtocols=alpn)
    return wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", port))


class TLSFrontTests(ProxyTestCase):
    """
    The HTTP proxy behind an C{ssl:} listener.
    """

    def setUp(self):
        directory = self.mktemp()
        import os

        os.makedirs(directory)
        self.keyPath, self.certPath = writeSelfSigned(directory)
        self.trust = MemberTLS(loadAuthorities(self.certPath))

    async def startTLS(self, *names):
        members = self.startMembers(*names)
        self.startBalancer([m.url for m in members])
        # Listen as the plugin does, with the test's WrappingFactory inside
        # TLS (its connections are cut at cleanup); ALPN from the front.
        self.tlsPort = await listenTLS(
            self, self.frontFactory, self.keyPath, self.certPath, protocolsOf(self.front)
        )
        self.tlsBase = f"https://localhost:{self.tlsPort}"
        return members

    def tlsClient(self, persistent=True):
        pool = HTTPConnectionPool(reactor, persistent=persistent)
        self.addCleanup(pool.closeCachedConnections)
        return HTTPClient(Agent(reactor, contextFactory=self.trust, pool=pool))

    async def test_getWithALPN(self):
        """
        A client that offers C{h2} and C{http/1.1} by ALPN (as curl and
        browsers do) negotiates C{http/1.1} and gets its answer.
        """
        await self.startTLS("app1")
        client = _Collect(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        await connectProtocol(
            tlsClientEndpoint(self.tlsPort, self.certPath, [b"h2", b"http/1.1"]), client
        )
        reason = await client.lost
        self.assertTrue(client.received.startswith(b"HTTP/1.1 200 "), client.received[:200])
        self.assertEqual(client.negotiated, b"http/1.1")
        self.assertIsInstance(reason, ConnectionDone)

    async def test_noCommonProtocol(self):
        """
        A client that speaks only C{h2} gets C{no_application_protocol},
        and nothing reaches a member.
        """
        (a,) = await self.startTLS("app1")
        client = _Collect(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await connectProtocol(tlsClientEndpoint(self.tlsPort, self.certPath, [b"h2"]), client)
        reason = await client.lost
        self.assertEqual(client.received, b"")
        self.assertIn("no application protocol", str(reason))
        self.assertEqual(a.seen, [])

    async def test_withoutALPN(self):
        await self.startTLS("app1")
        response = await self.tlsClient().get(self.tlsBase + "/echo")
        echoed = json.loads(await treq.content(response))
        self.assertEqual(response.code, 200)
        headers = {name.lower(): value for name, value in echoed["headers"]}
        self.assertEqual(headers["x-forwarded-proto"], "https")

    async def test_keepAlive(self):
        """
        Several requests over one TLS connection.
        """
        await self.startTLS("app1")
        client = self.tlsClient()
        for _ in range(5):
            response = await client.get(self.tlsBase + "/")
            await treq.content(response)
            self.assertEqual(response.code, 200)
        self.assertEqual(self.front.accepted, 1)

    async def test_largeDownload(self):
        await self.startTLS("app1")
        response = await self.tlsClient().get(self.tlsBase + f"/large?size={16 * MiB}")
        body = await treq.content(response)
        self.assertEqual(response.code, 200)
        self.assertEqual(len(body), 16 * MiB)

    async def test_largeUpload(self):
        await self.startTLS("app1")
        body = bytes(range(256)) * (16 * MiB // 256)
        response = await self.tlsClient().post(self.tlsBase + "/echo", data=body)
        echoed = json.loads(await treq.content(response))
        self.assertEqual(response.code, 200)
        self.assertEqual(echoed["body_length"], 16 * MiB)

    async def test_webSocket(self):
        """
        A WebSocket upgrade over TLS, then messages both ways.
        """
        member = WebSocketServerFactory()
        member.protocol = _EchoMember
        member.opened, member.received = [], []
        port = reactor.listenTCP(0, member, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [p.transport.abortConnection() for p in member.opened])
        self.startBalancer([f"http://127.0.0.1:{port.getHost().port}"])
        tlsPort = await listenTLS(
            self, self.frontFactory, self.keyPath, self.certPath, protocolsOf(self.front)
        )
        client = WebSocketClientFactory(f"wss://localhost:{tlsPort}/chat")
        client.protocol = _Client
        client.protocols, client.messages, client.closed = [], [], defer.Deferred()
        await tlsClientEndpoint(tlsPort, self.certPath, [b"http/1.1"]).connect(client)
        await waitUntil(lambda: client.messages, reactor)
        self.assertEqual(client.messages, [b"hello from the member"])
        client.protocols[0].sendMessage(b"\x07" * 100000, isBinary=True)
        await waitUntil(lambda: len(client.messages) == 2, reactor)
        self.assertEqual(client.messages[1], b"\x07" * 100000)
        client.protocols[0].sendClose(1000)
        self.assertEqual(await client.closed, (True, 1000))


class HTTPSMemberTests(ProxyTestCase):
    """
    C{https://} members, checked against a configured authority.
    """

    def setUp(self):
        import os

        directory = self.mktemp()
        os.makedirs(directory)
        self.keyPath, self.certPath = writeSelfSigned(directory)

    def startTLSMember(self):
        member = MemberServer("secure", reactor, tls=(self.keyPath, self.certPath)).start()
        self.addCleanup(member.stop)
        return member

    def startBalancerWith(self, url, tls):
        self.startBalancer([url], memberTLS=tls)

    async def test_trustedAuthority(self):
        member = self.startTLSMember()
        self.assertTrue(member.url.startswith("https://127.0.0.1:"))
        self.startBalancerWith(member.url, MemberTLS(loadAuthorities(self.certPath)))
        client = self.client()
        for _ in range(3):
            response, body = await self.fetch(client, "/large?size=1000000")
            self.assertEqual((response.code, len(body)), (200, 1000000))
        self.assertEqual(member.connections, 1)  # pooled, over TLS

    async def test_untrustedMemberRefused(self):
        """
        A member whose certificate the balancer does not trust gets no
        request: the client gets 502 (or 503 once it is down).
        """
        member = self.startTLSMember()
        self.startBalancerWith(member.url, MemberTLS())  # the system's authorities
        response, body = await self.fetch(self.client(), "/echo")
        self.assertIn(response.code, (502, 503))
        self.assertEqual(member.seen, [])

    async def test_verifyOff(self):
        member = self.startTLSMember()
        self.startBalancerWith(member.url, MemberTLS(verify=False))
        response, body = await self.fetch(self.client(), "/")
        self.assertEqual(response.code, 200)


class _Echo(Protocol):
    """
    A TCP member: greets, echoes, and closes after C{bye}.
    """

    def connectionMade(self):
        self.transport.write(b"hello\n")

    def dataReceived(self, data):
        self.transport.write(data)
        if b"bye" in data:
            self.transport.loseConnection()


class TLSTCPModeTests(TestCase):
    """
    TCP mode behind an C{ssl:} listener: TLS ends at the balancer and plain
    bytes are relayed.
    """

    async def test_relayAndCleanClose(self):
        import os

        directory = self.mktemp()
        os.makedirs(directory)
        keyPath, certPath = writeSelfSigned(directory)
        memberPort = reactor.listenTCP(0, Factory.forProtocol(_Echo), interface="127.0.0.1")
        self.addCleanup(memberPort.stopListening)
        balancer = Balancer(
            "tcp",
            RoundRobinScheduler(),
            [Member("m", f"tcp://127.0.0.1:{memberPort.getHost().port}")],
            reactor,
        )
        front = TCPFrontFactory(balancer, MemberEndpoints(reactor, 5).forMember)
        wrapped = WrappingFactory(front)
        self.addCleanup(lambda: [p.transport.abortConnection() for p in list(wrapped.protocols)])
        self.assertEqual(protocolsOf(front), ())
        port = await listenTLS(self, wrapped, keyPath, certPath, ())
        # A client offering ALPN still connects: TCP mode answers no ALPN.
        client = _Collect(b"one two bye")
        await connectProtocol(tlsClientEndpoint(port, certPath, [b"h2", b"http/1.1"]), client)
        reason = await client.lost
        self.assertEqual(client.received, b"hello\none two bye")
        self.assertEqual(client.negotiated, None)
        # The member's close reached the client as a clean TLS close.
        self.assertIsInstance(reason, ConnectionDone)


class _Keep(Protocol):
    def connectionMade(self):
        self.factory.connected.callback(self)


class ShortcutTests(TestCase):
    """
    The shortcuts that use a socket transport's internals find the socket
    through plain wrappers and take the plain path on TLS.
    """

    async def connectedPair(self, tls):
        serverFactory = Factory.forProtocol(_Keep)
        serverFactory.connected = defer.Deferred()
        if tls:
            import os

            directory = self.mktemp()
            os.makedirs(directory)
            keyPath, certPath = writeSelfSigned(directory)
            port = await sslEndpoint(keyPath, certPath).listen(WrappingFactory(serverFactory))
            endpoint = tlsClientEndpoint(port.getHost().port, certPath)
        else:
            port = reactor.listenTCP(0, WrappingFactory(serverFactory), interface="127.0.0.1")
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        self.addCleanup(port.stopListening)
        client = _Collect()
        await connectProtocol(endpoint, client)
        server = await serverFactory.connected
        self.addCleanup(server.transport.abortConnection)
        return server, client

    async def test_plainWrapperFindsTheSocket(self):
        server, client = await self.connectedPair(tls=False)
        raw = socketTransport(server.transport)
        self.assertIsInstance(raw, Connection)
        followReads(server.transport, 65536)
        self.assertEqual(raw.bufferSize, LARGE)
        setSendLimit(server.transport, 1 << 20)
        self.assertEqual(raw.SEND_LIMIT, 1 << 20)
        sendNow(server.transport, b"abc")
        self.assertEqual(raw.dataBuffer, b"")  # sent at once, not queued
        await waitUntil(lambda: client.received == b"abc", reactor)

    async def test_tlsTakesThePlainPath(self):
        server, client = await self.connectedPair(tls=True)
        transport = server.transport  # a WrappingFactory wrapper over TLS
        self.assertIsNone(socketTransport(transport))
        underneath = transport.transport.transport  # the TCP connection
        self.assertIsInstance(underneath, Connection)
        size, limit = underneath.bufferSize, underneath.SEND_LIMIT
        followReads(transport, 10 * MiB)
        setSendLimit(transport, 8 * MiB)
        self.assertEqual((underneath.bufferSize, underneath.SEND_LIMIT), (size, limit))
        # Bytes written go through TLS: the client reads them decrypted.
        sendNow(transport, b"first ")
        sendSequenceNow(transport, [b"second ", b"third"])
        await waitUntil(lambda: client.received == b"first second third", reactor)
        digest = hashlib.sha256(client.received).hexdigest()
        self.assertEqual(digest, hashlib.sha256(b"first second third").hexdigest())
        # Done writing: a whole, clean TLS close rather than a half-close.
        closeWriting(transport)
        reason = await client.lost
        self.assertIsInstance(reason, ConnectionDone)


class TwistdTLSTests(TestCase):
    """
    The whole program with TLS everywhere it can be: an C{ssl:} HTTP
    listener, an C{ssl:} TCP-mode listener, the manager on an C{ssl:}
    endpoint, and an C{https://} member checked against C{tls_ca_file} by
    live traffic and by health checks.
    """

    timeout = 90

    async def test_everything(self):
        import os

        from twisted.internet import task

        from playbalancer.testing import TwistdProcess, freePorts

        directory = self.mktemp()
        os.makedirs(directory)
        keyPath, certPath = writeSelfSigned(directory)
        member = MemberServer("secure", reactor, tls=(keyPath, certPath)).start()
        self.addCleanup(member.stop)
        echoPort = reactor.listenTCP(0, Factory.forProtocol(_Echo), interface="127.0.0.1")
        self.addCleanup(echoPort.stopListening)
        web, tcp, manager = freePorts(3)
        tlsOptions = f"interface=127.0.0.1:privateKey={keyPath}:certKey={certPath}"
        config = os.path.join(directory, "playbalancer.toml")
        with open(config, "w") as f:
            f.write(
                f"""
[[listen]]
endpoint = "ssl:{web}:{tlsOptions}"
balancer = "web"

[[listen]]
endpoint = "ssl:{tcp}:{tlsOptions}"
mode = "tcp"
balancer = "echo"

[balancer.web]
tls_ca_file = "{certPath}"
[balancer.web.health]
interval = 0.2
rise = 1
[[balancer.web.member]]
name = "secure"
url = "{member.url}"

[balancer.echo]
[[balancer.echo.member]]
name = "echo"
url = "tcp://127.0.0.1:{echoPort.getHost().port}"

[manager]
endpoint = "ssl:{manager}:{tlsOptions}"
"""
            )
        child = TwistdProcess(config, os.path.join(directory, "twistd.log"))
        self.addCleanup(child.stop)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        client = HTTPClient(
            Agent(reactor, contextFactory=MemberTLS(loadAuthorities(certPath)), pool=pool)
        )

        async def status():
            response = await client.get(f"https://localhost:{manager}/api/status")
            return json.loads(await treq.content(response))

        # The manager answers over TLS, and the health checks (over TLS,
        # trusting tls_ca_file) find the member up.
        for _ in range(300):
            self.assertTrue(child.running(), "twistd exited")
            try:
                secure = (await status())["balancers"]["web"]["members"]["secure"]
                if secure["healthy"] and secure["check_passes"] >= 1:
                    break
            except Exception:
                pass
            await task.deferLater(reactor, 0.05, lambda: None)
        else:
            self.fail("the https member never came up")
        checks = len(member.seen)
        self.assertTrue(checks >= 1)

        # A client that offers h2 and HTTP/1.1 (as curl and browsers do)
        # gets HTTP/2: its preface is answered with the server's SETTINGS.
        h2 = _Collect(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        await connectProtocol(tlsClientEndpoint(web, certPath, [b"h2", b"http/1.1"]), h2)
        await waitUntil(lambda: h2.negotiated is not None, reactor)
        self.assertEqual(h2.negotiated, b"h2")
        self.assertEqual(h2.received[3:4], b"\x04")  # a SETTINGS frame
        h2.transport.loseConnection()
        await h2.lost

        # HTTP/1.1 over TLS, by ALPN, to an https member.
        request = f"GET /echo HTTP/1.1\r\nHost: localhost:{web}\r\nConnection: close\r\n\r\n"
        raw = _Collect(request.encode())
        await connectProtocol(tlsClientEndpoint(web, certPath, [b"http/1.1"]), raw)
        await raw.lost
        self.assertTrue(raw.received.startswith(b"HTTP/1.1 200 "), raw.received[:300])
        self.assertEqual(raw.negotiated, b"http/1.1")
        self.assertIn(b'"instance": "secure"', raw.received)

        # TCP mode: TLS ends at the balancer, plain bytes to the member.
        relay = _Collect(b"ping bye")
        await connectProtocol(tlsClientEndpoint(tcp, certPath, [b"h2", b"http/1.1"]), relay)
        reason = await relay.lost
        self.assertEqual(relay.received, b"hello\nping bye")
        self.assertIsInstance(reason, ConnectionDone)


class MoreTLSPromisesTests(ProxyTestCase):
    """
    The rest of what the README promises about TLS.
    """

    def setUp(self):
        import os

        directory = self.mktemp()
        os.makedirs(directory)
        self.directory = directory
        self.keyPath, self.certPath = writeSelfSigned(directory)

    async def test_memberNameMismatchRefusedAndDown(self):
        """
        A member whose certificate is not for the host in its URL (here,
        one for C{localhost} only, reached as C{127.0.0.1}) gets no
        request, and counts as down.
        """
        import os

        other = os.path.join(self.directory, "other")
        os.makedirs(other)
        key, cert = writeSelfSigned(other, hosts=("localhost",))
        member = MemberServer("secure", reactor, tls=(key, cert)).start()
        self.addCleanup(member.stop)
        balancer = self.startBalancer([member.url], memberTLS=MemberTLS(loadAuthorities(cert)))
        response, body = await self.fetch(self.client(), "/echo")
        self.assertIn(response.code, (502, 503))
        self.assertEqual(member.seen, [])
        self.assertFalse(balancer.member("app1").healthy)

    async def test_untrustedMemberCountsAsDown(self):
        member = MemberServer("secure", reactor, tls=(self.keyPath, self.certPath)).start()
        self.addCleanup(member.stop)
        balancer = self.startBalancer([member.url], memberTLS=MemberTLS())
        await self.fetch(self.client(), "/echo")
        self.assertFalse(balancer.member("app1").healthy)
        self.assertEqual(member.seen, [])

    async def test_tcpListenerPassesTLSThrough(self):
        """
        A C{tcp:} TCP-mode listener in front of a TLS member passes TLS
        through: the client gets the member's certificate and its answer.
        """
        member = MemberServer("secure", reactor, tls=(self.keyPath, self.certPath)).start()
        self.addCleanup(member.stop)
        balancer = Balancer(
            "tcp", RoundRobinScheduler(), [Member("m", f"tcp://127.0.0.1:{member.port}")], reactor
        )
        front = TCPFrontFactory(balancer, MemberEndpoints(reactor, 5).forMember)
        wrapped = WrappingFactory(front)
        port = reactor.listenTCP(0, wrapped, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [p.transport.abortConnection() for p in list(wrapped.protocols)])
        pool = HTTPConnectionPool(reactor, persistent=False)
        client = HTTPClient(
            Agent(reactor, contextFactory=MemberTLS(loadAuthorities(self.certPath)), pool=pool)
        )
        response = await client.get(f"https://localhost:{port.getHost().port}/echo")
        echoed = json.loads(await treq.content(response))
        self.assertEqual((response.code, echoed["instance"]), (200, "secure"))

    def test_badKeyStopsStartup(self):
        """
        An C{ssl:} listener whose key cannot be read stops start-up with
        one line naming the key, and no traceback.
        """
        import os
        import subprocess
        import sys

        from playbalancer.demo import TWISTD

        config = os.path.join(self.directory, "bad.toml")
        with open(config, "w") as f:
            f.write(
                f"""
[[listen]]
endpoint = "ssl:0:interface=127.0.0.1:privateKey={self.directory}/missing.pem:certKey={self.certPath}"
balancer = "web"

[balancer.web]
[[balancer.web.member]]
name = "app1"
url = "http://127.0.0.1:9"
"""
            )
        result = subprocess.run(
            [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "playbalancer", "--config", config],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
            timeout=60,
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", result.stdout + result.stderr)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn("listen[0].endpoint", lines[0])
