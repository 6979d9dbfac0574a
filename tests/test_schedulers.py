"""
Tests for L{playbalancer.schedulers}.
"""

from __future__ import annotations

from collections import Counter

from zope.interface.verify import verifyObject

from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.interfaces import IMember, IScheduler, ISchedulerFactory
from playbalancer.schedulers import (
    LeastConnScheduler,
    RoundRobinScheduler,
    SchedulerFactory,
    StandbyScheduler,
    availableSchedulers,
    leastConn,
    roundRobin,
    standby,
)


class FakeMember:
    """
    Just what a scheduler looks at.
    """

    def __init__(self, name, weight=1, active=0, standby=False):
        self.name = name
        self.url = f"http://{name}:80"
        self.weight = weight
        self.active = active
        self.standby = standby

    def __repr__(self):
        return f"<FakeMember {self.name}>"


def names(members):
    return "".join(m.name for m in members)


def picks(scheduler, candidates, count):
    return [scheduler.pick(candidates, None) for _ in range(count)]


class StandbySchedulerTests(SynchronousTestCase):
    def test_provides(self):
        self.assertTrue(verifyObject(IScheduler, StandbyScheduler()))

    def test_first(self):
        """
        Always the first candidate.
        """
        a, b, c = FakeMember("a"), FakeMember("b"), FakeMember("c")
        scheduler = StandbyScheduler()
        self.assertEqual(names(picks(scheduler, [a, b, c], 5)), "aaaaa")
        self.assertEqual(names(picks(scheduler, [b, c], 3)), "bbb")
        self.assertIs(scheduler.pick([c], object()), c)


class RoundRobinSchedulerTests(SynchronousTestCase):
    def test_provides(self):
        self.assertTrue(verifyObject(IScheduler, RoundRobinScheduler()))

    def test_single(self):
        a = FakeMember("a", weight=3)
        self.assertEqual(names(picks(RoundRobinScheduler(), [a], 4)), "aaaa")

    def test_equalWeightsAlternate(self):
        """
        Equal weights alternate strictly, in configured order.
        """
        a, b = FakeMember("a"), FakeMember("b")
        self.assertEqual(names(picks(RoundRobinScheduler(), [a, b], 8)), "abababab")

    def test_equalWeightsThree(self):
        a, b, c = FakeMember("a", 2), FakeMember("b", 2), FakeMember("c", 2)
        self.assertEqual(
            names(picks(RoundRobinScheduler(), [a, b, c], 9)), "abcabcabc"
        )

    def test_weightsShares(self):
        """
        Weights 5/1/1 give exactly 5:1:1 over 700 picks, and every window of
        7 consecutive picks (aligned) holds exactly that mix.
        """
        a, b, c = FakeMember("a", 5), FakeMember("b", 1), FakeMember("c", 1)
        sequence = names(picks(RoundRobinScheduler(), [a, b, c], 700))
        self.assertEqual(Counter(sequence), {"a": 500, "b": 100, "c": 100})
        for start in range(0, 700, 7):
            self.assertEqual(
                Counter(sequence[start : start + 7]), {"a": 5, "b": 1, "c": 1}
            )

    def test_weightsInterleaved(self):
        """
        5/1/1 is spread out (nginx's sequence), not five a's then b then c.
        """
        a, b, c = FakeMember("a", 5), FakeMember("b", 1), FakeMember("c", 1)
        self.assertEqual(
            names(picks(RoundRobinScheduler(), [a, b, c], 14)), "aabacaa" * 2
        )

    def test_twoToOneInterleaved(self):
        """
        For weights 2/1 the weight-1 member is never picked twice in a row
        and the weight-2 member never three times in a row.
        """
        a, b = FakeMember("a", 2), FakeMember("b", 1)
        sequence = names(picks(RoundRobinScheduler(), [a, b], 300))
        self.assertEqual(Counter(sequence), {"a": 200, "b": 100})
        self.assertNotIn("bb", sequence)
        self.assertNotIn("aaa", sequence)
        self.assertEqual(sequence[:6], "abaaba")

    def test_candidatesChange(self):
        """
        A member that drops out of the candidates stops being picked, and the
        rest settle into their shares after a short transient.
        """
        a, b, c = FakeMember("a"), FakeMember("b"), FakeMember("c")
        scheduler = RoundRobinScheduler()
        self.assertEqual(names(picks(scheduler, [a, b, c], 5)), "abcab")
        sequence = names(picks(scheduler, [a, c], 100))
        counts = Counter(sequence)
        self.assertEqual(set(counts), {"a", "c"})
        self.assertLessEqual(abs(counts["a"] - counts["c"]), 2)
        self.assertNotIn("aa", sequence[10:])
        self.assertNotIn("cc", sequence[10:])

    def test_manyMembersForgotten(self):
        """
        After many members left, picks among the remaining ones still follow
        the weights.
        """
        scheduler = RoundRobinScheduler()
        many = [FakeMember(f"m{i}") for i in range(40)]
        picks(scheduler, many, 7)
        a, b = FakeMember("a", 3), FakeMember("b", 1)
        sequence = [m.name for m in picks(scheduler, [a, b], 400)]
        self.assertEqual(Counter(sequence), {"a": 300, "b": 100})
        self.assertLessEqual(len(scheduler._current), 4 * 2 + 16)


