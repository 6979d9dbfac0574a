"""
The fault-injection suite: every way a member can fail, driven through a
real balancer with L{playbalancer.testing.faultmember.FaultMember}, checking what
the client sees, what the manager shows, and that the balancer serves the
next 100 requests once the member behaves again.
"""

from __future__ import annotations

from twisted.internet import reactor

from playbalancer.manager.model import memberStatus
from playbalancer.testing import rawExchange
from playbalancer.testing.faultmember import FaultMember

from tests.proxyharness import ProxyTestCase

REQUEST = b"GET /x HTTP/1.1\r\nHost: front\r\nConnection: close\r\n\r\n"


def statusOf(raw):
    """
    The status code of the first response in C{raw}, or L{None}.
    """
    if not raw.startswith(b"HTTP/1.1 "):
        return None
    return int(raw[9:12])


def isCutShort(raw):
    """
    Whether C{raw} is a response head followed by a body that cannot pass
    for complete: short of its Content-Length, or chunked without the
    last chunk.
    """
    head, _, body = raw.partition(b"\r\n\r\n")
    lowered = head.lower()
    if b"transfer-encoding: chunked" in lowered:
        return not body.endswith(b"0\r\n\r\n")
    for line in lowered.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) < int(line.split(b":")[1])
    return False


