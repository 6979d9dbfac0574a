"""
When the pool peeks at an idle member connection before reusing it
(L{playbalancer.http.upstream.MemberPool.idleConnection}): only once it
has been idle L{PEEK_AFTER} seconds.  Reused sooner, as under load, the
peek (a system call per request) finds nothing the reactor would not
have seen.
"""

from __future__ import annotations

import socket

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.http.upstream import PEEK_AFTER, MemberPool
from playbalancer.sweeper import Sweeper


class _Transport:
    def __init__(self, sock):
        self.sock = sock
        self.peeks = 0
        self.aborted = False

    def getHandle(self):
        self.peeks += 1
        return self.sock

    def abortConnection(self):
        self.aborted = True


class _Connection:
    deadline = None
    releasedAt = 0.0

    def __init__(self, sock):
        self.transport = _Transport(sock)


class PeekTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.pool = MemberPool(None, Sweeper(self.clock))

    def pair(self, close=False):
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        self.addCleanup(ours.close)
        if close:
            theirs.close()
        else:
            self.addCleanup(theirs.close)
        connection = _Connection(ours)
        self.pool.release(connection)
        return connection

    def test_soonReusedNotPeeked(self):
        """
        A connection reused less than L{PEEK_AFTER} after it was released
        is handed out without a peek.
        """
        connection = self.pair()
        self.clock.advance(PEEK_AFTER / 2)
        self.assertIs(self.pool.idleConnection(), connection)
        self.assertEqual(connection.transport.peeks, 0)

    def test_idleLongerPeeked(self):
        """
        Idle for L{PEEK_AFTER} or longer, it is peeked at, and handed out
        while quiet.
        """
        connection = self.pair()
        self.clock.advance(PEEK_AFTER)
        self.assertIs(self.pool.idleConnection(), connection)
        self.assertEqual(connection.transport.peeks, 1)

    def test_idleClosedByPeerDropped(self):
        """
        Idle long enough and closed by the member: dropped, not handed out.
        """
        connection = self.pair(close=True)
        self.clock.advance(PEEK_AFTER)
        self.assertIsNone(self.pool.idleConnection())
        self.assertTrue(connection.transport.aborted)

    def test_releaseTimeIsTheLatest(self):
        """
        The idle time counts from the latest release, not the first.
        """
        connection = self.pair()
        self.clock.advance(PEEK_AFTER * 10)
        self.assertIs(self.pool.idleConnection(), connection)
        self.pool.release(connection)
        self.clock.advance(PEEK_AFTER / 2)
        self.assertIs(self.pool.idleConnection(), connection)
        self.assertEqual(connection.transport.peeks, 1)
