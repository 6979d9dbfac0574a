"""
Memory settings for a long-running proxy: the C allocator's, for moving
large bodies, and the garbage collector's, for short pauses.

With glibc's defaults, a buffer over 128 KiB (a 256 KiB socket read, say)
is a fresh C{mmap} whose pages the kernel must fault in and zero on every
read, and freed heap is given back to the kernel as soon as 128 KiB of it
is free at the top.  Moving 1 MiB bodies, that page work cost about a third
of the balancer's CPU.  Keeping buffers up to 1 MiB on the heap and up to
16 MiB of freed heap in the process removes it (measured: about 600 to about
950 MiB per CPU-second through the HTTP proxy on CPython).
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform

#: glibc's C{mallopt} parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tuneAllocator(mmapThreshold=1 << 20, trimThreshold=16 << 20):
    """
    Set glibc's mmap and trim thresholds for this process.

    @return: whether they were set (C{False} on other C libraries).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return (
        mallopt(_M_MMAP_THRESHOLD, mmapThreshold) == 1
        and mallopt(_M_TRIM_THRESHOLD, trimThreshold) == 1
    )


def trimHeap():
    """
    Give the C allocator's free memory back to the kernel (glibc's
    C{malloc_trim}).

    @return: whether it was called (C{False} on other C libraries).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


class HeapTrimmer:
    """
    After a burst of connections has gone (slow clients, say), give the
    memory they used back: every C{interval} seconds, if the open
    connections fell below half of their peak since the last trim, and by
    at least C{least}, trim the heap.  Trimming costs a walk of the heap,
    so it is done only then, never on a steady load.

    @param openConnections: a callable giving the connections open now.
    """

    def __init__(self, openConnections, clock, interval=5.0, least=100, trim=trimHeap):
        self.openConnections = openConnections
        self.clock = clock
        self.interval = interval
        self.least = least
        self.trim = trim
        self.peak = 0
        self.trims = 0
        self._call = None

    def start(self):
        self._call = self.clock.callLater(self.interval, self._look)

    def stop(self):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _look(self):
        now = self.openConnections()
        self.peak = max(self.peak, now)
        if self.peak - now >= self.least and now < self.peak / 2:
            self.trim()
            self.trims += 1
            self.peak = now
        self._call = self.clock.callLater(self.interval, self._look)


def settleHeap():
    """
    Collect once, then put every object alive now (modules, configuration,
    the services) out of the cycle collector's reach, so that its full
    collections scan only what was made since.  Without this, a full
    collection paused the proxy for about 50 ms (CPython 3.11, measured
    under load), the largest part of its p99 latency.  PyPy's collector is
    incremental and has no C{freeze}.

    @return: how many objects are frozen now (0 without C{gc.freeze}).
    """
    gc.collect()
    freeze = getattr(gc, "freeze", None)
    if freeze is None:
        return 0
    freeze()
    return gc.get_freeze_count()


#: The young-generation size PyPy should run the balancer with, set in its
#: environment (PyPy reads it only at start).  PyPy sizes the nursery from
#: the L2 cache (1 MiB here), so objects alive at each of many minor
#: collections fill the old generation: about 5 KB per proxied request,
#: and a full collection of 60 ms every second or so under load (p99 +60
#: ms).  With 16 MiB: p99 +1-2 ms at 4,500 req/s, and a quarter more
#: requests per CPU-second.
PYPY_NURSERY = "16M"


def onPyPy():
    return platform.python_implementation() == "PyPy"


def nurseryAdvice(environ=os.environ, pypy=None):
    """
    What to tell the operator about PyPy's nursery size, or L{None}: on
    PyPy without C{PYPY_GC_NURSERY} in the environment, the setting to use.
    """
    if pypy is None:
        pypy = onPyPy()
    if not pypy or environ.get("PYPY_GC_NURSERY"):
        return None
    return (
        f"PyPy runs with its default nursery; start it with PYPY_GC_NURSERY={PYPY_NURSERY} "
        "in the environment for short collector pauses (see README, Performance)"
    )


def childEnvironment(environ=os.environ):
    """
    The environment for a worker process: the parent's, with PyPy's
    nursery size unless the operator chose one.
    """
    env = dict(environ)
    env.setdefault("PYPY_GC_NURSERY", PYPY_NURSERY)
    return env
