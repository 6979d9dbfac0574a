"""
Member responses that are odd but real, over real sockets: interim (1xx)
responses passed on, framing headers on responses that cannot have a body,
chunk extensions with whitespace, a 101 nobody asked for.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol

from playbalancer.testing import rawExchange, waitUntil

from tests.proxyharness import ProxyTestCase


class _Scripted(Protocol):
    """
    Answers every request head with the factory's C{answer} bytes and
    keeps the connection open.
    """

    def connectionMade(self):
        self.factory.connections.append(self)
        self.buffer = b""

    def dataReceived(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.factory.heads.append(head)
            delay = getattr(self.factory, "delay", 0)
            if delay:
                reactor.callLater(delay, self._answer)
            else:
                self._answer()

    def _answer(self):
        if self.transport.connected:
            self.transport.write(self.factory.answer)

    def connectionLost(self, reason):
        self.factory.lost += 1


class InteropTests(ProxyTestCase):
    def startScripted(self, answer):
        factory = Factory.forProtocol(_Scripted)
        factory.answer = answer
        factory.heads, factory.connections, factory.lost = [], [], 0
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [c.transport.abortConnection() for c in factory.connections])
        self.scripted = factory
        self.startBalancer([f"http://127.0.0.1:{port.getHost().port}"])
        return factory

    async def test_earlyHintsPassedOn(self):
        """
        RFC 9110 15.2: a proxy forwards 1xx responses.  A 103 Early Hints
        with its Link headers, and a 102, reach an HTTP/1.1 client before
        the final response.
        """
        self.startScripted(
            b"HTTP/1.1 102 Processing\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        )
        raw = await rawExchange(
            reactor, self.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\n"), raw)
        self.assertIn(b"Link: </style.css>; rel=preload; as=style\r\n\r\nHTTP/1.1 200 OK\r\n", raw)
        self.assertTrue(raw.endswith(b"\r\n\r\nok"), raw)

    async def test_endlessInterimResponses(self):
        """
        A member that sends interim responses without end gets 502 after
        a bound, and a reasonable number of them are passed on.
        """
        self.startScripted(b"HTTP/1.1 102 Processing\r\n\r\n" * 2000)
        raw = await rawExchange(
            reactor, self.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        self.assertIn(b"HTTP/1.1 502 ", raw)
        self.assertEqual(raw.count(b"HTTP/1.1 102 Processing"), 8)
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_noInterimToHTTP10(self):
        self.startScripted(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        )
        raw = await rawExchange(reactor, self.port, b"GET / HTTP/1.0\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 OK\r\n"), raw)

    async def test_upgradeNobodyAskedFor(self):
        """
        A 101 to a request that asked for no upgrade: 502, the member
        connection is closed, and nothing breaks on the reactor.
        """
        factory = self.startScripted(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        raw = await rawExchange(
            reactor, self.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 502 "), raw)
        await waitUntil(lambda: factory.lost == 1, reactor)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(self.balancer.member("app1").active, 0)

    async def test_headWithTransferEncoding(self):
        """
        RFC 9112 6.1 allows Transfer-Encoding on a response to HEAD: it is
        bodiless, the member stays healthy, and its connection is reused
        (as after any HEAD: its length or coding is the GET's; stray bytes
        would be seen by the check before reuse).
        """
        factory = self.startScripted(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Member: yes\r\n\r\n"
        )
        for _ in range(3):
            raw = await rawExchange(
                reactor, self.port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            self.assertTrue(raw.startswith(b"HTTP/1.1 200 OK\r\n"), raw)
            self.assertIn(b"X-Member: yes", raw)
            self.assertNotIn(b"transfer-encoding", raw.lower())
            self.assertTrue(raw.endswith(b"\r\n\r\n"), raw)
        self.assertTrue(self.balancer.member("app1").healthy)
        self.assertEqual((len(factory.connections), factory.lost), (1, 0))

    async def test_204WithABodyNotReused(self):
        """
        A 204 that speaks of a body is not the member's usual: its
        connection is not reused, in case the body comes anyway.
        """
        factory = self.startScripted(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")
        for _ in range(2):
            raw = await rawExchange(
                reactor, self.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            self.assertTrue(raw.startswith(b"HTTP/1.1 204 "), raw)
        await waitUntil(lambda: factory.lost == 2, reactor)
        self.assertEqual(len(factory.connections), 2)

    async def test_chunkExtensionWithWhitespace(self):
        """
        RFC 9112 7.1.1 allows whitespace before a chunk extension.
        """
        self.startScripted(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 ;a=b\r\nhello\r\n0\r\n\r\n"
        )
        raw = await rawExchange(
            reactor, self.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 OK\r\n"), raw)
        self.assertIn(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n", raw)
        self.assertTrue(self.balancer.member("app1").healthy)


class _Dribbling(Protocol):
    """
    Answers as soon as a request head arrives, with a body sent 64 KiB
    every 0.05 s (still coming when the client stops sending).
    """

    def connectionMade(self):
        self.factory.connections.append(self)
        self.started = False
        self.call = None

    def dataReceived(self, data):
        if not self.started:
            self.started = True
            self.left = self.factory.size
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.left)
            self._more()

    def _more(self):
        self.call = None
        if self.left and self.transport.connected:
            piece = min(self.left, 65536)
            self.left -= piece
            self.transport.write(b"e" * piece)
            self.call = reactor.callLater(0.05, self._more)

    def connectionLost(self, reason):
        if self.call is not None and self.call.active():
            self.call.cancel()


class EarlyAnswerTests(ProxyTestCase):
    async def test_bodyTimeoutDoesNotCutAnEarlyAnswer(self):
        """
        A member that answers before the request body is complete: a client
        that then stops sending its body (it has its answer) gets the whole
        response, however long it takes to read.
        """
        from playbalancer.front import FrontSettings

        from tests.test_sendtimeout import SteadyReader, connect

        size = 2 * 2**20
        factory = Factory.forProtocol(_Dribbling)
        factory.size = size
        factory.connections = []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [c.transport.abortConnection() for c in factory.connections])
        self.startBalancer(
            [f"http://127.0.0.1:{port.getHost().port}"],
            settings=FrontSettings(bodyTimeout=0.3, minBodyRate=0.0),
        )
        client = SteadyReader(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"b" * 70000,
            32768,
            0.02,
        )
        await connect(self, self.port, client)
        await waitUntil(lambda: client.lost, reactor, timeout=60)
        self.assertGreater(client.received, size)