class FaultTests(ProxyTestCase):
    timeout = 120

    def setUp(self):
        self.member = FaultMember(reactor, "ok", name="app1", size=1000).start()
        self.addCleanup(self.member.stop)
        self.startBalancer([self.member.url], timeout=0.5, retry=60.0)
        self.app1 = self.balancer.member("app1")

    def managerView(self):
        return memberStatus(self.app1, self.clock.seconds(), True)

    async def recovers(self):
        """
        The member behaves again and is reset on the manager: the next
        100 requests, on one keep-alive connection, all succeed.
        """
        self.member.behaviour = "ok"
        await self.member.settled()
        self.balancer.reset(self.app1)
        client = self.client()
        for _ in range(100):
            response, body = await self.fetch(client, "/ok")
            self.assertEqual((response.code, body), (200, b"app1\n"))
        self.assertEqual(self.app1.active, 0)

    async def outcome(self, behaviour, **options):
        for name, value in options.items():
            setattr(self.member, name, value)
        self.member.behaviour = behaviour
        await self.member.settled()
        return await rawExchange(reactor, self.port, REQUEST)

    async def test_refused(self):
        raw = await self.outcome("refuse")
        self.assertEqual(statusOf(raw), 503)
        self.assertIn(b"Retry-After: ", raw)
        view = self.managerView()
        self.assertFalse(view["healthy"])
        self.assertIn("refused", view["down_reason"])
        await self.recovers()

    async def test_hang(self):
        raw = await self.outcome("hang")
        self.assertEqual(statusOf(raw), 504)
        view = self.managerView()
        self.assertTrue(view["healthy"])
        self.assertEqual(view["failures"], 1)
        self.assertEqual(view["active"], 0)
        await self.recovers()

    async def test_closeBeforeAnswer(self):
        """
        A member that closes before answering is marked down; the GET is
        tried once more, and with no other member the client gets 502.
        """
        raw = await self.outcome("close")
        self.assertEqual(statusOf(raw), 502)
        self.assertFalse(self.managerView()["healthy"])
        await self.recovers()

    async def test_resetBeforeAnswer(self):
        raw = await self.outcome("reset", after=0)
        self.assertEqual(statusOf(raw), 502)
        self.assertFalse(self.managerView()["healthy"])
        await self.recovers()

    async def test_resetMidBody(self):
        raw = await self.outcome("reset", after=200, size=1000)
        self.assertEqual(statusOf(raw), 200)
        self.assertTrue(isCutShort(raw), raw)
        self.assertEqual(self.managerView()["failures"], 1)
        await self.recovers()

    async def test_stallMidBody(self):
        raw = await self.outcome("stall", after=10, size=1000)
        self.assertEqual(statusOf(raw), 200)
        self.assertTrue(isCutShort(raw), raw)
        self.assertEqual(self.managerView()["active"], 0)
        await self.recovers()

    async def test_slowButInTime(self):
        raw = await self.outcome("slow", delay=0.1)
        self.assertEqual(statusOf(raw), 200)
        self.assertTrue(raw.endswith(b"app1\n"))
        self.assertTrue(self.managerView()["healthy"])
        await self.recovers()

    async def test_slowTooLate(self):
        raw = await self.outcome("slow", delay=2.0)
        self.assertEqual(statusOf(raw), 504)
        await self.recovers()

    async def test_statusPassedOn(self):
        raw = await self.outcome("status", status=500)
        self.assertEqual(statusOf(raw), 500)
        self.assertTrue(self.managerView()["healthy"])
        await self.recovers()

    async def test_failOnStatus(self):
        self.balancer.failOnStatus = frozenset([503])
        raw = await self.outcome("status", status=503)
        self.assertEqual(statusOf(raw), 503)
        view = self.managerView()
        self.assertFalse(view["healthy"])
        self.assertEqual(view["down_reason"], "answered 503")
        await self.recovers()

    async def test_malformedHeads(self):
        """
        A response head that cannot be relayed safely is answered with 502
        and its connection is not reused.  One such response leaves the
        member in rotation (counted); BAD_RESPONSES_DOWN in a row mark it
        down with the reason.
        """
        from playbalancer.balancer import BAD_RESPONSES_DOWN

        pool = self.pools.forMember(self.app1)
        for behaviour in ["both-cl-te", "bad-cl", "two-cl", "garbage-status", "bare-lf", "huge-header"]:
            failures = self.app1.failures
            for attempt in range(1, BAD_RESPONSES_DOWN + 1):
                raw = await self.outcome(behaviour)
                self.assertEqual(statusOf(raw), 502, behaviour)
                self.assertEqual((pool.idle, pool.open), ([], 0), behaviour)
                view = self.managerView()
                self.assertEqual(view["healthy"], attempt < BAD_RESPONSES_DOWN, (behaviour, attempt))
            self.assertEqual(self.app1.failures, failures + BAD_RESPONSES_DOWN)
            self.assertTrue(view["down_reason"].startswith("bad response"), view)
            await self.recovers()

    async def test_oneOddResponseAmongGoodOnes(self):
        """
        Malformed responses between good ones never add up to a member
        marked down: the count is of malformed responses in a row.
        """
        client = self.client()
        for _ in range(5):
            raw = await self.outcome("two-cl")
            self.assertEqual(statusOf(raw), 502)
            self.member.behaviour = "ok"
            await self.member.settled()
            response, body = await self.fetch(client, "/ok")
            self.assertEqual(response.code, 200)
            self.assertTrue(self.managerView()["healthy"])

    async def test_brokenBodies(self):
        """
        A body that breaks after the head went out closes the client
        connection short of a complete response.
        """
        for behaviour in ["bad-chunk", "short-cl", "truncated-chunked"]:
            raw = await self.outcome(behaviour)
            self.assertEqual(statusOf(raw), 200, behaviour)
            self.assertTrue(isCutShort(raw) or not raw.endswith(b"0\r\n\r\n"), (behaviour, raw))
            await self.recovers()

    async def test_bodyAfterNotModified(self):
        """
        Bytes after a 304 or a 204 head that announced a length (RFC 9112
        6.3: these have no body whatever their framing says): the client
        gets the head alone, the member stays healthy, and the member
        connection that carried them is never used again.
        """
        for behaviour, status in [("body-304", 304), ("body-204", 204)]:
            raw = await self.outcome(behaviour)
            self.assertEqual(statusOf(raw), status)
            self.assertTrue(raw.endswith(b"\r\n\r\n"), raw)
            pool = self.pools.forMember(self.app1)
            self.assertEqual((pool.idle, pool.open), ([], 0))
            self.assertTrue(self.managerView()["healthy"])
            await self.recovers()
