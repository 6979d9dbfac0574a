"""
The fault member over real sockets on 127.0.0.1: what each behaviour puts
on the wire (byte for byte where it can be), keep-alive, bodies, the
counters, changing behaviour at run time, and stop() leaving nothing open.

"Nothing arrives" is checked by a short wait (L{QUIET}); no test passes or
fails on timing otherwise, and C{"slow"} runs on a L{Clock}.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import TestCase

from playbalancer.testing import waitUntil
from playbalancer.testing.faultmember import BEHAVIOURS, MALFORMED, FaultMember

#: How long "nothing arrives" is watched for.
QUIET = 0.1

#: The longest a test waits for bytes that should come; only a failing
#: test waits that long.
PATIENCE = 3.0

GET = b"GET /x HTTP/1.1\r\nHost: member\r\n\r\n"
GET_CLOSE = b"GET /x HTTP/1.1\r\nHost: member\r\nConnection: close\r\n\r\n"


def ok(name, close=False, head=False):
    """
    The exact C{"ok"} response of member C{name}.
    """
    body = name.encode() + b"\n"
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\n" % len(body)
        + (b"Connection: close\r\n" if close else b"")
        + b"\r\n"
        + (b"" if head else body)
    )


class Wire(Protocol):
    """
    A raw client: keeps every byte that arrives and how the connection
    ended.
    """

    def __init__(self):
        self.data = bytearray()
        self.reason = None
        self._wanted = []
        self._closing = []

    def send(self, data):
        self.transport.write(data)

    def dataReceived(self, data):
        self.data += data
        wanted, self._wanted = self._wanted, []
        for count, d in wanted:
            if len(self.data) >= count:
                d.callback(bytes(self.data))
            else:
                self._wanted.append((count, d))

    def connectionLost(self, reason):
        self.reason = reason
        wanted, self._wanted = self._wanted, []
        for count, d in wanted:
            d.errback(AssertionError(f"closed after {bytes(self.data)!r}, wanted {count} bytes"))
        closing, self._closing = self._closing, []
        for d in closing:
            d.callback(None)

    def atLeast(self, count):
        """
        Fire with all bytes so far once there are C{count} of them.
        """
        if len(self.data) >= count:
            return defer.succeed(bytes(self.data))
        d = defer.Deferred()
        self._wanted.append((count, d))
        return d.addTimeout(PATIENCE, reactor)

    def closed(self):
        """
        Fire once the connection is closed (the reason is then in
        C{self.reason}).
        """
        if self.reason is not None:
            return defer.succeed(None)
        d = defer.Deferred()
        self._closing.append(d)
        return d.addTimeout(PATIENCE, reactor)

    def abort(self):
        if self.reason is not None:
            return defer.succeed(None)
        self.transport.abortConnection()
        return self.closed()


class ClockedReactor:
    """
    The real reactor for sockets, a L{Clock} for C{callLater}.
    """

    def __init__(self):
        self.clock = Clock()

    def __getattr__(self, name):
        return getattr(reactor, name)

    def callLater(self, *args, **kwargs):
        return self.clock.callLater(*args, **kwargs)


class Base(TestCase):
    timeout = 15  # a broken stop() fails here rather than after trial's 120 s

    def member(self, behaviour="ok", reactor=reactor, **options):
        member = FaultMember(reactor, behaviour, **options).start()
        self.addCleanup(member.stop)
        return member

    async def connect(self, member):
        wire = Wire()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", member.port), wire)
        self.addCleanup(wire.abort)
        return wire

    async def assertQuiet(self, wire):
        """
        Nothing arrives for a short while and the connection stays open.
        """
        await deferLater(reactor, QUIET, lambda: None)
        self.assertEqual(bytes(wire.data), b"")
        self.assertIsNone(wire.reason)

    async def assertClosed(self, wire, expected=b""):
        """
        Exactly C{expected} arrives, then an orderly close.
        """
        await wire.closed()
        reason = wire.reason
        self.assertEqual(bytes(wire.data), expected)
        self.assertTrue(reason.check(ConnectionDone), reason)

    async def assertReset(self, wire, expected=b""):
        """
        Exactly C{expected} arrives, then a reset (not an orderly close).
        """
        await wire.closed()
        reason = wire.reason
        self.assertEqual(bytes(wire.data), expected)
        self.assertIsNone(reason.check(ConnectionDone), reason)
        self.assertTrue(reason.check(ConnectionLost), reason)


class OkTests(Base):
    async def test_answer(self):
        member = self.member(name="app1")
        self.assertEqual(member.url, f"http://127.0.0.1:{member.port}")
        wire = await self.connect(member)
        wire.send(GET_CLOSE)
        await self.assertClosed(wire, ok("app1", close=True))
        self.assertEqual(member.received, [GET_CLOSE])

    async def test_keepAlive(self):
        member = self.member(name="app1")
        wire = await self.connect(member)
        wire.send(GET)
        await wire.atLeast(len(ok("app1")))
        wire.send(b"GET /second HTTP/1.1\r\nHost: member\r\n\r\n")
        got = await wire.atLeast(2 * len(ok("app1")))
        self.assertEqual(got, ok("app1") * 2)
        self.assertIsNone(wire.reason)
        self.assertEqual((member.connections, member.requests), (1, 2))
        self.assertEqual(member.received[1], b"GET /second HTTP/1.1\r\nHost: member\r\n\r\n")

    async def test_pipelinedWithBodies(self):
        """
        Requests sent at once, with bodies of both kinds in pieces and the
        stray blank line some clients send after a body, are answered in
        turn; only the heads are recorded.
        """
        member = self.member(name="m")
        wire = await self.connect(member)
        post = b"POST /a HTTP/1.1\r\nContent-Length: 11\r\n\r\n"
        chunked = b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        stream = (
            post + b"hello world\r\n"
            + chunked + b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
            + GET_CLOSE
        )
        for i in range(0, len(stream), 7):
            wire.send(stream[i : i + 7])
        await self.assertClosed(wire, ok("m") * 2 + ok("m", close=True))
        self.assertEqual(member.received, [post, chunked, GET_CLOSE])

    async def test_head(self):
        member = self.member(name="app1")
        wire = await self.connect(member)
        wire.send(b"HEAD / HTTP/1.1\r\n\r\n" + GET_CLOSE)
        await self.assertClosed(wire, ok("app1", head=True) + ok("app1", close=True))

    async def test_http10(self):
        member = self.member(name="a")
        wire = await self.connect(member)
        wire.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        expected = ok("a").replace(b"\r\n\r\n", b"\r\nConnection: keep-alive\r\n\r\n")
        self.assertEqual(await wire.atLeast(len(expected)), expected)
        wire.send(b"GET / HTTP/1.0\r\n\r\n")
        await self.assertClosed(wire, expected + ok("a", close=True))

    async def test_expectContinue(self):
        member = self.member(name="a")
        wire = await self.connect(member)
        wire.send(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        self.assertEqual(await wire.atLeast(25), b"HTTP/1.1 100 Continue\r\n\r\n")
        wire.send(b"abc" + GET_CLOSE)
        expected = b"HTTP/1.1 100 Continue\r\n\r\n" + ok("a") + ok("a", close=True)
        await self.assertClosed(wire, expected)

    async def test_badRequests(self):
        """
        A request the member cannot read gets C{400} and a close.
        """
        member = self.member()
        bad = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        for request in [
            b"GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"NONSENSE\r\n\r\n",
            b"GET / HTTP/1.1\r\n folded\r\n\r\n",
        ]:
            wire = await self.connect(member)
            wire.send(request)
            await self.assertClosed(wire, bad)
        self.assertEqual(member.requests, 6)


class FaultTests(Base):
    async def test_refuse(self):
        member = self.member("refuse")
        self.assertIsInstance(member.port, int)
        self.assertEqual(member.url, f"http://127.0.0.1:{member.port}")
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", member.port)
        await self.assertFailure(connectProtocol(endpoint, Wire()), ConnectionRefusedError)
        self.assertEqual(member.connections, 0)

    async def test_hang(self):
        member = self.member("hang")
        wire = await self.connect(member)
        wire.send(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" + GET)
        await waitUntil(lambda: member.requests == 1, reactor)
        await self.assertQuiet(wire)
        self.assertEqual(member.openConnections, 1)

    async def test_resetAtOnce(self):
        member = self.member("reset")
        wire = await self.connect(member)
        wire.send(GET)
        await self.assertReset(wire)

    async def test_resetAfter(self):
        member = self.member("reset", after=30, size=100)
        wire = await self.connect(member)
        wire.send(GET)
        response = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
        await self.assertReset(wire, response[:30])

    async def test_resetAfterWholeResponse(self):
        """
        An C{after} past the response sends all of it before the reset.
        """
        member = self.member("reset", after=10**6, size=5)
        wire = await self.connect(member)
        wire.send(GET)
        await self.assertReset(wire, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nxxxxx")

    async def test_stall(self):
        member = self.member("stall", size=100, after=10)
        wire = await self.connect(member)
        wire.send(GET)
        expected = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10
        self.assertEqual(await wire.atLeast(len(expected)), expected)
        wire.data.clear()
        await self.assertQuiet(wire)

    async def test_slow(self):
        clocked = ClockedReactor()
        member = self.member("slow", reactor=clocked, delay=2.5, name="s")
        wire = await self.connect(member)
        wire.send(GET + GET_CLOSE)
        await waitUntil(lambda: clocked.clock.getDelayedCalls(), reactor)
        self.assertEqual(bytes(wire.data), b"")
        clocked.clock.advance(2.4)
        self.assertEqual(bytes(wire.data), b"")
        clocked.clock.advance(0.1)
        await wire.atLeast(len(ok("s")))
        self.assertEqual(len(clocked.clock.getDelayedCalls()), 1)
        clocked.clock.advance(2.5)
        await self.assertClosed(wire, ok("s") + ok("s", close=True))

    async def test_close(self):
        """
        The connection is closed once the head is read, before the body.
        """
        member = self.member("close")
        wire = await self.connect(member)
        wire.send(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n")
        await self.assertClosed(wire)
        self.assertEqual(member.requests, 1)

    async def test_malformedThenClose(self):
        for behaviour, (data, close) in MALFORMED.items():
            if not close:
                continue
            member = self.member(behaviour)
            wire = await self.connect(member)
            wire.send(GET)
            await self.assertClosed(wire, data)

    async def test_malformedKeepAlive(self):
        """
        The bodies of C{"body-204"} and C{"body-304"} are left on a
        connection that stays open.
        """
        for behaviour in ["body-204", "body-304"]:
            member = self.member(behaviour)
            wire = await self.connect(member)
            wire.send(GET)
            data, _ = MALFORMED[behaviour]
            self.assertTrue(data.endswith(b"\r\nContent-Length: 5\r\n\r\nhello"))
            self.assertEqual(await wire.atLeast(len(data)), data)
            wire.send(GET_CLOSE)
            await self.assertClosed(wire, data * 2)

    def test_malformedBytes(self):
        """
        Spot checks of the malformed responses.
        """
        both = b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"
        self.assertIn(both, MALFORMED["both-cl-te"][0])
        self.assertIn(b"\r\nzz\r\n", MALFORMED["bad-chunk"][0])
        self.assertNotIn(b"\r\n", MALFORMED["bare-lf"][0])
        self.assertFalse(MALFORMED["garbage-status"][0].startswith(b"HTTP/"))
        self.assertTrue(MALFORMED["truncated-chunked"][0].endswith(b"world\r\n"))
        head = MALFORMED["huge-header"][0].split(b"\r\n")
        self.assertEqual(head[1], b"X-Huge: " + b"h" * 102400)

    async def test_status(self):
        member = self.member("status", status=500, name="m")
        wire = await self.connect(member)
        wire.send(GET)
        body = b"500 from m\n"
        expected = (
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: 11\r\n\r\n" + body
        )
        self.assertEqual(await wire.atLeast(len(expected)), expected)
        member.status = 503
        wire.send(b"HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n")
        await self.assertClosed(
            wire,
            expected + b"HTTP/1.1 503 Service Unavailable\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 11\r\n"
            b"Connection: close\r\n\r\n",
        )

    async def test_statusWithoutBody(self):
        member = self.member("status", status=204)
        wire = await self.connect(member)
        wire.send(GET_CLOSE)
        await self.assertClosed(wire, b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

    def test_badOptions(self):
        self.assertRaises(ValueError, FaultMember, reactor, "explode")
        self.assertRaises(ValueError, FaultMember, reactor, "reset", after=-1)
        self.assertRaises(ValueError, FaultMember, reactor, "stall", size="10")
        self.assertRaises(ValueError, FaultMember, reactor, "slow", delay=-1)
        self.assertRaises(ValueError, FaultMember, reactor, "status", status=99)
        self.assertRaises(TypeError, FaultMember, reactor, "ok", colour="red")
        member = FaultMember(reactor)
        with self.assertRaises(ValueError):
            member.behaviour = "explode"
        self.assertEqual(member.behaviour, "ok")
        self.assertIn("huge-header", BEHAVIOURS)


class RuntimeTests(Base):
    async def test_change(self):
        """
        Each request meets the behaviour in force when its head is read.
        """
        member = self.member(name="a")
        wire = await self.connect(member)
        wire.send(GET)
        await wire.atLeast(len(ok("a")))
        member.behaviour = "status"
        wire.send(GET)
        got = await wire.atLeast(len(ok("a")) + 1)
        self.assertIn(b"HTTP/1.1 503 Service Unavailable\r\n", got)
        member.behaviour = "close"
        wire.send(GET)
        await wire.closed()
        reason = wire.reason
        self.assertTrue(reason.check(ConnectionDone))
        member.behaviour = "ok"
        member.name = "b"
        wire = await self.connect(member)
        wire.send(GET_CLOSE)
        await self.assertClosed(wire, ok("b", close=True))
        self.assertEqual((member.connections, member.requests), (2, 4))

    async def test_refuseAndBack(self):
        """
        C{"refuse"} stops listening; connections already open stay open
        and a request on them is reset; another behaviour listens again on
        the same port.
        """
        member = self.member(name="a")
        port = member.port
        before = await self.connect(member)
        member.behaviour = "refuse"
        await member.settled()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        await self.assertFailure(connectProtocol(endpoint, Wire()), ConnectionRefusedError)
        before.send(GET)
        await self.assertReset(before)
        member.behaviour = "ok"
        await member.settled()
        self.assertEqual(member.port, port)
        wire = await self.connect(member)
        wire.send(GET_CLOSE)
        await self.assertClosed(wire, ok("a", close=True))

    async def test_refuseFlicker(self):
        """
        Back to listening before the port has closed: it listens again
        once closed.
        """
        member = self.member(name="a")
        member.behaviour = "refuse"
        member.behaviour = "ok"
        await member.settled()
        wire = await self.connect(member)
        wire.send(GET_CLOSE)
        await self.assertClosed(wire, ok("a", close=True))

    async def test_startRefusingThenListen(self):
        member = self.member("refuse", name="a")
        port = member.port
        member.behaviour = "ok"
        self.assertEqual(member.port, port)
        wire = await self.connect(member)
        wire.send(GET_CLOSE)
        await self.assertClosed(wire, ok("a", close=True))


class CountAndStopTests(Base):
    async def test_counters(self):
        """
        C{connections} counts accepted connections, C{requests} and
        C{received} only heads read in full.
        """
        member = self.member("hang")
        first = await self.connect(member)
        second = await self.connect(member)
        first.send(GET)
        second.send(b"GET /partial HTTP/1.1\r\nHost:")
        await waitUntil(lambda: member.requests == 1 and member.connections == 2, reactor)
        await deferLater(reactor, QUIET, lambda: None)
        self.assertEqual((member.connections, member.requests), (2, 1))
        self.assertEqual(member.received, [GET])
        self.assertEqual(member.openConnections, 2)

    async def test_stopClosesEverything(self):
        member = self.member("stall", size=10)
        wires = [await self.connect(member) for _ in range(3)]
        wires[0].send(GET)
        wires[1].send(b"GET / HTTP/1.1\r\n")
        await wires[0].atLeast(1)
        await waitUntil(lambda: member.openConnections == 3, reactor)
        await member.stop()
        self.assertEqual(member.openConnections, 0)
        for wire in wires:
            await wire.closed()
            reason = wire.reason
            self.assertTrue(reason.check(ConnectionLost), reason)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", member.port)
        await self.assertFailure(connectProtocol(endpoint, Wire()), ConnectionRefusedError)

    async def test_stopCancelsSlowAnswer(self):
        """
        A pending slow answer on the real reactor is cancelled: trial would
        report a dirty reactor otherwise.
        """
        member = self.member("slow", delay=60)
        wire = await self.connect(member)
        wire.send(GET)
        await waitUntil(lambda: member.requests == 1, reactor)
        await member.stop()
        await wire.closed()

    async def test_restart(self):
        """
        After stop(), start() listens on the same port again.
        """
        member = self.member(name="a")
        port = member.port
        await member.stop()
        self.assertIs(member.start(), member)
        self.assertEqual(member.port, port)
        wire = await self.connect(member)
        wire.send(GET_CLOSE)
        await self.assertClosed(wire, ok("a", close=True))

    async def test_stopRefusing(self):
        member = self.member("refuse")
        await member.stop()
        await member.stop()


class BrokenMemberTests(Base):
    """
    L{playbalancer.testing.BrokenMember} as its docstring says since it is
    a L{FaultMember}: the bytes it sends, waiting for the whole request,
    and C{400} for a head it cannot parse.
    """

    async def broken(self, how):
        from playbalancer.testing import BrokenMember

        broken = BrokenMember(how, reactor).start()
        self.addCleanup(broken.stop)
        return broken, await self.connect(broken.member)

    async def test_truncateLength(self):
        broken, wire = await self.broken("truncate-length")
        wire.send(GET)
        await self.assertClosed(wire, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"s" * 10)
        self.assertEqual(broken.requests, [GET])

    async def test_truncateChunked(self):
        broken, wire = await self.broken("truncate-chunked")
        wire.send(GET)
        await self.assertClosed(
            wire,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n",
        )

    async def test_stallWaitsForTheBody(self):
        """
        C{"stall"} acts once the body has been read, not on the head.
        """
        broken, wire = await self.broken("stall")
        wire.send(b"POST / HTTP/1.1\r\nHost: m\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        await waitUntil(lambda: len(broken.requests) == 1, reactor)
        await self.assertQuiet(wire)
        wire.send(b"abc")
        expected = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nxxx"
        self.assertEqual(await wire.atLeast(len(expected)), expected)

    async def test_unparseableHead(self):
        broken, wire = await self.broken("silent")
        wire.send(b"NOT HTTP\r\n\r\n")
        await self.assertClosed(wire, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


class TwistdProcessLogTests(TestCase):
    def test_logIsBinary(self):
        """
        C{TwistdProcess.log} is the output file opened in binary mode:
        reading it gives bytes, as L{TwistdProcess.output} does.
        """
        from playbalancer.testing import TwistdProcess

        path = self.mktemp()
        child = TwistdProcess(logPath=path, args=[], command=["-c", "import sys; sys.stdout.write('hi')"])
        self.addCleanup(child.stop)
        child.process.wait(30)
        child.log.seek(0)
        self.assertEqual(child.log.read(), b"hi")
        self.assertEqual(child.output(), b"hi")

    def test_childGetsTheRecommendedNursery(self):
        """
        The child runs with PyPy's nursery at the size the README
        recommends (as workers do), unless the environment sets one: the
        default follows the CPU's caches, and a virtual machine that shows
        a 480 MiB cache made memory tests measure a huge nursery.
        """
        import os

        from playbalancer.memory import PYPY_NURSERY
        from playbalancer.testing import TwistdProcess

        code = "import os, sys; sys.stdout.write(os.environ.get('PYPY_GC_NURSERY', '-'))"
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if k != "PYPY_GC_NURSERY"})
        child = TwistdProcess(logPath=self.mktemp(), args=[], command=["-c", code])
        self.addCleanup(child.stop)
        child.process.wait(30)
        self.assertEqual(child.output(), PYPY_NURSERY.encode())
        os.environ["PYPY_GC_NURSERY"] = "4M"
        child = TwistdProcess(logPath=self.mktemp(), args=[], command=["-c", code])
        self.addCleanup(child.stop)
        child.process.wait(30)
        self.assertEqual(child.output(), b"4M")