class LeastConnSchedulerTests(SynchronousTestCase):
    def test_provides(self):
        self.assertTrue(verifyObject(IScheduler, LeastConnScheduler()))

    def test_fewestActive(self):
        a, b, c = FakeMember("a", active=3), FakeMember("b", active=1), FakeMember(
            "c", active=2
        )
        scheduler = LeastConnScheduler()
        self.assertEqual(names(picks(scheduler, [a, b, c], 3)), "bbb")

    def test_relativeToWeight(self):
        """
        Weight 4 with 3 in flight (0.75) beats weight 1 with 1 (1.0).
        """
        a = FakeMember("a", weight=1, active=1)
        b = FakeMember("b", weight=4, active=3)
        self.assertIs(LeastConnScheduler().pick([a, b], None), b)
        b.active = 5
        self.assertIs(LeastConnScheduler().pick([a, b], None), a)

    def test_tiesRoundRobin(self):
        """
        Tied members take turns.
        """
        a, b, c = FakeMember("a"), FakeMember("b"), FakeMember("c")
        sequence = names(picks(LeastConnScheduler(), [a, b, c], 9))
        self.assertEqual(Counter(sequence), {"a": 3, "b": 3, "c": 3})
        for start in range(0, 9, 3):
            self.assertEqual(sorted(sequence[start : start + 3]), ["a", "b", "c"])

    def test_weightedTie(self):
        """
        Weight 2 with 2 in flight ties with weight 1 with 1 in flight; the
        tie alternates; a lower-ratio member is not part of the tie.
        """
        a = FakeMember("a", weight=2, active=2)
        b = FakeMember("b", weight=1, active=1)
        c = FakeMember("c", weight=1, active=2)
        sequence = names(picks(LeastConnScheduler(), [c, a, b], 6))
        self.assertEqual(Counter(sequence), {"a": 3, "b": 3})
        self.assertNotIn("aa", sequence)
        self.assertNotIn("bb", sequence)

    def test_tieOnlyAmongBest(self):
        """
        A tie between worse members is dropped when a better one follows.
        """
        a = FakeMember("a", active=2)
        b = FakeMember("b", active=2)
        c = FakeMember("c", active=0)
        self.assertEqual(names(picks(LeastConnScheduler(), [a, b, c], 4)), "cccc")

    def test_followsActive(self):
        """
        As counts change, the pick follows them.
        """
        a, b = FakeMember("a"), FakeMember("b")
        scheduler = LeastConnScheduler()
        first = scheduler.pick([a, b], None)
        first.active += 1
        second = scheduler.pick([a, b], None)
        self.assertIsNot(second, first)
        second.active += 1
        a.active += 5
        self.assertIs(scheduler.pick([a, b], None), b)


class SchedulerFactoryTests(SynchronousTestCase):
    def test_makeScheduler(self):
        factory = SchedulerFactory("mine", "My scheduler.", StandbyScheduler)
        one = factory.makeScheduler({})
        two = factory.makeScheduler({})
        self.assertIsInstance(one, StandbyScheduler)
        self.assertIsNot(one, two)
        self.assertEqual(factory.name, "mine")
        self.assertEqual(factory.description, "My scheduler.")
        self.assertEqual(repr(factory), "<SchedulerFactory 'mine'>")

    def test_rejectsOptions(self):
        factory = SchedulerFactory("mine", "My scheduler.", StandbyScheduler)
        error = self.assertRaises(
            ValueError, factory.makeScheduler, {"zeta": 1, "alpha": True}
        )
        self.assertEqual(
            str(error), "scheduler 'mine' takes no options (got alpha, zeta)"
        )

    def test_builtins(self):
        """
        Each built-in is an L{IPlugin} and L{ISchedulerFactory} making a new
        L{IScheduler} of the right class.
        """
        for factory, name, cls in [
            (standby, "standby", StandbyScheduler),
            (roundRobin, "round-robin", RoundRobinScheduler),
            (leastConn, "least-conn", LeastConnScheduler),
        ]:
            self.assertTrue(verifyObject(IPlugin, factory))
            self.assertTrue(verifyObject(ISchedulerFactory, factory))
            self.assertEqual(factory.name, name)
            self.assertIsInstance(factory.description, str)
            self.assertTrue(factory.description)
            scheduler = factory.makeScheduler({})
            self.assertIsInstance(scheduler, cls)
            self.assertTrue(verifyObject(IScheduler, scheduler))
            self.assertRaises(ValueError, factory.makeScheduler, {"x": 1})

    def test_builtinsStateful(self):
        """
        Each balancer gets its own round robin state.
        """
        a, b = FakeMember("a"), FakeMember("b")
        one = roundRobin.makeScheduler({})
        two = roundRobin.makeScheduler({})
        self.assertIs(one.pick([a, b], None), a)
        self.assertIs(two.pick([a, b], None), a)


class AvailableSchedulersTests(SynchronousTestCase):
    def test_builtinsFound(self):
        found = availableSchedulers()
        self.assertIs(found.get("standby"), standby)
        self.assertIs(found.get("round-robin"), roundRobin)
        self.assertIs(found.get("least-conn"), leastConn)
        for name, factory in found.items():
            self.assertEqual(factory.name, name)
            self.assertTrue(verifyObject(ISchedulerFactory, factory))

    def test_firstWins(self):
        """
        When two plugins claim one name, the first found wins.
        """
        import playbalancer.schedulers as module

        first = SchedulerFactory("dup", "first", StandbyScheduler)
        second = SchedulerFactory("dup", "second", StandbyScheduler)
        self.patch(module, "getPlugins", lambda interface: iter([first, second]))
        self.assertEqual(availableSchedulers(), {"dup": first})


class FakeMemberTests(SynchronousTestCase):
    def test_fakeProvidesIMember(self):
        """
        The double used here has what L{IMember} asks for.
        """
        for attribute in IMember.names():
            self.assertTrue(hasattr(FakeMember("a"), attribute), attribute)
