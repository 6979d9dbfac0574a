"""
Connections to members: a pool per member that keeps connections open
between requests, limits how many there are and queues requests beyond
the limit.  The connections themselves (our own HTTP/1.1 client
protocol) are L{playbalancer.http.memberconnection}'s.
"""

from __future__ import annotations

import socket
from collections import deque

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from playbalancer.http.memberconnection import (
    MAX_INTERIM_RESPONSES,
    MAX_RESPONSE_HEAD,
    ConnectionFactory,
    HandshakeTimeout,
    MemberConnection,
)

PEEK_AFTER = 0.05
"""
Seconds a member connection must have been idle before the pool peeks at
it (L{closedByPeer}) on reuse for a request that may be sent again.
Under load every connection is reused sooner, and the peek would cost a
system call per request; a close at the member's keep-alive timeout
(seconds) is still caught, and a close in that short moment costs such a
request a second attempt on another member.  A request that may not be
sent again always gets a connection peeked at.
"""


class QueueFull(Exception):
    """
    The member is at its connection limit and its wait queue is full (or
    the wait expired).
    """


def closedByPeer(connection):
    """
    Whether an idle connection was closed (or reset, or spoken on) by the
    member while it sat in the pool, though the reactor has not noticed
    yet: a peek at its socket, without reading.
    """
    transport = connection.transport
    try:
        handle = transport.getHandle()
        if not isinstance(handle, socket.socket):
            # Under TLS, the socket is the TCP transport's: any byte there
            # while idle is a close_notify (or worse), as OpenSSL holds
            # nothing unread.
            handle = transport.transport.getHandle()
    except AttributeError:
        return False
    if not isinstance(handle, socket.socket):
        return False
    try:
        handle.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False  # nothing to read: alive and idle, as it should be
    except OSError:
        return True
    return True  # EOF, or bytes nobody asked for


class MemberPool:
    """
    The connections to one member.

    @param endpoint: the member's client endpoint.
    @param sweeper: a L{playbalancer.sweeper.Sweeper} for timeouts.
    @param maxIdle: idle connections kept open.
    @param idleTimeout: seconds an idle connection is kept.
    @param maxConnections: the most connections open at once (0: no
        limit); requests beyond it wait in a queue.
    @param queueLimit: the most requests waiting; beyond it L{QueueFull}.
    @param queueTimeout: seconds a request may wait in the queue.
    @param tls: whether the endpoint speaks TLS: a new connection is used
        once its handshake is done, which may take C{handshakeTimeout}
        seconds.
    """

    def __init__(
        self,
        endpoint,
        sweeper,
        maxIdle=256,
        idleTimeout=30.0,
        maxConnections=0,
        queueLimit=128,
        queueTimeout=10.0,
        tls=False,
        handshakeTimeout=5.0,
    ):
        self.endpoint = endpoint
        self.sweeper = sweeper
        self.maxIdle = maxIdle
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.queueLimit = queueLimit
        self.queueTimeout = queueTimeout
        self.tls = tls
        self.handshakeTimeout = handshakeTimeout
        self.idle = []
        self.open = 0
        #: Once retired (see L{retire}), a finished connection is closed.
        self.retired = False
        self._queue = deque()
        self._factory = ConnectionFactory(self)
        self._all = set()

    def idleConnection(self, alwaysPeek=False):
        """
        An idle connection that is still open, taken from the pool, or
        L{None}: the fast path, with no L{Deferred}.

        One idle less than L{PEEK_AFTER} is handed out unchecked, unless
        C{alwaysPeek} (for a request that could not be sent again were
        the connection found closed, and for a waiter handed a connection
        in the turn its last response ended).
        """
        idle = self.idle
        if not idle:
            return None
        now = self.sweeper.clock.seconds()
        while idle:
            connection = idle.pop()
            # (An age below 0: the wall clock stepped back; peek.)
            age = now - connection.releasedAt
            if (alwaysPeek or not 0 <= age < PEEK_AFTER) and closedByPeer(connection):
                # Its slot is free; the caller takes it (no _next here).
                self._forget(connection)
                connection.transport.abortConnection()
                continue
            connection.deadline = None
            return connection
        return None

    def acquire(self, alwaysPeek=False):
        """
        A connection for one request: an idle one, a new one, or (at the
        limit) the next one released.

        @param alwaysPeek: as for L{idleConnection}.
        @return: a cancellable L{Deferred} firing with a L{MemberConnection}
            and a flag saying whether it was reused.
        """
        connection = self.idleConnection(alwaysPeek)
        if connection is not None:
            return _succeed((connection, True))
        if self.maxConnections and self.open >= self.maxConnections:
            return self._wait()
        return self._connect()

    def _connect(self):
        self.open += 1
        d = self.endpoint.connect(self._factory)
        if self.tls:
            d.addCallback(MemberConnection.secured)

        def connected(connection):
            self._all.add(connection)
            return (connection, False)

        def failed(reason):
            self.open -= 1
            self._next()
            return reason

        return d.addCallbacks(connected, failed)

    def _wait(self):
        if len(self._queue) >= self.queueLimit:
            return _fail(QueueFull("the member's wait queue is full"))
        waiter = _Waiter(self)
        self._queue.append(waiter)
        return waiter.deferred

    def _next(self):
        """
        A connection slot came free: hand it to the first waiter.
        """
        while self._queue:
            waiter = self._queue.popleft()
            if waiter.deferred.called:
                continue
            self.sweeper.unwatch(waiter)
            # Peeked whatever its age (it may have been released in this
            # very turn, before the reactor could see a close or bytes
            # nobody asked for): such a member does not get this request.
            connection = self.idleConnection(alwaysPeek=True)
            if connection is not None:
                waiter.deferred.callback((connection, True))
            else:
                self._connect().chainDeferred(waiter.deferred)
            return

    def release(self, connection):
        """
        A connection finished its request and may carry another.
        """
        connection.releasedAt = self.sweeper.clock.seconds()
        if self._queue:
            self.idle.append(connection)
            self._next()
            return
        if self.retired or len(self.idle) >= self.maxIdle:
            connection.abandon()
            return
        connection.deadline = self.sweeper.now + self.idleTimeout
        self.idle.append(connection)

    def discard(self, connection):
        """
        A connection is closing: forget it, and hand its slot on.
        """
        if self._forget(connection):
            self._next()

    def _forget(self, connection):
        """
        Forget a connection and free its slot; whether it was known.
        """
        if connection not in self._all:
            return False
        self._all.discard(connection)
        self.open -= 1
        if connection in self.idle:
            self.idle.remove(connection)
        return True

    def retire(self):
        """
        No longer keep connections: close the idle ones now and the others
        once their requests are done.  Requests waiting for a connection
        still get one.
        """
        self.retired = True
        for connection in list(self.idle):
            connection.abandon()

    def close(self):
        """
        Close the idle connections and fail the waiters.
        """
        for connection in list(self.idle):
            connection.abandon()
        while self._queue:
            waiter = self._queue.popleft()
            self.sweeper.unwatch(waiter)
            if not waiter.deferred.called:
                waiter.deferred.errback(QueueFull("the balancer is stopping"))


