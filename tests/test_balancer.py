"""
Tests for L{playbalancer.balancer}.
"""

from __future__ import annotations

from zope.interface.verify import verifyObject

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.balancer import ADMIN_STATES, Balancer, Member
from playbalancer.interfaces import IMember
from playbalancer.schedulers import RoundRobinScheduler, StandbyScheduler


class RecordingScheduler:
    """
    Picks the last candidate and remembers what it was offered.
    """

    def __init__(self):
        self.offered = []

    def pick(self, candidates, request):
        self.offered.append((list(candidates), request))
        return candidates[-1]


def members(*specs):
    """
    Members from C{(name, weight, standby)} tuples, on ports 9001, 9002, ...
    """
    return [
        Member(name, f"http://127.0.0.1:{9000 + i + 1}", weight=weight, standby=standby)
        for i, (name, weight, standby) in enumerate(specs)
    ]


def names(found):
    return [m.name for m in found]


class MemberTests(SynchronousTestCase):
    def test_provides(self):
        self.assertTrue(verifyObject(IMember, Member("a", "http://h:1")))

    def test_defaults(self):
        m = Member("app1", "http://127.0.0.1:9999")
        self.assertEqual(m.name, "app1")
        self.assertEqual(m.url, "http://127.0.0.1:9999")
        self.assertEqual(m.scheme, "http")
        self.assertEqual(m.host, "127.0.0.1")
        self.assertEqual(m.port, 9999)
        self.assertEqual(m.weight, 1)
        self.assertIs(m.standby, False)
        self.assertEqual(m.admin, "enabled")
        self.assertEqual(
            (m.active, m.requests, m.failures, m.bytesIn, m.bytesOut), (0, 0, 0, 0, 0)
        )
        self.assertEqual((m.downSince, m.downUntil, m.downReason), (None, None, None))
        self.assertIs(m.healthy, True)
        self.assertEqual(repr(m), "<Member app1 http://127.0.0.1:9999>")
        self.assertEqual(ADMIN_STATES, ("enabled", "drain", "disabled"))

    def test_nonDefaultPort(self):
        m = Member("a", "http://127.0.0.1:9999")
        self.assertEqual(m.origin, b"http://127.0.0.1:9999")
        self.assertEqual(m.hostHeader, b"127.0.0.1:9999")
        self.assertEqual(m.basePath, b"")

    def test_defaultPortHTTP(self):
        m = Member("a", "http://app.example")
        self.assertEqual(m.port, 80)
        self.assertEqual(m.origin, b"http://app.example:80")
        self.assertEqual(m.hostHeader, b"app.example")

    def test_explicitDefaultPort(self):
        m = Member("a", "http://app.example:80/")
        self.assertEqual(m.hostHeader, b"app.example")
        self.assertEqual(m.origin, b"http://app.example:80")
        self.assertEqual(m.basePath, b"")

    def test_defaultPortHTTPS(self):
        m = Member("a", "https://app.example/")
        self.assertEqual(m.port, 443)
        self.assertEqual(m.origin, b"https://app.example:443")
        self.assertEqual(m.hostHeader, b"app.example")

    def test_httpsNonDefaultPort(self):
        m = Member("a", "https://app.example:80")
        self.assertEqual(m.hostHeader, b"app.example:80")
        self.assertEqual(m.origin, b"https://app.example:80")

    def test_ipv6(self):
        m = Member("a", "http://[::1]:8080/")
        self.assertEqual(m.host, "::1")
        self.assertEqual(m.origin, b"http://[::1]:8080")
        self.assertEqual(m.hostHeader, b"[::1]:8080")

    def test_ipv6DefaultPort(self):
        m = Member("a", "https://[2001:db8::5]")
        self.assertEqual(m.origin, b"https://[2001:db8::5]:443")
        self.assertEqual(m.hostHeader, b"[2001:db8::5]")

    def test_basePath(self):
        self.assertEqual(Member("a", "http://h:81/prefix").basePath, b"/prefix")
        self.assertEqual(Member("a", "http://h:81/prefix/").basePath, b"/prefix")
        self.assertEqual(Member("a", "http://h:81/a/b/").basePath, b"/a/b")
        self.assertEqual(Member("a", "http://h:81//a//b").basePath, b"/a/b")
        self.assertEqual(Member("a", "http://h:81/a%20b").basePath, b"/a%20b")
        self.assertEqual(Member("a", "http://h:81").basePath, b"")
        self.assertEqual(Member("a", "http://h:81/").basePath, b"")

    def test_bytesTypes(self):
        m = Member("a", "http://h:81/p")
        for value in (m.origin, m.hostHeader, m.basePath):
            self.assertIsInstance(value, bytes)


class CandidatesTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)

    def balancer(self, found, retry=60.0, scheduler=None):
        return Balancer(
            "b", scheduler or StandbyScheduler(), found, self.clock, retry=retry
        )

    def test_all(self):
        balancer = self.balancer(members(("a", 1, False), ("b", 2, False)))
        self.assertEqual(names(balancer.candidates()), ["a", "b"])

    def test_order(self):
        """
        Configured order, whatever the weights or names.
        """
        found = members(("z", 1, False), ("a", 5, False), ("m", 1, False))
        self.assertEqual(names(self.balancer(found).candidates()), ["z", "a", "m"])

    def test_adminNotEnabled(self):
        a, b, c = found = members(("a", 1, False), ("b", 1, False), ("c", 1, False))
        a.admin = "drain"
        c.admin = "disabled"
        self.assertEqual(names(self.balancer(found).candidates()), ["b"])

    def test_adminUnknownExcluded(self):
        a, b = found = members(("a", 1, False), ("b", 1, False))
        a.admin = "ENABLED"
        self.assertEqual(names(self.balancer(found).candidates()), ["b"])

    def test_weightZero(self):
        found = members(("a", 0, False), ("b", 1, False))
        self.assertEqual(names(self.balancer(found).candidates()), ["b"])

    def test_allWeightZero(self):
        found = members(("a", 0, False), ("b", 0, True))
        balancer = self.balancer(found)
        self.assertEqual(balancer.candidates(), [])
        self.assertIsNone(balancer.pick(None))

    def test_exclude(self):
        a, b, c = found = members(("a", 1, False), ("b", 1, False), ("c", 1, False))
        balancer = self.balancer(found)
        self.assertEqual(names(balancer.candidates(exclude=[b])), ["a", "c"])
        self.assertEqual(names(balancer.candidates(exclude=(a, c))), ["b"])
        self.assertEqual(balancer.candidates(exclude={a, b, c}), [])

    def test_standbyOnlyWithoutPrimary(self):
        p, s = found = members(("p", 1, False), ("s", 1, True))
        balancer = self.balancer(found)
        self.assertEqual(names(balancer.candidates()), ["p"])
        self.assertEqual(names(balancer.candidates(exclude=[p])), ["s"])
        p.admin = "disabled"
        self.assertEqual(names(balancer.candidates()), ["s"])

    def test_standbyWhenPrimaryResting(self):
        p, s = found = members(("p", 1, False), ("s", 1, True))
        balancer = self.balancer(found)
        balancer.memberFailed(p, "refused")
        self.assertEqual(names(balancer.candidates()), ["s"])

    def test_severalStandbys(self):
        found = members(("s1", 1, True), ("p", 0, False), ("s2", 1, True))
        self.assertEqual(names(self.balancer(found).candidates()), ["s1", "s2"])

    def test_restingUntilRetry(self):
        """
        A failed member is left out until C{retry} seconds have passed on
        the clock, then comes back.
        """
        a, b = found = members(("a", 1, False), ("b", 1, False))
        balancer = self.balancer(found, retry=30)
        balancer.memberFailed(a, "refused")
        self.assertEqual(names(balancer.candidates()), ["b"])
        self.clock.advance(29.9)
        self.assertEqual(names(balancer.candidates()), ["b"])
        self.clock.advance(0.1)
        self.assertEqual(names(balancer.candidates()), ["a", "b"])
        # Still not healthy: only a success says so.
        self.assertIs(a.healthy, False)

    def test_retryZero(self):
        a, b = found = members(("a", 1, False), ("b", 1, False))
        balancer = self.balancer(found, retry=0)
        balancer.memberFailed(a, "refused")
        self.assertEqual(names(balancer.candidates()), ["a", "b"])

    def test_failAgainExtendsRest(self):
        a, b = found = members(("a", 1, False), ("b", 1, False))
        balancer = self.balancer(found, retry=10)
        balancer.memberFailed(a, "refused")
        self.clock.advance(10)
        self.assertEqual(names(balancer.candidates()), ["a", "b"])
        balancer.memberFailed(a, "refused again")
        self.assertEqual(names(balancer.candidates()), ["b"])
        self.clock.advance(9)
        self.assertEqual(names(balancer.candidates()), ["b"])
        self.clock.advance(1)
        self.assertEqual(names(balancer.candidates()), ["a", "b"])

    def test_forceRecoveryPrimaries(self):
        """
        When every usable member rests, they are all offered anyway.
        """
        a, b = found = members(("a", 1, False), ("b", 1, False))
        balancer = self.balancer(found)
        balancer.memberFailed(a, "refused")
        balancer.memberFailed(b, "refused")
        self.assertEqual(names(balancer.candidates()), ["a", "b"])

    def test_forceRecoveryPrimariesFirst(self):
        """
        Forced recovery returns every resting member, primaries first, even
        when a standby comes first in configured order.
        """
        s, p1, p2 = found = members(("s", 1, True), ("p1", 1, False), ("p2", 1, False))
        balancer = self.balancer(found)
        for member in found:
            balancer.memberFailed(member, "refused")
        self.assertEqual(names(balancer.candidates()), ["p1", "p2", "s"])

    def test_forceRecoveryStandbysOnly(self):
        p, s = found = members(("p", 1, False), ("s", 1, True))
        p.admin = "disabled"
        balancer = self.balancer(found)
        balancer.memberFailed(s, "refused")
        self.assertEqual(names(balancer.candidates()), ["s"])

    def test_forceRecoveryNotWhenStandbyUsable(self):
        """
        A usable standby is preferred to a resting primary.
        """
        p, s = found = members(("p", 1, False), ("s", 1, True))
        balancer = self.balancer(found)
        balancer.memberFailed(p, "refused")
        self.assertEqual(names(balancer.candidates()), ["s"])

    def test_forceRecoveryRespectsAdminWeightExclude(self):
        """
        Forced recovery only brings back members that qualify otherwise.
        """
        a, b, c, d = found = members(
            ("a", 1, False), ("b", 0, False), ("c", 1, False), ("d", 1, False)
        )
        balancer = self.balancer(found)
        for member in found:
            balancer.memberFailed(member, "refused")
        c.admin = "drain"
        self.assertEqual(names(balancer.candidates()), ["a", "d"])
        self.assertEqual(names(balancer.candidates(exclude=[a])), ["d"])
        self.assertEqual(balancer.candidates(exclude=[a, d]), [])


