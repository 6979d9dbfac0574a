"""
The send deadline (C{send_timeout}), over real sockets: a client that
stops reading is cut off once it has taken no bytes for that long, with
the member request behind it, in HTTP mode, in upgrade tunnels and in TCP
mode; a client that reads slowly but steadily is not.
"""

from __future__ import annotations

from twisted.internet import reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from playbalancer.balancer import Balancer, Member
from playbalancer.endpoints import MemberEndpoints
from playbalancer.front import FrontSettings
from playbalancer.schedulers import RoundRobinScheduler
from playbalancer.sweeper import Sweeper
from playbalancer.tcp import TCPFrontFactory
from playbalancer.testing import waitUntil

from tests.proxyharness import ProxyTestCase

MiB = 2**20


class NeverReads(Protocol):
    """
    Sends C{request}, then stops reading for good (so it does not notice
    a reset either).
    """

    def __init__(self, request):
        self.request = request
        self.lost = False

    def connectionMade(self):
        self.transport.pauseProducing()
        self.transport.write(self.request)

    def connectionLost(self, reason):
        self.lost = True


class ReadsSlowly(Protocol):
    """
    Reads one chunk every C{pause} seconds, and counts the bytes.
    """

    def __init__(self, request, pause):
        self.request = request
        self.pause = pause
        self.received = b""
        self.lost = False
        self._call = None

    def connectionMade(self):
        self.transport.write(self.request)

    def dataReceived(self, data):
        self.received += data
        self.transport.pauseProducing()
        self._call = reactor.callLater(self.pause, self._resume)

    def _resume(self):
        self._call = None
        if not self.lost:
            self.transport.resumeProducing()

    def connectionLost(self, reason):
        self.lost = True
        if self._call is not None and self._call.active():
            self._call.cancel()


async def connect(testCase, port, protocol):
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), protocol)
    testCase.addCleanup(lambda: protocol.lost or protocol.transport.abortConnection())
    return protocol


