"""
When the pool peeks at an idle member connection before reusing it
(L{playbalancer.http.upstream.MemberPool.idleConnection}): only once it
has been idle L{PEEK_AFTER} seconds.  Reused sooner, as under load, the
peek (a system call per request) finds nothing the reactor would not
have seen.
"""

from __future__ import annotations

import socket

from twisted.internet.defer import Deferred
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


class _Endpoint:
    """
    Connections that never come (a new one is not what these tests see).
    """

    def __init__(self):
        self.attempts = 0

    def connect(self, factory):
        self.attempts += 1
        return Deferred()


class PeekTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.endpoint = _Endpoint()
        self.pool = MemberPool(self.endpoint, Sweeper(self.clock))

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
        Idle longer than L{PEEK_AFTER}, it is peeked at, and handed out
        while quiet.
        """
        connection = self.pair()
        self.clock.advance(PEEK_AFTER * 1.5)
        self.assertIs(self.pool.idleConnection(), connection)
        self.assertEqual(connection.transport.peeks, 1)

    def test_idleClosedByPeerDropped(self):
        """
        Idle long enough and closed by the member: dropped, not handed out.
        """
        connection = self.pair(close=True)
        self.clock.advance(PEEK_AFTER * 1.5)
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

    def test_alwaysPeekPeeksSoon(self):
        """
        Asked to (for a request that could not be sent again), the pool
        peeks even at a connection released a moment ago.
        """
        connection = self.pair()
        self.assertIs(self.pool.idleConnection(alwaysPeek=True), connection)
        self.assertEqual(connection.transport.peeks, 1)

    def test_alwaysPeekDropsClosed(self):
        """
        ... and does not hand out one the member closed at once.
        """
        connection = self.pair(close=True)
        self.assertIsNone(self.pool.idleConnection(alwaysPeek=True))
        self.assertTrue(connection.transport.aborted)

    def test_clockBackwardsPeeks(self):
        """
        A connection released "in the future" (the wall clock stepped back)
        is peeked at, not taken as just released.
        """
        connection = self.pair(close=True)
        self.clock.advance(-3600)
        self.assertIsNone(self.pool.idleConnection())
        self.assertTrue(connection.transport.aborted)

    def test_queuedWaiterGetsAPeekedConnection(self):
        """
        A connection released while requests wait for one (at the
        connection limit) goes to the first of them peeked at, in the same
        turn as its response ended: a member that closed it at once does
        not get the waiter's request on it.
        """
        self.pool.maxConnections = 1
        self.pool.open = 1
        waiter = self.pool.acquire()
        got = []
        waiter.addBoth(got.append)
        self.pool.sweeper.clock.advance(0)
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        self.addCleanup(ours.close)
        theirs.close()
        connection = _Connection(ours)
        self.pool.release(connection)
        self.assertEqual(connection.transport.peeks, 1)
        self.assertTrue(connection.transport.aborted)
        # The waiter waits on for a new connection instead.
        self.assertEqual(got, [])
        self.assertEqual(self.endpoint.attempts, 1)


class _Pool:
    def __init__(self):
        self.asked = []

    def idleConnection(self, alwaysPeek=False):
        self.asked.append(("idle", alwaysPeek))
        return None

    def acquire(self, alwaysPeek=False):
        self.asked.append(("acquire", alwaysPeek))
        return Deferred()


class AttemptAsksTests(SynchronousTestCase):
    """
    L{Attempt.connect} asks for a peeked connection exactly when the
    request could not go on to another member were it found closed.
    """

    def asked(self, method, **state):
        from types import SimpleNamespace

        from playbalancer.http.attempt import Attempt
        from playbalancer.http.retry import RetryState

        retryState = RetryState(method)
        for name, value in state.items():
            setattr(retryState, name, value)
        balancer = SimpleNamespace(begin=lambda member: None)
        proxy = SimpleNamespace(clock=Clock(), balancer=balancer)
        exchange = SimpleNamespace(client=None, proxy=proxy, retry=retryState, failed=None)
        pool = _Pool()
        Attempt(exchange, object()).connect(pool)
        return pool.asked

    def test_getNotPeekedWhenFresh(self):
        self.assertEqual(self.asked(b"GET"), [("idle", False), ("acquire", False)])

    def test_postAlwaysPeeked(self):
        self.assertEqual(self.asked(b"POST"), [("idle", True), ("acquire", True)])

    def test_retriedGetAlwaysPeeked(self):
        """
        A GET already sent once could not be sent a third time.
        """
        self.assertEqual(self.asked(b"GET", retried=True), [("idle", True), ("acquire", True)])
