"""
The front end's limits and timeouts, and C{Expect: 100-continue}, over
real sockets.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol

from playbalancer.front import FrontSettings
from playbalancer.testing import RawConversation, rawExchange, waitUntil
from playbalancer.testing.faultmember import FaultMember

from tests.proxyharness import ProxyTestCase

GET = b"GET /x HTTP/1.1\r\nHost: front\r\n\r\n"


class TimeoutTests(ProxyTestCase):
    def setUp(self):
        self.member = FaultMember(reactor, "ok", name="app1").start()
        self.addCleanup(self.member.stop)
        self.startBalancer(
            [self.member.url],
            settings=FrontSettings(headerTimeout=0.3, idleTimeout=0.3, bodyTimeout=0.3),
        )

    async def test_slowHeadGets408(self):
        """
        A head that does not arrive in full within C{header_timeout}
        (slowloris) gets 408 and the connection is closed.
        """
        talk = await RawConversation.open(reactor, self.port)
        talk.send(b"GET / HTTP/1.1\r\nHost: front\r\nX-Slow: ")
        await talk.waitClosed()
        self.assertTrue(talk.received.startswith(b"HTTP/1.1 408 "), talk.received)
        self.assertEqual(self.member.requests, 0)

    async def test_silentNewConnectionClosed(self):
        talk = await RawConversation.open(reactor, self.port)
        await talk.waitClosed()
        self.assertEqual(talk.received, b"")

    async def test_idleKeepAliveClosedQuietly(self):
        talk = await RawConversation.open(reactor, self.port)
        talk.send(GET)
        await talk.waitFor(b"app1\n")
        await talk.waitClosed()
        self.assertTrue(talk.received.endswith(b"app1\n"), talk.received)
        self.assertEqual(talk.received.count(b"HTTP/1.1"), 1)

    async def test_stalledBodyGets408(self):
        talk = await RawConversation.open(reactor, self.port)
        talk.send(b"POST /x HTTP/1.1\r\nHost: front\r\nContent-Length: 10\r\n\r\nabc")
        await talk.waitClosed()
        self.assertTrue(talk.received.startswith(b"HTTP/1.1 408 "), talk.received)
        self.assertEqual(self.balancer.member("app1").active, 0)


class SlowHeadsTests(ProxyTestCase):
    """
    Many slow-header clients at once (with a header timeout long enough
    that a slow interpreter still reads the normal request in time).
    """

    def setUp(self):
        self.member = FaultMember(reactor, "ok", name="app1").start()
        self.addCleanup(self.member.stop)
        self.startBalancer([self.member.url], settings=FrontSettings(headerTimeout=2.0))

    async def test_manySlowHeadsWhileServing(self):
        """
        200 slow-header clients at once: a normal request is still answered
        meanwhile, and every slow one is closed with 408.
        """
        slow = [await RawConversation.open(reactor, self.port) for _ in range(200)]
        for talk in slow:
            talk.send(b"GET / HTTP/1.1\r\nHost: front\r\n")
        raw = await rawExchange(reactor, self.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw)
        for talk in slow:
            await talk.waitClosed()
            self.assertTrue(talk.received.startswith(b"HTTP/1.1 408 "), talk.received)
        self.assertEqual(self.member.requests, 1)


class BufferedBodyTests(ProxyTestCase):
    async def test_smallBodyReadBeforeMemberIsChosen(self):
        """
        A small body is read whole before a member is chosen: a client
        that sends it slowly holds no member connection meanwhile.
        """
        member = FaultMember(reactor, "ok", name="app1").start()
        self.addCleanup(member.stop)
        self.startBalancer([member.url])
        talk = await RawConversation.open(reactor, self.port)
        talk.send(b"POST /x HTTP/1.1\r\nHost: front\r\nContent-Length: 10\r\n\r\nabc")
        await waitUntil(lambda: self.front.connections, reactor)
        pool = self.pools.forMember(self.balancer.member("app1"))
        self.assertEqual((pool.open, member.connections), (0, 0))
        talk.send(b"defghij")
        await talk.waitFor(b"app1\n")
        self.assertEqual(member.requests, 1)
        await talk.close()


class BufferedChunkedBodyTests(ProxyTestCase):
    """
    Chunked request bodies are read whole before a member is chosen, like
    bodies of known length, until they pass 64 KiB.  The pool is warm in
    these tests: an idle member connection would take a request head at
    once.
    """

    async def warm(self, client=None):
        response = await self.client().get(self.base + "/")
        await response.content()
        pool = self.pools.forMember(self.balancer.member("app1"))
        await waitUntil(lambda: len(pool.idle) == 1, reactor)
        return pool

    async def test_slowChunkedBodyHoldsNoMember(self):
        member = FaultMember(reactor, "ok", name="app1").start()
        self.addCleanup(member.stop)
        self.startBalancer([member.url])
        pool = await self.warm()
        talk = await RawConversation.open(reactor, self.port)
        talk.send(b"POST /x HTTP/1.1\r\nHost: front\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await waitUntil(lambda: any(c.exchange for c in self.front.connections), reactor)
        self.assertEqual((len(pool.idle), member.requests), (1, 1))
        talk.send(b"7\r\ndefghij\r\n0\r\n\r\n")
        await talk.waitFor(b"app1\n")
        self.assertEqual(member.requests, 2)
        await talk.close()

    async def test_malformedChunkReachesNoMember(self):
        """
        A bad chunk size (C{+5}, C{-5}) gets 400, and the member sees
        nothing at all: no head, no connection.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        pool = await self.warm()
        for size in [b"+5", b"-5", b"5x"]:
            raw = await rawExchange(
                reactor,
                self.port,
                b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + size + b"\r\nhello\r\n0\r\n\r\n",
            )
            self.assertTrue(raw.startswith(b"HTTP/1.1 400 "), raw)
        # The idle member connection was never handed a head.
        self.assertEqual(([r.uri for r in a.seen], a.connections, len(pool.idle)), ([b"/"], 1, 1))

    async def test_overMaxBodyReachesNoMember(self):
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url], maxBody=10)
        pool = await self.warm()
        raw = await rawExchange(
            reactor,
            self.port,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n",
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 413 "), raw)
        self.assertEqual(([r.uri for r in a.seen], a.connections, len(pool.idle)), ([b"/"], 1, 1))

    async def test_largeChunkedBodyStreams(self):
        """
        Past 64 KiB a chunked body streams to the member, whole.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        chunk = b"z" * 50000
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"
        raw = await rawExchange(
            reactor,
            self.port,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + body,
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw[:200])
        self.assertIn(b'"body_length": 400000', raw)

    async def test_chunkedRetriedWhole(self):
        """
        An idempotent chunked request whose first member broke off before
        answering is sent again, last chunk included.
        """
        broken = FaultMember(reactor, "reset", name="app1").start()
        self.addCleanup(broken.stop)
        (b,) = self.startMembers("app2")
        self.startBalancer([broken.url, b.url], scheduler="standby")
        raw = await rawExchange(
            reactor,
            self.port,
            b"PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw[:300])
        self.assertIn(b'"body_sample": "hello world"', raw)


class ConnectionLimitTests(ProxyTestCase):
    async def test_overTheLimitClosedAtOnce(self):
        """
        Beyond C{max_connections}, new connections are closed at once and
        counted; once one closes, new ones are served again.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url], settings=FrontSettings(maxConnections=2))
        first = await RawConversation.open(reactor, self.port)
        second = await RawConversation.open(reactor, self.port)
        await waitUntil(lambda: len(self.front.connections) == 2, reactor)
        third = await RawConversation.open(reactor, self.port)
        await third.waitClosed()
        self.assertEqual(third.received, b"")
        self.assertEqual(self.front.rejected, 1)
        await first.close()
        await waitUntil(lambda: len(self.front.connections) == 1, reactor)
        raw = await rawExchange(reactor, self.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw)
        await second.close()


