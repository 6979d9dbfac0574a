"""
Active health checks: rise and fall, expected statuses, timeouts, members
added at run time, and C{failonstatus}.
"""

from __future__ import annotations

import os

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.balancer import Balancer, Member
from playbalancer.config import HealthConfig
from playbalancer.health import HealthChecker, parseExpect
from playbalancer.membertls import MemberTLS, loadAuthorities
from playbalancer.schedulers import RoundRobinScheduler
from playbalancer.testing import MemberServer, waitUntil
from playbalancer.testing.certs import writeSelfSigned

from tests.proxyharness import ProxyTestCase, servedBy


class _Response:
    def __init__(self, code):
        self.code = code

    def content(self):
        return defer.succeed(b"")


class FakeHTTP:
    """
    Answers health checks as told: a status, an exception, or never.
    """

    def __init__(self):
        self.answers = {}
        self.asked = []

    def get(self, url, headers=None):
        self.asked.append((url, headers))
        answer = self.answers.get(url.split(b"/health")[0], 200)
        if answer is None:
            return defer.Deferred()
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed(_Response(answer))


class ExpectTests(SynchronousTestCase):
    def test_parse(self):
        self.assertEqual(parseExpect("200-399"), [(200, 399)])
        self.assertEqual(parseExpect("200, 204,300-301"), [(200, 200), (204, 204), (300, 301)])
        for bad in ["", "abc", "200-", "99", "400-300", "200-700"]:
            self.assertRaises(ValueError, parseExpect, bad)


class _CheckerCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.a = Member("a", "http://127.0.0.1:1")
        self.b = Member("b", "http://127.0.0.1:2")
        self.balancer = Balancer("web", RoundRobinScheduler(), [self.a, self.b], self.clock)
        self.balancer.activeChecks = True
        self.http = FakeHTTP()
        self.checker = HealthChecker(
            self.balancer, HealthConfig(interval=2, timeout=1, rise=2, fall=3), self.http, self.clock
        )
        self.addCleanup(self.checker.stopService)

    def start(self):
        self.checker.startService()

    def rounds(self, n):
        for _ in range(n):
            self.clock.advance(2)


class CheckerTests(_CheckerCase):
    def test_fallThenRise(self):
        """
        C{fall} failed checks in a row take a member out; C{rise} passes in
        a row bring it back; live traffic success does not.
        """
        self.http.answers[b"http://127.0.0.1:1"] = 503
        self.start()
        self.rounds(1)  # checks at t=0 and t=2: two failures
        self.assertTrue(self.a.healthy)
        self.rounds(1)
        self.assertFalse(self.a.healthy)
        self.assertEqual(self.a.downReason, "health check: HTTP 503")
        self.assertEqual(self.balancer.candidates(), [self.b])
        self.balancer.memberSucceeded(self.a)
        self.assertFalse(self.a.healthy)
        self.http.answers[b"http://127.0.0.1:1"] = 200
        self.rounds(1)
        self.assertFalse(self.a.healthy)
        self.rounds(1)
        self.assertTrue(self.a.healthy)
        self.assertEqual(self.balancer.candidates(), [self.a, self.b])
        self.assertEqual(self.a.lastCheck[:2], (True, "HTTP 200"))

    def test_timeoutAndRefused(self):
        from twisted.internet.error import ConnectionRefusedError

        self.http.answers[b"http://127.0.0.1:1"] = None
        self.http.answers[b"http://127.0.0.1:2"] = ConnectionRefusedError()
        self.start()
        self.rounds(3)
        self.assertEqual(self.a.downReason, "health check: timeout")
        self.assertEqual(self.b.downReason, "health check: connection refused")

    def test_passiveFailureWaitsForChecks(self):
        """
        With checks on, a member that failed live traffic stays out past
        C{retry} until its checks pass C{rise} times.
        """
        self.balancer.memberFailed(self.a, "connection refused")
        self.clock.advance(3600)
        self.assertNotIn(self.a, self.balancer.candidates())
        self.start()  # first pass now
        self.assertNotIn(self.a, self.balancer.candidates())
        self.rounds(1)  # second pass
        self.assertIn(self.a, self.balancer.candidates())

    def test_addedMemberWaitsForChecks(self):
        self.start()
        c = Member("c", "http://127.0.0.1:3")
        self.balancer.addMember(c)
        self.assertNotIn(c, self.balancer.candidates())
        self.rounds(2)
        self.assertIn(c, self.balancer.candidates())

    def test_addedMemberFailingItsChecks(self):
        """
        A member added at run time whose checks fail says why, not "not
        checked yet".
        """
        from twisted.internet.error import ConnectionRefusedError

        self.start()
        c = Member("c", "http://127.0.0.1:3")
        self.http.answers[b"http://127.0.0.1:3"] = ConnectionRefusedError()
        self.balancer.addMember(c)
        self.assertEqual(c.downReason, "not checked yet")
        self.rounds(1)
        self.assertEqual(c.downReason, "health check: connection refused")
        self.assertNotIn(c, self.balancer.candidates())

    def test_hostHeader(self):
        self.start()
        url, headers = self.http.asked[0]
        self.assertEqual(url, b"http://127.0.0.1:1/health")
        self.assertEqual(headers, {b"Host": [b"127.0.0.1:1"]})


