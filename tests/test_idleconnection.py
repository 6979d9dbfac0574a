"""
What an idle kept-alive client connection holds, over real sockets: once
its response is written it keeps neither the request nor a producer
registered on its transport (each cost about 1 KiB per idle connection,
see benchmarks/idlememory.py); a response that fills the client's buffer
still pauses its member until the client reads.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.http.responsewriter import ResponseWriter
from playbalancer.http.wire import RequestHead
from playbalancer.testing import waitUntil

from tests.proxyharness import ProxyTestCase

MiB = 2**20


class KeptAlive(Protocol):
    """
    Sends one request and counts what comes back; reads only when told.
    """

    def __init__(self, request, reading=True):
        self.request = request
        self.received = b""
        self.reading = reading

    def connectionMade(self):
        if not self.reading:
            self.transport.pauseProducing()
        self.transport.write(self.request)

    def dataReceived(self, data):
        self.received += data

    def read(self):
        self.reading = True
        self.transport.resumeProducing()


def socketTransport(front):
    """
    The TCP transport under a front connection (the harness wraps it).
    """
    transport = front.transport
    return getattr(transport, "transport", transport)


class IdleConnectionTests(ProxyTestCase):
    async def connect(self, path, reading=True):
        request = f"GET {path} HTTP/1.1\r\nHost: idle.test\r\n\r\n".encode()
        client = await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), KeptAlive(request, reading)
        )
        self.addCleanup(client.transport.loseConnection)
        await waitUntil(lambda: len(self.front.connections) == 1, reactor)
        return client, next(iter(self.front.connections))

    async def test_idleHoldsNoRequestNorProducer(self):
        """
        After a small response on a kept-alive connection: the request is
        let go and nothing is registered as the transport's producer.
        """
        (member,) = self.startMembers("app1")
        self.startBalancer([member.url])
        client, front = await self.connect("/")
        await waitUntil(lambda: b"\r\n\r\n" in client.received and front.exchange is None, reactor)
        self.assertTrue(client.received.startswith(b"HTTP/1.1 200"), client.received[:80])
        self.assertTrue(front.transport.connected)
        self.assertIsNone(front.writer.request)
        self.assertIsNone(socketTransport(front).producer)

    async def test_fullBufferStillPausesTheMember(self):
        """
        A large response to a client that does not read: once bytes wait
        for it, the member's connection is registered as the producer and
        paused, so the proxy holds a bounded amount; when the client reads,
        the whole body arrives, and the idle connection then holds neither
        request nor producer.
        """
        (member,) = self.startMembers("app1")
        self.startBalancer([member.url])
        size = 16 * MiB
        client, front = await self.connect(f"/large?size={size}", reading=False)
        await waitUntil(lambda: socketTransport(front).producer is not None, reactor)
        pauser = socketTransport(front).producer
        await waitUntil(lambda: getattr(pauser, "paused", False), reactor)
        self.assertIsNotNone(front.writer.request)
        client.read()
        await waitUntil(lambda: len(client.received) >= size, reactor, timeout=30)
        head, _, body = client.received.partition(b"\r\n\r\n")
        self.assertEqual(len(body), size)
        await waitUntil(lambda: front.exchange is None, reactor)
        self.assertIsNone(front.writer.request)
        self.assertIsNone(socketTransport(front).producer)


class _Front:
    """
    The little of a front connection a L{ResponseWriter} uses here.
    """

    closing = False

    def __init__(self, transport):
        self.transport = transport
        self.done = []

    def close(self):
        self.transport.loseConnection()  # (as closeWhenSent does, with no producer)

    def responseDone(self, keepAlive):
        self.done.append(keepAlive)


class _Producer:
    paused = False

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False

    def stopProducing(self):
        pass


class WriterProducerTests(SynchronousTestCase):
    """
    L{ResponseWriter} registers the member as its transport's producer
    only once bytes wait for the client, and never on a transport that is
    already closing (review finding: a close while the member still sent,
    before anything had queued, then a write, registered a producer that
    could hold the close open).
    """

    def writer(self):
        transport = StringTransport()
        front = _Front(transport)
        writer = ResponseWriter(front, transport, None, 16384)
        writer.begin(RequestHead(b"GET", b"/", b"HTTP/1.1", []))
        writer.startResponse(200, b"OK", [], None, True)
        return transport, writer

    def test_registeredOnceBytesWait(self):
        transport, writer = self.writer()
        producer = _Producer()
        token = writer.pauseWhileFull(producer)
        self.assertIsNone(transport.producer)
        writer.writeBody(b"x" * 10)  # (a StringTransport keeps everything)
        self.assertIsNotNone(transport.producer)
        writer.stopPausing(token)
        self.assertIsNone(transport.producer)

    def test_notRegisteredOnAClosingTransport(self):
        transport, writer = self.writer()
        writer.pauseWhileFull(_Producer())
        writer.close()
        self.assertTrue(transport.disconnecting)
        writer.writeBody(b"x" * 10)
        self.assertIsNone(transport.producer)

    def test_staleTokenUndoesNothing(self):
        """
        L{ResponseWriter.stopPausing} with an earlier response's token
        leaves the current response's producer registered.
        """
        transport, writer = self.writer()
        earlier = writer.pauseWhileFull(_Producer())
        writer.stopPausing(earlier)
        current = writer.pauseWhileFull(_Producer())
        writer.writeBody(b"x" * 10)
        writer.stopPausing(earlier)
        self.assertIsNotNone(transport.producer)
        writer.stopPausing(current)
        self.assertIsNone(transport.producer)