class MemberQueueTests(ProxyTestCase):
    async def test_queueThenServeThen503(self):
        """
        At C{max_connections_per_member}, requests wait in a bounded queue:
        one waiting request is served when the busy one ends; one more than
        the queue holds gets 503 at once.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url], maxConnections=1, queueLimit=1, queueTimeout=30.0)
        arrived = a.hold.arrival()
        busy = rawExchange(reactor, self.port, b"GET /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await arrived
        queued = rawExchange(reactor, self.port, b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        pool = self.pools.forMember(self.balancer.member("app1"))
        await waitUntil(lambda: len(pool._queue) == 1, reactor)
        refused = await rawExchange(reactor, self.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(refused.startswith(b"HTTP/1.1 503 "), refused)
        self.assertIn(b"queue is full", refused)
        a.hold.release()
        self.assertTrue((await busy).startswith(b"HTTP/1.1 200 "))
        self.assertTrue((await queued).startswith(b"HTTP/1.1 200 "))
        self.assertEqual(pool.open, 1)

    async def test_queueWaitExpires(self):
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url], maxConnections=1, queueLimit=5, queueTimeout=0.2)
        arrived = a.hold.arrival()
        busy = rawExchange(reactor, self.port, b"GET /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await arrived
        waited = await rawExchange(reactor, self.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(waited.startswith(b"HTTP/1.1 503 "), waited)
        self.assertIn(b"waited too long", waited)
        a.hold.release()
        await busy


class _EarlyAnswer(Protocol):
    """
    A member that answers 413 as soon as it has a request head, without
    reading a body, and records everything it got.
    """

    def connectionMade(self):
        self.factory.connections.append(self)
        self.received = b""

    def dataReceived(self, data):
        self.received += data
        if b"\r\n\r\n" in self.received and not getattr(self, "answered", False):
            self.answered = True
            self.transport.write(
                b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\n\r\nbig\n"
            )


class ContinueTests(ProxyTestCase):
    async def test_memberContinueRelayed(self):
        """
        A client that waits for C{100 Continue} gets it (from the member,
        a twisted.web server) and then its answer.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        talk = await RawConversation.open(reactor, self.port)
        talk.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        await talk.waitFor(b"HTTP/1.1 100 Continue\r\n\r\n")
        talk.send(b"hello")
        await talk.waitFor(b'"body_length": 5')
        self.assertEqual(talk.received.count(b"100 Continue"), 1)
        await talk.close()

    async def test_continueWhenMemberIsSilent(self):
        """
        A member that never sends 100 (it reads the body regardless): after
        a second the balancer sends its own, so the client is not stuck.
        """
        member = FaultMember(reactor, "ok", name="quiet").start()
        self.addCleanup(member.stop)
        member.continues = False
        self.startBalancer([member.url])
        talk = await RawConversation.open(reactor, self.port)
        talk.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        await talk.waitFor(b"100 Continue\r\n\r\n", timeout=5)
        talk.send(b"hello")
        await talk.waitFor(b"quiet\n")
        await talk.close()

    async def test_earlyFinalStatusWithoutBody(self):
        """
        A member's early final status reaches the client, which never has
        to send its body; nothing of a body reaches the member; the client
        connection is closed after the answer.
        """
        factory = Factory.forProtocol(_EarlyAnswer)
        factory.connections = []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.startBalancer([f"http://127.0.0.1:{port.getHost().port}"])
        talk = await RawConversation.open(reactor, self.port)
        talk.send(
            b"PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"
        )
        await talk.waitClosed()
        self.assertTrue(talk.received.startswith(b"HTTP/1.1 413 "), talk.received)
        self.assertNotIn(b"100 Continue", talk.received)
        self.assertIn(b"Connection: close", talk.received)
        (member,) = factory.connections
        self.assertTrue(member.received.endswith(b"Expect: 100-continue\r\n\r\n"), member.received)
        for c in factory.connections:
            c.transport.loseConnection()