class HTTPSendTimeoutTests(ProxyTestCase):
    async def test_clientsThatNeverReadAreCutOff(self):
        """
        Eight clients that ask for a large response and never read filled
        C{max_connections = 8} for good; with the send deadline each is cut
        off, its member request ends, and a ninth client is served.
        """
        (a,) = self.startMembers("app1")
        balancer = self.startBalancer(
            [a.url], settings=FrontSettings(maxConnections=8, sendTimeout=0.5)
        )
        request = b"GET /large?size=268435456 HTTP/1.1\r\nHost: x\r\n\r\n"
        clients = [NeverReads(request) for _ in range(8)]
        for client in clients:
            await connect(self, self.port, client)
        await waitUntil(lambda: balancer.member("app1").active == 8, reactor)
        # (The clients, reading nothing, do not notice the reset.)
        await waitUntil(lambda: not self.front.connections, reactor, timeout=20)
        await waitUntil(lambda: balancer.member("app1").active == 0, reactor)
        response, body = await self.fetch(self.client(persistent=False), "/")
        self.assertEqual(response.code, 200)

    async def test_afterOurOwnClose(self):
        """
        A response cut short (its member went away) is closed with
        C{loseConnection}, which waits for the buffer to drain; a client
        that never reads does not make it wait for ever.
        """
        (a,) = self.startMembers("app1")
        balancer = self.startBalancer([a.url], settings=FrontSettings(sendTimeout=1.0))
        client = NeverReads(b"GET /large?size=268435456 HTTP/1.1\r\nHost: x\r\n\r\n")
        await connect(self, self.port, client)
        await waitUntil(lambda: balancer.member("app1").active == 1, reactor)
        # (Once the response has started: a member gone before that is a
        # failure we answer ourselves, and the connection is kept.)
        (front,) = self.front.connections
        await waitUntil(
            lambda: front.exchange is not None and front.exchange.responseHead is not None, reactor
        )
        await a.stop()
        await waitUntil(lambda: not self.front.connections, reactor, timeout=20)

    async def test_slowSteadyReaderIsServed(self):
        """
        A client that takes a chunk every 0.2 s, well inside the deadline,
        gets its whole response.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url], settings=FrontSettings(sendTimeout=2.0))
        size = 2 * MiB
        request = b"GET /large?size=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % size
        client = ReadsSlowly(request, 0.2)
        await connect(self, self.port, client)
        await waitUntil(lambda: client.lost, reactor, timeout=60)
        head, _, body = client.received.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertEqual(len(body), size)

    async def test_tunnel(self):
        """
        After a 101, a member that floods a client that never reads.
        """
        flooding = Factory.forProtocol(_UpgradeThenFlood)
        flooding.opened = []
        self.addCleanup(lambda: [p.transport.abortConnection() for p in flooding.opened])
        port = reactor.listenTCP(0, flooding, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        balancer = self.startBalancer(
            [f"http://127.0.0.1:{port.getHost().port}"], settings=FrontSettings(sendTimeout=0.5)
        )
        client = NeverReads(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: flood\r\n\r\n"
        )
        await connect(self, self.port, client)
        await waitUntil(lambda: balancer.member("app1").active == 1, reactor)
        await waitUntil(lambda: not self.front.connections, reactor, timeout=20)
        await waitUntil(lambda: balancer.member("app1").active == 0, reactor)


class _Flood(Protocol):
    """
    Writes 64 KiB whenever the transport will take it, until closed.
    """

    def connectionMade(self):
        self.paused = False
        self.factory.opened.append(self)
        self.transport.registerProducer(self, True)
        self._more()

    def _more(self):
        while not self.paused and self.transport.connected:
            self.transport.write(b"x" * 65536)

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        self._more()

    def stopProducing(self):
        self.paused = True


class _UpgradeThenFlood(_Flood):
    def connectionMade(self):
        self.started = False

    def dataReceived(self, data):
        if not self.started:
            self.started = True
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: flood\r\n\r\n"
            )
            _Flood.connectionMade(self)


class TCPSendTimeoutTests(TestCase):
    async def test_clientThatNeverReads(self):
        member = Factory.forProtocol(_Flood)
        member.opened = []
        self.addCleanup(lambda: [p.transport.abortConnection() for p in member.opened])
        port = reactor.listenTCP(0, member, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        balancer = Balancer(
            "tcp",
            RoundRobinScheduler(),
            [Member("m", f"tcp://127.0.0.1:{port.getHost().port}")],
            reactor,
        )
        sweeper = Sweeper(reactor, interval=0.05)
        front = TCPFrontFactory(
            balancer, MemberEndpoints(reactor, 5).forMember, sweeper=sweeper, sendTimeout=0.5
        )
        listening = reactor.listenTCP(0, front, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        client = NeverReads(b"")
        await connect(self, listening.getHost().port, client)
        await waitUntil(lambda: balancer.member("m").active == 1, reactor)
        await waitUntil(lambda: not front.relays, reactor, timeout=20)
        await waitUntil(lambda: balancer.member("m").active == 0, reactor)
        await task.deferLater(reactor, 0, lambda: None)


class SteadyReader(Protocol):
    """
    Reads up to C{chunk} bytes every C{every} seconds straight from its
    socket (so a read takes only what the kernel holds), and counts them.
    """

    def __init__(self, request, chunk, every):
        self.request = request
        self.chunk = chunk
        self.every = every
        self.received = 0
        self.lost = False
        self._call = None

    def connectionMade(self):
        self.transport.stopReading()
        self.transport.write(self.request)
        self._call = reactor.callLater(self.every, self._read)

    def _read(self):
        self._call = None
        if self.lost:
            return
        try:
            data = self.transport.socket.recv(self.chunk)
        except BlockingIOError:
            data = None
        except OSError:
            data = b""
        if data == b"":
            self.transport.abortConnection()
            return
        if data:
            self.received += len(data)
        self._call = reactor.callLater(self.every, self._read)

    def connectionLost(self, reason):
        self.lost = True
        if self._call is not None and self._call.active():
            self._call.cancel()


class ProgressTests(ProxyTestCase):
    async def test_steadyReaderThroughKernelBuffers(self):
        """
        A client that reads steadily is never cut off, though our own
        buffer may not move for longer than C{send_timeout}: the kernel
        only takes more once a good part of its send queue has gone, and
        the bytes the client takes from that queue count as progress.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url], settings=FrontSettings(sendTimeout=0.5))
        size = 4 * MiB
        client = SteadyReader(
            b"GET /large?size=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % size,
            32768,
            0.05,
        )
        await connect(self, self.port, client)
        # Until the client reads the end of the stream (the balancer's side
        # closes once the kernel holds the rest).
        await waitUntil(lambda: client.lost, reactor, timeout=60)
        self.assertGreater(client.received, size)  # the head, and the whole body

    async def test_keepAliveKeepsTheBound(self):
        """
        The second of two pipelined responses to a slow reader is held to
        C{buffer_size} like the first (Twisted keeps a producer's "paused"
        flag after it is unregistered).
        """
        from playbalancer.flow import BUFFER_SIZE
        from playbalancer._net.rawsocket import unsentBytes
        from playbalancer._net.readsize import FIRST

        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        first = 4 * MiB
        request = b"GET /large?size=%d HTTP/1.1\r\nHost: x\r\n\r\n"
        client = SteadyReader(request % first + request % (256 * MiB), 16384, 0.01)
        await connect(self, self.port, client)
        await waitUntil(lambda: client.received > first + 4096, reactor, timeout=60)
        client.every = 3600  # stops reading
        await task.deferLater(reactor, 1.0, lambda: None)
        (front,) = self.front.connections
        self.assertLessEqual(unsentBytes(front.transport), BUFFER_SIZE + FIRST)


class _SendThenHalfClose(Protocol):
    """
    Sends 256 KiB (less than the kernel takes at once: nothing waits in
    the balancer's own buffer) and ends its side.
    """

    def connectionMade(self):
        self.factory.opened.append(self)
        self.transport.write(b"y" * (256 * 1024))
        self.transport.loseWriteConnection()


class TCPHalfCloseTests(TestCase):
    async def test_memberDoneClientNeverReads(self):
        """
        After the member's end of data, a client that takes nothing is
        cut off within C{send_timeout}, not after C{tunnel_idle_timeout}.
        """
        member = Factory.forProtocol(_SendThenHalfClose)
        member.opened = []
        port = reactor.listenTCP(0, member, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [p.transport.abortConnection() for p in member.opened])
        balancer = Balancer(
            "tcp",
            RoundRobinScheduler(),
            [Member("m", f"tcp://127.0.0.1:{port.getHost().port}")],
            reactor,
        )
        front = TCPFrontFactory(
            balancer,
            MemberEndpoints(reactor, 5).forMember,
            sweeper=Sweeper(reactor, interval=0.05),
            sendTimeout=0.5,
        )
        listening = reactor.listenTCP(0, front, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        # A client that never reads, with a small receive buffer: what the
        # member sent waits in the balancer's kernel send queue.
        import socket

        client = socket.socket()
        self.addCleanup(client.close)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", listening.getHost().port))
        await waitUntil(lambda: balancer.member("m").active == 1, reactor)
        await waitUntil(lambda: not front.relays, reactor, timeout=20)
        await waitUntil(lambda: balancer.member("m").active == 0, reactor)