class RealCheckTests(ProxyTestCase):
    async def test_realMemberStopsAndReturns(self):
        """
        Against real members: a stopped member is taken out by its checks,
        and comes back when it listens again.
        """
        from playbalancer.tap import makeHealthChecker

        a, b = self.startMembers("app1", "app2")
        balancer = self.startBalancer([a.url, b.url])
        balancer.activeChecks = True
        checker = makeHealthChecker(balancer, HealthConfig(interval=0.05, timeout=1, rise=2, fall=2), reactor)
        checker.startService()
        self.addCleanup(checker.stopService)
        await waitUntil(lambda: balancer.member("app1").checkPasses >= 2, reactor)
        await a.stop()
        await waitUntil(lambda: not balancer.member("app1").healthy, reactor)
        self.assertEqual(balancer.member("app1").downReason, "health check: connection refused")
        response, _ = await self.fetch(self.client(), "/")
        self.assertEqual(servedBy(response), "app2")
        a.start()
        await waitUntil(lambda: balancer.member("app1").healthy, reactor)

    async def test_checksDoNotFillTheLog(self):
        """
        HTTP checks, passing and refused, log the member going down and
        coming back and nothing else of their own (Twisted's client factory
        said "Starting factory" and "Stopping factory" for each check).
        """
        (a,) = self.startMembers("app1")
        await self.assertChecksLogOnlyChanges(a, self.startBalancer([a.url]))

    async def test_tcpChecksDoNotFillTheLog(self):
        """
        The same for TCP-mode checks (a connect and close).
        """
        (a,) = self.startMembers("app1")
        await self.assertChecksLogOnlyChanges(a, self.startBalancer([a.url]), tcp=True)

    async def test_httpsChecksDoNotFillTheLog(self):
        """
        The same for checks of an https member (TLS wraps the factory).
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        key, cert = writeSelfSigned(directory)
        a = MemberServer("app1", reactor, tls=(key, cert)).start()
        self.addCleanup(a.stop)
        trust = MemberTLS(loadAuthorities(cert))
        balancer = self.startBalancer([a.url], memberTLS=trust)
        await self.assertChecksLogOnlyChanges(a, balancer, tls=trust)

    async def assertChecksLogOnlyChanges(self, member, balancer, **options):
        """
        Check C{member} (C{app1} of C{balancer}) every 50 ms on the real
        reactor: while it answers, while it is stopped (refused), and once
        it is back.  Nothing is logged while it answers; then its down and
        up lines, and no factory start or stop line but those of the
        member's own listening port.
        """
        from twisted.logger import globalLogPublisher

        from playbalancer.assembly import makeHealthChecker

        balancer.activeChecks = True
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        settings = HealthConfig(interval=0.05, timeout=1, rise=2, fall=2)
        checker = makeHealthChecker(balancer, settings, reactor, **options)
        checker.startService()
        self.addCleanup(checker.stopService)
        app1 = balancer.member("app1")
        await waitUntil(lambda: app1.checkPasses >= 5, reactor)
        self.assertEqual([formatEvent(e) for e in events], [])
        await member.stop()
        await waitUntil(lambda: app1.checkFailures >= 5, reactor)
        self.assertFalse(app1.healthy)
        member.start()
        await waitUntil(lambda: app1.healthy and app1.checkPasses >= 5, reactor)
        checker.stopService()

        def fromTheMember(event):
            return type(event.get("factory")).__module__ == MemberServer.__module__

        factoryLines = [
            text
            for text, event in ((formatEvent(e), e) for e in events)
            if text.startswith(("Starting factory", "Stopping factory")) and not fromTheMember(event)
        ]
        self.assertEqual(factoryLines, [])
        changes = [(e["playbalancer_event"], e["member"]) for e in events if "playbalancer_event" in e]
        self.assertEqual(changes, [("member.down", "app1"), ("member.up", "app1")])


class FailOnStatusTests(ProxyTestCase):
    async def test_idempotentRetriedPostPassedOn(self):
        """
        A status listed in C{failonstatus} marks the member down; a GET is
        retried on another member, a POST gets the status as it is.
        """
        a, b = self.startMembers("app1", "app2")
        balancer = self.startBalancer([a.url, b.url], scheduler="standby")
        balancer.failOnStatus = frozenset([404])
        response, _ = await self.fetch(self.client(), "/missing")
        self.assertEqual((response.code, len(a.seen), len(b.seen)), (404, 1, 1))
        self.assertFalse(balancer.member("app1").healthy)
        self.assertEqual(balancer.member("app1").downReason, "answered 404")
        balancer.reset(balancer.member("app1"))
        balancer.reset(balancer.member("app2"))
        response, _ = await self.fetch(self.client(), "/missing", method="POST", data=b"x")
        self.assertEqual((response.code, len(a.seen), len(b.seen)), (404, 2, 1))


class SlowStartTests(SynchronousTestCase):
    def test_rampAfterComingUp(self):
        """
        A member brought back by its checks ramps from a small share to its
        full weight over C{slowstart} seconds; the configured weight is
        unchanged throughout.
        """
        clock = Clock()
        a = Member("a", "http://127.0.0.1:1", weight=4)
        b = Member("b", "http://127.0.0.1:2", weight=4)
        balancer = Balancer("web", RoundRobinScheduler(), [a, b], clock)
        balancer.activeChecks = True
        balancer.slowStart = 10.0
        balancer.memberFailed(a, "connection refused")
        balancer.checkResult(a, True, "HTTP 200", 0.001, rise=1, fall=1)
        self.assertTrue(a.healthy)
        self.assertEqual((a.weight, a.configuredWeight, a.ramping), (0.2, 4, True))
        clock.advance(5)
        self.assertEqual(a.weight, 2.0)
        picks = [balancer.pick(None).name for _ in range(300)]
        self.assertEqual(picks.count("a"), 100)
        clock.advance(5)
        self.assertEqual((a.weight, a.ramping), (4, False))
        self.assertEqual(b.weight, 4)

    def test_noSlowStartByDefault(self):
        clock = Clock()
        a = Member("a", "http://127.0.0.1:1", weight=3)
        balancer = Balancer("web", RoundRobinScheduler(), [a], clock)
        balancer.memberFailed(a, "x")
        balancer.memberSucceeded(a)
        self.assertEqual((a.weight, a.ramping), (3, False))


class _StallingResponse:
    code = 200

    def content(self):
        return defer.Deferred()


class StalledCheckTests(_CheckerCase):
    def test_bodyStallIsATimeout(self):
        """
        A member that sends headers and then stalls fails its check by
        timeout, and keeps being checked.
        """
        self.http.answers[b"http://127.0.0.1:1"] = "stall"
        original = self.http.get

        def get(url, headers=None):
            if url.startswith(b"http://127.0.0.1:1"):
                return defer.succeed(_StallingResponse())
            return original(url, headers)

        self.http.get = get
        self.start()
        self.rounds(3)
        self.assertEqual(self.a.downReason, "health check: timeout")
        self.clock.advance(1.5)  # the check under way times out too
        self.assertNotIn(self.a, self.checker._pending)
        self.assertEqual(self.a.checkFailures, 4)