class BodyLimitTests(ProxyTestCase):
    async def test_chunkedOverTheLimit(self):
        """
        A chunked body that grows past C{max_body} gets 413 and never
        reaches the member whole.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url], maxBody=10)
        raw = await rawExchange(
            reactor,
            self.port,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n",
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 413 "), raw)
        self.assertEqual([r for r in a.seen if r.uri == b"/echo" and r.content.read()], [])


class BodyRateTests(ProxyTestCase):
    """
    C{body_min_rate}: a body that keeps arriving, but too slowly, gets 408;
    one at the rate passes; time a slow member makes us wait does not
    count against the client.
    """

    def setUp(self):
        self.member = FaultMember(reactor, "ok", name="app1").start()
        self.addCleanup(self.member.stop)
        self.startBalancer(
            [self.member.url], settings=FrontSettings(bodyTimeout=0.5, minBodyRate=200.0)
        )

    async def drip(self, talk, piece, every, count):
        from twisted.internet import task

        for _ in range(count):
            if talk.closedReason is not None:
                return
            talk.send(piece)
            await task.deferLater(reactor, every, lambda: None)

    async def test_tooSlowGets408(self):
        """
        10 bytes every 0.1 s (100 B/s, under 200): never a pause of
        C{body_timeout}, yet closed with 408 (after about a second), and
        the member connection the streamed body held is let go.
        """
        talk = await RawConversation.open(reactor, self.port)
        talk.send(b"POST /x HTTP/1.1\r\nHost: front\r\nContent-Length: 100000\r\n\r\n")
        await self.drip(talk, b"x" * 10, 0.1, 200)
        await talk.waitClosed()
        self.assertTrue(talk.received.startswith(b"HTTP/1.1 408 "), talk.received)
        self.assertEqual(self.balancer.member("app1").active, 0)

    async def test_fastEnoughPasses(self):
        """
        1,000 bytes every 0.1 s (10 kB/s) for 2 s: answered.
        """
        talk = await RawConversation.open(reactor, self.port)
        self.addCleanup(talk.close)
        talk.send(b"POST /x HTTP/1.1\r\nHost: front\r\nContent-Length: 20000\r\n\r\n")
        await self.drip(talk, b"x" * 1000, 0.1, 20)
        await talk.waitFor(b"app1\n")
        self.assertTrue(talk.received.startswith(b"HTTP/1.1 200 "), talk.received)


class BodyDeadlineTests(ProxyTestCase):
    """
    C{body_deadline}: a whole request body must arrive within it, however
    steadily it comes.
    """

    async def test_steadyButEndlessBodyGets408(self):
        member = FaultMember(reactor, "ok", name="app1").start()
        self.addCleanup(member.stop)
        self.startBalancer(
            [member.url],
            settings=FrontSettings(bodyTimeout=5.0, minBodyRate=0.0, bodyDeadline=1.0),
        )
        talk = await RawConversation.open(reactor, self.port)
        talk.send(b"POST /x HTTP/1.1\r\nHost: front\r\nContent-Length: 10000000\r\n\r\n")
        await BodyRateTests.drip(self, talk, b"x" * 10000, 0.1, 100)
        await talk.waitClosed()
        self.assertTrue(talk.received.startswith(b"HTTP/1.1 408 "), talk.received)
        self.assertEqual(self.balancer.member("app1").active, 0)

    def test_defaults(self):
        """
        A request body must keep 500 B/s after its first C{body_timeout}
        (Apache's Debian default), with no overall deadline.
        """
        settings = FrontSettings()
        self.assertEqual((settings.minBodyRate, settings.bodyDeadline), (500.0, 0.0))


class _SlowReadingMember(Protocol):
    """
    A member that does not read for C{factory.pause} seconds after a
    connection opens, then reads a whole request and answers 200.
    """

    def connectionMade(self):
        self.head = b""
        self.left = None
        self.transport.pauseProducing()
        self.resume = reactor.callLater(self.factory.pause, self.transport.resumeProducing)

    def connectionLost(self, reason):
        if self.resume.active():
            self.resume.cancel()

    def dataReceived(self, data):
        if self.left is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end == -1:
                return
            length = 0
            for line in self.head[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            self.left = length - (len(self.head) - end - 4)
            self.head = b""
        else:
            self.left -= len(data)
        if self.left <= 0:
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nread\n")


class MemberBackpressureTests(ProxyTestCase):
    async def test_slowMemberDoesNotTimeTheClientOut(self):
        """
        While a member does not read an upload, the client is not read
        either, and that time does not count against its body timeout or
        rate: the upload completes after a pause of three body timeouts.
        """
        factory = Factory.forProtocol(_SlowReadingMember)
        factory.pause = 1.5
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.startBalancer(
            [f"http://127.0.0.1:{port.getHost().port}"],
            settings=FrontSettings(bodyTimeout=0.5, minBodyRate=200.0),
        )
        size = 64 << 20
        talk = await RawConversation.open(reactor, self.port)
        self.addCleanup(talk.close)
        talk.send(b"POST /up HTTP/1.1\r\nHost: front\r\nContent-Length: %d\r\n\r\n" % size)
        talk.send(b"x" * size)
        await talk.waitFor(b"read\n", timeout=30)
        self.assertTrue(talk.received.startswith(b"HTTP/1.1 200 "), talk.received)


class HeadScanTests(ProxyTestCase):
    """
    A head that arrives a byte at a time costs linear work: each read
    scans only the bytes that are new.
    """

    def test_dripScansEachByteOnce(self):
        from twisted.internet.testing import StringTransport

        from playbalancer.http import headreader

        scanned = []
        realScan = headreader.scanHead

        def counting(buffer, already):
            scanned.append(len(buffer) - already)
            return realScan(buffer, already)

        self.patch(headreader, "scanHead", counting)
        self.startBalancer(["http://127.0.0.1:1"])
        connection = self.front.buildProtocol(None)
        transport = StringTransport()
        connection.makeConnection(transport)
        self.addCleanup(connection.connectionLost, None)
        prefix = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Fill: " + b"a" * 60000 + b"\r\n"
        connection.dataReceived(prefix)
        for _ in range(2000):
            connection.dataReceived(b"b")
        total = len(prefix) + 2000
        self.assertEqual(len(scanned), 2001)
        self.assertLess(sum(scanned), 2 * total)
        self.assertEqual(transport.value(), b"")  # still waiting for the end