class PickTests(SynchronousTestCase):
    def test_noCandidates(self):
        scheduler = RecordingScheduler()
        (a,) = found = members(("a", 1, False))
        balancer = Balancer("b", scheduler, found, Clock())
        self.assertIsNone(balancer.pick(object(), exclude=[a]))
        self.assertEqual(scheduler.offered, [])

    def test_noMembers(self):
        balancer = Balancer("b", RecordingScheduler(), [], Clock())
        self.assertIsNone(balancer.pick(None))

    def test_schedulerChooses(self):
        scheduler = RecordingScheduler()
        a, b, c = found = members(("a", 1, False), ("b", 1, False), ("c", 1, True))
        balancer = Balancer("b", scheduler, found, Clock())
        request = object()
        self.assertIs(balancer.pick(request), b)
        self.assertEqual(scheduler.offered, [([a, b], request)])
        self.assertIs(balancer.pick(None, exclude=[b]), a)

    def test_roundRobin(self):
        found = members(("a", 1, False), ("b", 1, False))
        balancer = Balancer("b", RoundRobinScheduler(), found, Clock())
        self.assertEqual(
            [balancer.pick(None).name for _ in range(4)], ["a", "b", "a", "b"]
        )

    def test_attributes(self):
        clock = Clock()
        found = members(("a", 1, False))
        scheduler = StandbyScheduler()
        balancer = Balancer(
            "web", scheduler, iter(found), clock, retry=5, schedulerName="standby"
        )
        self.assertEqual(balancer.name, "web")
        self.assertIs(balancer.scheduler, scheduler)
        self.assertEqual(balancer.schedulerName, "standby")
        self.assertEqual(balancer.members, found)
        self.assertEqual(balancer.retry, 5)

    def test_member(self):
        a, b = found = members(("a", 1, False), ("b", 1, False))
        balancer = Balancer("b", StandbyScheduler(), found, Clock())
        self.assertIs(balancer.member("b"), b)
        self.assertIsNone(balancer.member("c"))


