"""
Listening sockets shared with another process (a worker's, or the one an
upgrade hands over) taken into this one without making them blocking.

PyPy's C{socket.socket(fileno=...)} puts the descriptor in blocking mode
unless a default timeout says otherwise; the mode belongs to the open
file, shared by every process holding it, and a listening socket in
blocking mode stops a reactor in C{accept} (Twisted accepts until there is
nothing left): an upgrade's old process hung there.  CPython leaves the
mode alone.  Here sockets are made with a default timeout of 0:
non-blocking on both.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager


@contextmanager
def nonBlockingSockets():
    """
    Sockets made (from descriptors too) within are non-blocking.
    """
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.0)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def familyOf(fd):
    """
    The address family of the socket C{fd}.
    """
    with nonBlockingSockets():
        with socket.socket(fileno=os.dup(fd)) as probe:
            return probe.family


def socketOf(fd):
    """
    A socket object that owns descriptor C{fd} (non-blocking).
    """
    with nonBlockingSockets():
        return socket.socket(fileno=fd)


def adoptListening(reactor, fd, factory, family=None):
    """
    Listen with C{factory} on the listening socket C{fd} (which stays
    open: close it once this returns), non-blocking.

    @return: the listening port.
    """
    if family is None:
        family = familyOf(fd)
    with nonBlockingSockets():
        if family == socket.AF_UNIX:
            from playbalancer._net.internals import adoptUnixPort

            return adoptUnixPort(reactor, fd, factory)
        return reactor.adoptStreamPort(fd, family, factory)