class _Waiter:
    """
    A request waiting for a connection slot.
    """

    def __init__(self, pool):
        self.pool = pool
        self.deferred = Deferred(self._cancel)
        self.deadline = pool.sweeper.now + pool.queueTimeout
        pool.sweeper.watch(self)

    def _cancel(self, d):
        self.pool.sweeper.unwatch(self)
        try:
            self.pool._queue.remove(self)
        except ValueError:
            pass

    def expired(self):
        self.deadline = None
        self.pool.sweeper.unwatch(self)
        try:
            self.pool._queue.remove(self)
        except ValueError:
            pass
        if not self.deferred.called:
            self.deferred.errback(QueueFull("waited too long for a connection to the member"))


def _succeed(result):
    d = Deferred()
    d.callback(result)
    return d


def _fail(error):
    d = Deferred()
    d.errback(Failure(error))
    return d


__all__ = [
    "MAX_INTERIM_RESPONSES",
    "MAX_RESPONSE_HEAD",
    "MemberPool",
    "MemberConnection",
    "QueueFull",
    "HandshakeTimeout",
    "closedByPeer",
    "CancelledError",
]


class MemberPools:
    """
    One L{MemberPool} per member address, made on first use.

    @param endpointFor: gives a member's client endpoint (see
        L{playbalancer.endpoints.MemberEndpoints.forMember}).
    @param settings: keyword arguments for every L{MemberPool}.
    """

    def __init__(self, endpointFor, sweeper, **settings):
        self._endpointFor = endpointFor
        self.sweeper = sweeper
        self._settings = settings
        self._pools = {}

    def forMember(self, member):
        key = member.poolKey
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = MemberPool(
                self._endpointFor(member),
                self.sweeper,
                tls=member.scheme == "https",
                **self._settings,
            )
        return pool

    def retireMember(self, member, others=()):
        """
        C{member} is gone: retire its pool (see L{MemberPool.retire}),
        unless one of C{others} has the same address.
        """
        key = member.poolKey
        if key in self._pools and all(other.poolKey != key for other in others):
            self._pools.pop(key).retire()

    def retire(self):
        """
        Retire every pool (see L{MemberPool.retire}): new pools replace
        these.
        """
        for pool in self._pools.values():
            pool.retire()

    def close(self):
        """
        Close every idle connection (when the balancer stops).
        """
        for pool in self._pools.values():
            pool.close()
