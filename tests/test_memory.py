"""
L{playbalancer.memory}: the allocator and collector settings.
"""

from __future__ import annotations

import gc
import platform

from twisted.trial.unittest import TestCase

from playbalancer.memory import (
    PYPY_NURSERY,
    childEnvironment,
    nurseryAdvice,
    settleHeap,
    tuneAllocator,
)


class MemoryTests(TestCase):
    def test_tuneAllocatorOnGlibc(self):
        """
        On glibc the thresholds are set; elsewhere nothing is done.
        """
        onGlibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
        self.assertEqual(tuneAllocator(), onGlibc)

    def test_settleHeapFreezesWhatIsAlive(self):
        """
        An object alive when the heap settles is out of the collector's
        generations afterwards (where the runtime can freeze at all), and
        garbage cycles made before are collected.
        """
        alive = [object()]
        cycle = []
        cycle.append(cycle)
        del cycle
        frozen = settleHeap()
        if not hasattr(gc, "freeze"):
            self.assertEqual(frozen, 0)
            return
        self.addCleanup(gc.unfreeze)
        self.assertGreater(frozen, 0)
        self.assertFalse(any(o is alive for o in gc.get_objects()))


class NurseryTests(TestCase):
    def test_adviceOnPyPyWithoutSetting(self):
        advice = nurseryAdvice({}, pypy=True)
        self.assertIn(f"PYPY_GC_NURSERY={PYPY_NURSERY}", advice)

    def test_noAdviceWhenSetOrNotPyPy(self):
        self.assertIsNone(nurseryAdvice({"PYPY_GC_NURSERY": "4M"}, pypy=True))
        self.assertIsNone(nurseryAdvice({}, pypy=False))

    def test_childEnvironment(self):
        """
        Workers get the recommended nursery, unless the operator chose one,
        and the rest of the environment as it is.
        """
        self.assertEqual(
            childEnvironment({"PATH": "/bin"}), {"PATH": "/bin", "PYPY_GC_NURSERY": PYPY_NURSERY}
        )
        self.assertEqual(childEnvironment({"PYPY_GC_NURSERY": "4M"}), {"PYPY_GC_NURSERY": "4M"})


class HeapTrimmerTests(TestCase):
    """
    The heap is trimmed once a burst of connections has gone, never on a
    steady load.
    """

    def test_trimAfterABurst(self):
        from twisted.internet.task import Clock

        from playbalancer.memory import HeapTrimmer

        clock = Clock()
        open_ = [0]
        trims = []
        trimmer = HeapTrimmer(lambda: open_[0], clock, interval=5, least=100, trim=lambda: trims.append(1))
        trimmer.start()
        for count in [10, 50, 60, 55]:  # a steady load
            open_[0] = count
            clock.advance(5)
        self.assertEqual(trims, [])
        open_[0] = 1000  # a burst of slow clients
        clock.advance(5)
        open_[0] = 900
        clock.advance(5)
        self.assertEqual(trims, [])
        open_[0] = 20  # gone
        clock.advance(5)
        self.assertEqual(trims, [1])
        clock.advance(5)
        self.assertEqual(trims, [1])
        trimmer.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_trimHeapRuns(self):
        from playbalancer.memory import trimHeap

        onGlibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
        self.assertEqual(trimHeap(), onGlibc)
