"""
Free ports on 127.0.0.1 for child processes that must be told their port
before they bind it (a twistd under test, a peer in a benchmark).

A port the kernel picks for port 0 comes from its ephemeral range, the
range it also uses for outgoing connections and for every other port-0
listener on the machine: between our probe and the child's bind, another
test process (trial -jN) may be given the same port.  So ports come from
below the ephemeral range instead, and each one handed out is reserved
against every other process by a lock on the byte at its number in one
lock file per user (C{fcntl.lockf}).  The kernel drops a process's locks
when it exits, however it exits, and a forked child inherits none.  A
process lets a port go L{RESERVED_FOR} seconds after taking it (long
enough for any child to bind it), and never hands it out twice before.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import socket
import stat
import tempfile
import time

__all__ = ["NoFreePort", "freePorts", "freePort", "RESERVED_FOR"]

RESERVED_FOR = 600.0
"""Seconds a port handed out stays reserved (long enough for any child to bind it)."""

_LOWEST = 21000
"""Not below this: the benchmarks in C{benchmarks/} use 20000-20999."""
_SPAN = 12000


class NoFreePort(Exception):
    """
    Every port of the range is reserved or in use.
    """


def ephemeralRange():
    """
    The kernel's ephemeral port range, C{(low, high)} inclusive, or
    L{None} if it cannot be read.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(field) for field in f.read().split())
    except (OSError, ValueError):
        return None
    return low, high


def candidateRange():
    """
    The ports to hand out, C{(start, stop)} with C{stop} excluded: up to
    L{_SPAN} ports just below the ephemeral range; L{None} when that range
    is unknown or leaves too few (then the kernel picks, as for port 0).
    """
    ephemeral = ephemeralRange()
    if ephemeral is None:
        return None
    low = ephemeral[0]
    start = max(_LOWEST, low - _SPAN)
    if low - start < 1000:
        return None
    return start, low


def lockPath():
    """
    The lock file: one per user, shared by every process.
    """
    return os.path.join(tempfile.gettempdir(), f"playbalancer-test-ports-{os.getuid()}.lock")


class _Reservations:
    """
    This process's reservations: the lock file, opened once (closing any
    descriptor of it would drop every lock this process holds), and the
    ports taken with when.
    """

    def __init__(self):
        self._fd = None
        self._path = None
        self.taken = {}

    def _lockFile(self):
        path = lockPath()
        if self._fd is None or self._path != path:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
            info = os.fstat(fd)
            if info.st_uid != os.getuid() or not stat.S_ISREG(info.st_mode):
                os.close(fd)
                raise NoFreePort(f"{path} is not a file of this user's")
            self._fd, self._path, self.taken = fd, path, {}
        return self._fd

    def expire(self, now):
        """
        Let go of the ports taken more than L{RESERVED_FOR} seconds ago.
        """
        for port, when in list(self.taken.items()):
            if now - when > RESERVED_FOR:
                self.release(port)

    def take(self, port, now):
        """
        Reserve C{port}: C{False} if this or another process has it.
        """
        fd = self._lockFile()
        if port in self.taken:
            return False
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port, os.SEEK_SET)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise
        self.taken[port] = now
        return True

    def release(self, port):
        if self.taken.pop(port, None) is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, port, os.SEEK_SET)

    def close(self):
        """
        Let go of every port (closing the lock file drops the locks).
        """
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._path, self.taken = None, None, {}


_reservations = _Reservations()


def _now():
    return time.monotonic()


def _bindable(port):
    """
    Whether C{port} can be listened on now; L{None} if binding is not
    allowed at all (C{EACCES}).
    """
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return False
        if e.errno == errno.EACCES:
            return None
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
    now = _now()
    _reservations.expire(now)
    size = stop - start
    offset = random.randrange(size)
    found = []
    refused = 0
    try:
        for step in range(size):
            port = start + (offset + step) % size
            if not _reservations.take(port, now):
                continue
            usable = _bindable(port)
            if usable:
                found.append(port)
                if len(found) == count:
                    return found
                continue
            _reservations.release(port)
            if usable is None:
                refused += 1
    except BaseException:
        for port in found:
            _reservations.release(port)
        raise
    for port in found:
        _reservations.release(port)
    why = f" ({refused} refused to bind: EACCES)" if refused else ""
    raise NoFreePort(f"fewer than {count} free ports in {start}-{stop - 1}{why}")


def freePort():
    """
    One port, as L{freePorts}.
    """
    return freePorts(1)[0]
