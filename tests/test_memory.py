"""
L{playbalancer.memory}: the allocator and collector settings.
"""

from __future__ import annotations

import gc
import platform

from twisted.trial.unittest import TestCase

from playbalancer.memory import settleHeap, tuneAllocator


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
