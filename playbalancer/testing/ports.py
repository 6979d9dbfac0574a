"""
Free ports on 127.0.0.1 for child processes that must be told their port
before they bind it (a twistd under test, a peer in a benchmark).

A port the kernel picks for port 0 comes from its ephemeral range, the
range it also uses for outgoing connections and for every other port-0
listener on the machine: between our probe and the child's bind, another
test process (trial -jN) may be given the same port. So ports come from
below the ephemeral range instead, and each one handed out is reserved
for L{RESERVED_FOR} seconds by a file in L{reservationDirectory}, created
exclusively, which every process using this module respects; a process
removes its own reservations when it exits.
"""

from __future__ import annotations

import atexit
import errno
import os
import random
import socket
import tempfile
import time

__all__ = ["NoFreePort", "freePorts", "freePort", "RESERVED_FOR"]

RESERVED_FOR = 600.0
"""Seconds a port handed out stays reserved (long enough for any child to bind it)."""

_LOWEST = 21000
"""Not below this: the benchmarks in C{benchmarks/} use 20000-20999."""
_SPAN = 12000


_ours = set()
"""Paths of the reservations this process made, removed at exit."""


class NoFreePort(Exception):
    """
    Every port of the range is reserved or in use.
    """


def ephemeralRange():
    """
    The kernel's ephemeral port range, C{(low, high)} inclusive (Linux's
    default if it cannot be read).
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(field) for field in f.read().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def candidateRange():
    """
    The ports to hand out, C{(start, stop)} with C{stop} excluded: up to
    L{_SPAN} ports just below the ephemeral range; L{None} when that leaves
    too few (then the kernel picks, as for port 0).
    """
    low, _ = ephemeralRange()
    start = max(_LOWEST, low - _SPAN)
    if low - start < 1000:
        return None
    return start, low


def reservationDirectory():
    """
    Where reservations are kept: one per user, shared by every process.
    """
    return os.path.join(tempfile.gettempdir(), f"playbalancer-test-ports-{os.getuid()}")


def _pruneStale(directory, now):
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        try:
            if now - os.stat(path).st_mtime > RESERVED_FOR:
                os.unlink(path)
        except FileNotFoundError:
            pass


def _reserve(directory, port):
    path = os.path.join(directory, str(port))
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    _ours.add(path)
    return True


def _release(path):
    _ours.discard(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@atexit.register
def _releaseOurs():
    for path in list(_ours):
        _release(path)


def _bindable(port):
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", port))
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            return False
        raise
    finally:
        probe.close()
    return True


def _fromKernel(count):
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def freePorts(count):
    """
    C{count} distinct TCP ports on 127.0.0.1, free now and reserved for
    L{RESERVED_FOR} seconds against every other caller.

    @raise NoFreePort: when the range has fewer than C{count} left.
    """
    span = candidateRange()
    if span is None:
        return _fromKernel(count)
    start, stop = span
    directory = reservationDirectory()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    _pruneStale(directory, time.time())
    size = stop - start
    offset = random.randrange(size)
    found = []
    for step in range(size):
        port = start + (offset + step) % size
        if _reserve(directory, port):
            if _bindable(port):
                found.append(port)
                if len(found) == count:
                    return found
            else:
                _release(os.path.join(directory, str(port)))
    raise NoFreePort(f"fewer than {count} free ports in {start}-{stop - 1}")


def freePort():
    """
    One port, as L{freePorts}.
    """
    return freePorts(1)[0]