class CounterTests(SynchronousTestCase):
    def test_beginEnd(self):
        (a,) = found = members(("a", 1, False))
        balancer = Balancer("b", StandbyScheduler(), found, Clock())
        balancer.begin(a)
        balancer.begin(a)
        self.assertEqual((a.active, a.requests), (2, 2))
        balancer.end(a, bytesIn=10, bytesOut=200)
        self.assertEqual((a.active, a.requests, a.bytesIn, a.bytesOut), (1, 2, 10, 200))
        balancer.end(a)
        self.assertEqual((a.active, a.requests, a.bytesIn, a.bytesOut), (0, 2, 10, 200))
        balancer.begin(a)
        balancer.end(a, 5, 7)
        self.assertEqual((a.active, a.requests, a.bytesIn, a.bytesOut), (0, 3, 15, 207))


class HealthTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(100)
        self.a, self.b = members(("a", 1, False), ("b", 1, False))
        self.balancer = Balancer(
            "b", StandbyScheduler(), [self.a, self.b], self.clock, retry=60
        )

    def test_failed(self):
        a = self.a
        self.balancer.memberFailed(a, "connection refused")
        self.assertEqual(a.failures, 1)
        self.assertEqual(a.downSince, 100)
        self.assertEqual(a.downUntil, 160)
        self.assertEqual(a.downReason, "connection refused")
        self.assertIs(a.healthy, False)
        self.assertIs(self.b.healthy, True)
        self.assertEqual(self.b.failures, 0)

    def test_failedAgain(self):
        """
        A second failure counts, moves the retry time and reason, and keeps
        the time it first went down.
        """
        a = self.a
        self.balancer.memberFailed(a, "refused")
        self.clock.advance(70)
        self.balancer.memberFailed(a, "timeout")
        self.assertEqual(a.failures, 2)
        self.assertEqual(a.downSince, 100)
        self.assertEqual(a.downUntil, 230)
        self.assertEqual(a.downReason, "timeout")

    def test_succeeded(self):
        a = self.a
        self.balancer.memberFailed(a, "refused")
        self.clock.advance(5)
        self.balancer.memberSucceeded(a)
        self.assertIs(a.healthy, True)
        self.assertEqual((a.downSince, a.downUntil, a.downReason), (None, None, None))
        self.assertEqual(a.failures, 1)
        self.assertEqual(names(self.balancer.candidates()), ["a", "b"])
        self.balancer.memberFailed(a, "again")
        self.assertEqual(a.downSince, 105)
        self.assertEqual(a.failures, 2)

    def test_succeededWhileHealthy(self):
        a = self.a
        self.balancer.memberSucceeded(a)
        self.assertIs(a.healthy, True)
        self.assertEqual((a.failures, a.downSince, a.downUntil), (0, None, None))

    def test_logged(self):
        """
        Going down and coming back are logged once each.
        """
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.balancer.memberFailed(self.a, "refused")
        self.balancer.memberFailed(self.a, "refused")
        self.balancer.memberSucceeded(self.a)
        self.balancer.memberSucceeded(self.a)
        mine = [e for e in events if e.get("member") == "a"]
        self.assertEqual(len(mine), 2)
        self.assertEqual(mine[0]["reason"], "refused")
        self.assertEqual(mine[0]["balancer"], "b")
