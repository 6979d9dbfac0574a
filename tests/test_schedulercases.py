"""
The scheduler conformance tests (L{playbalancer.testing.schedulercases})
applied to the built-in schedulers and to the two example plugins under
C{examples/} (loaded from their files, as in L{tests.test_hash_scheduler});
and a check that the mixin does catch schedulers that break its promises.
"""

from __future__ import annotations

import copy
import importlib.util
import os

from zope.interface import implementer

from twisted.plugin import IPlugin
from twisted.trial.reporter import TestResult
from twisted.trial.unittest import SynchronousTestCase

from playbalancer import schedulers
from playbalancer.interfaces import IScheduler, ISchedulerFactory
from playbalancer.schedulers import ewma, hashing
from playbalancer.testing import SchedulerConformanceMixin

from tests.pluginharness import EXAMPLES


def _loadExample(directory, package):
    spec = importlib.util.spec_from_file_location(
        f"_{package}_conformance", os.path.join(EXAMPLES, directory, package, "__init__.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StandbyConformanceTests(SchedulerConformanceMixin, SynchronousTestCase):
    schedulerFactory = schedulers.standby


class RoundRobinConformanceTests(SchedulerConformanceMixin, SynchronousTestCase):
    schedulerFactory = schedulers.roundRobin


class LeastConnConformanceTests(SchedulerConformanceMixin, SynchronousTestCase):
    schedulerFactory = schedulers.leastConn


class PeakEwmaConformanceTests(SchedulerConformanceMixin, SynchronousTestCase):
    schedulerFactory = ewma.peakEwma
    schedulerOptions = {"decay": 5}
    badSchedulerOptions = [{"decay": 0}, {"decay": "fast"}, {"failure_penalty": -1}]


class HashConformanceTests(SchedulerConformanceMixin, SynchronousTestCase):
    schedulerFactory = hashing.consistentHash
    schedulerOptions = {"key": "header:X-User", "balance_factor": 1.25}
    badSchedulerOptions = [{}, {"key": "query"}, {"key": "client", "balance_factor": 1}]


class HashOnClientConformanceTests(HashConformanceTests):
    schedulerOptions = {"key": "client"}


class HashExampleConformanceTests(SchedulerConformanceMixin, SynchronousTestCase):
    schedulerFactory = _loadExample("hash-scheduler", "hash_scheduler").hashScheduler
    schedulerOptions = {"key": "header:X-User"}
    badSchedulerOptions = [{}, {"key": "query"}, {"key": 1}, {"key": "header:"}]


class HashExampleOnCookieConformanceTests(HashExampleConformanceTests):
    schedulerOptions = {"key": "cookie:session"}


class HashExampleOnClientConformanceTests(HashExampleConformanceTests):
    schedulerOptions = {"key": "client"}


class HashExampleOnPathConformanceTests(HashExampleConformanceTests):
    schedulerOptions = {"key": "path"}


class P2CExampleConformanceTests(SchedulerConformanceMixin, SynchronousTestCase):
    schedulerFactory = _loadExample("p2c-scheduler", "p2c_scheduler").p2c
    schedulerOptions = {"seed": 1}
    badSchedulerOptions = [{"seed": "one"}, {"seed": True}]


@implementer(IPlugin, ISchedulerFactory)
class _Factory:
    name = "broken"
    description = "Breaks a promise."

    def __init__(self, pick):
        self._pick = pick

    def makeScheduler(self, options):
        if options:
            raise ValueError("no options")
        return _Scheduler(self._pick)


@implementer(IScheduler)
class _Scheduler:
    def __init__(self, pick):
        self.pick = pick


class MixinCatchesTests(SynchronousTestCase):
    """
    The mixin fails schedulers that break a promise.
    """

    def failures(self, pick, *tests):
        """
        Run C{tests} of the mixin on a scheduler picking with C{pick}; the
        names of those that failed or raised.
        """

        class Case(SchedulerConformanceMixin, SynchronousTestCase):
            schedulerFactory = _Factory(pick)

        failed = []
        for name in tests:
            result = TestResult()
            Case(name).run(result)
            if result.failures or result.errors:
                failed.append(name)
        return failed

    ALL = (
        "test_oneCandidate",
        "test_picksACandidate",
        "test_awkwardRequests",
        "test_changingCandidates",
        "test_anyLoadAndWeight",
        "test_anySequence",
    )

    def test_wellBehaved(self):
        self.assertEqual(self.failures(lambda candidates, request: candidates[-1], *self.ALL), [])

    def test_equalButNotACandidate(self):
        """
        A copy of a member is not a candidate.
        """
        self.assertEqual(
            self.failures(lambda candidates, request: copy.copy(candidates[0]), *self.ALL), list(self.ALL)
        )

    def test_readsHeadersCarelessly(self):
        """
        A scheduler that assumes the header is there fails on requests
        without it.
        """

        def pick(candidates, request):
            value = request.header(b"X-User")
            return candidates[len(value.decode("utf-8")) % len(candidates)]

        self.assertEqual(self.failures(pick, "test_awkwardRequests"), ["test_awkwardRequests"])

    def test_sortsInPlace(self):
        def pick(candidates, request):
            candidates.sort(key=lambda member: member.name, reverse=True)
            return candidates[0]

        self.assertIn("test_picksACandidate", self.failures(pick, "test_picksACandidate"))

    def test_tuple(self):
        def pick(candidates, request):
            return candidates.copy()[0]

        self.assertEqual(self.failures(pick, "test_anySequence"), ["test_anySequence"])
