"""
The hash scheduler keeps every scheduler's promises (playbalancer's
conformance tests), and, in the simulator, moves only the keys of a member
that leaves.  Run them from this directory with::

    python -m twisted.trial tests
"""

from twisted.trial.unittest import SynchronousTestCase

from playbalancer.testing import (
    Keys,
    RequestStream,
    SchedulerConformanceMixin,
    SimulatedMember,
    removeMember,
    simulate,
)

from hash_scheduler import hashScheduler


class HeaderKeyTests(SchedulerConformanceMixin, SynchronousTestCase):
    schedulerFactory = hashScheduler
    schedulerOptions = {"key": "header:X-User"}
    badSchedulerOptions = [{}, {"key": "query"}, {"key": "header:"}, {"key": 1}]


class CookieKeyTests(HeaderKeyTests):
    schedulerOptions = {"key": "cookie:session"}


class PathKeyTests(HeaderKeyTests):
    schedulerOptions = {"key": "path"}


class ClientKeyTests(HeaderKeyTests):
    schedulerOptions = {"key": "client"}


class SimulationTests(SynchronousTestCase):
    def test_removalMovesOnlyItsKeys(self):
        """
        Taking one of five members out moves its keys (a fifth of them),
        and no others: exactly the ideal.
        """
        report = simulate(
            hashScheduler.makeScheduler({"key": "header:X-User"}),
            [SimulatedMember(name) for name in ("a", "b", "c", "d", "e")],
            RequestStream(count=20000, rate=1000, keys=Keys(500, "header:X-User")),
            [removeMember(10, "c")],
            seed=1,
        )
        before, after = report.phases
        (remap,) = report.remaps
        self.assertEqual(remap.keys, 500)
        self.assertAlmostEqual(remap.ideal, 0.2)
        # The keys that moved are those that were on c, and only those.
        self.assertEqual(remap.movedFrom, {"c": remap.moved})
        self.assertTrue(80 <= remap.moved <= 120, remap.moved)
        self.assertEqual(set(remap.movedTo), {"a", "b", "d", "e"})
        self.assertNotIn("c", after.served)
