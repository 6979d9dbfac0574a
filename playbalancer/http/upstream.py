"""
Connections to members: our own HTTP/1.1 client protocol, strict about
what members answer, and a pool per member that keeps connections open
between requests, limits how many there are and queues requests beyond
the limit.
"""

from __future__ import annotations

import socket
from collections import deque

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from playbalancer.http.chunked import ChunkedDecoder, LengthCounter
from playbalancer._net.readsize import followReads, startSmall
from playbalancer._net.sendnow import sendNow
from playbalancer.http.wire import HTTPError, findBareLF, parseResponseHead

#: The largest response head a member may send.
MAX_RESPONSE_HEAD = 65536

#: Interim (1xx) responses a member may send before its final one; more
#: is a broken member (and would nest our parsing without end).
MAX_INTERIM_RESPONSES = 32

_HEAD, _BODY, _UNTIL_CLOSE, _IDLE, _TUNNEL, _DEAD = range(6)


class QueueFull(Exception):
    """
    The member is at its connection limit and its wait queue is full (or
    the wait expired).
    """


class MemberConnection(Protocol):
    """
    One HTTP/1.1 connection to a member, carrying one request at a time.

    The L{playbalancer.http.attempt.Attempt} it serves gets: C{memberInterim(status)},
    C{memberResponse(head)}, C{memberData(data)}, C{memberReadEnd()} (the
    bytes read with the response head were passed on), C{memberDone()},
    C{memberSwitched(leftover)} (after a 101), C{memberBroken(error)},
    C{memberTimedOut()}, C{memberTunnelClosed()} and
    C{memberLost(reason, answered)} (answered: some of the response came).
    """

    def __init__(self, pool):
        self.pool = pool
        self.attempt = None
        self.deadline = None
        self.state = _IDLE
        self.requests = 0
        self._buffer = b""
        self._body = None
        self._reusable = True
        self._sentAll = True
        self._method = b"GET"
        self._interim = 0

    def connectionMade(self):
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        self.pool.sweeper.watch(self)

    # Sending

    def startRequest(self, attempt, head, method, withBody):
        """
        Send a request head; the body (if C{withBody}) follows through
        L{writeBody} and L{endBody}.
        """
        self.attempt = attempt
        self.requests += 1
        self._method = method
        self.state = _HEAD
        self._sentAll = not withBody
        self.deadline = None
        self._interim = 0
        startSmall(self.transport)
        sendNow(self.transport, head)

    def _clientKeepsUp(self):
        attempt = self.attempt
        return attempt is None or attempt.clientKeepsUp()

    def writeBody(self, data):
        self.transport.write(data)

    def endBody(self, data=b""):
        self._sentAll = True
        if data:
            self.transport.write(data)

    def waitFor(self, seconds):
        """
        Give the member C{seconds} (from now) for its next bytes.
        """
        self.deadline = self.pool.sweeper.now + seconds

    # Receiving

    def dataReceived(self, data):
        followReads(self.transport, len(data), self._clientKeepsUp)
        state = self.state
        if state == _BODY:
            self._feed(data)
            return
        if state == _TUNNEL:
            self.attempt.memberData(data)
            return
        if state == _UNTIL_CLOSE:
            self.attempt.memberData(data)
            return
        if state == _IDLE or self.attempt is None:
            # Bytes nobody asked for: this connection is out of step.
            self._give_up()
            return
        if state == _HEAD:
            self._headBytes(data)

    def _headBytes(self, data):
        buffer = self._buffer + data if self._buffer else data
        end = buffer.find(b"\r\n\r\n")
        if end == -1:
            if len(buffer) > MAX_RESPONSE_HEAD:
                self._malformed(HTTPError(502, "the response head is too large"))
            elif findBareLF(buffer):
                self._malformed(HTTPError(502, "a bare LF line ending"))
            else:
                self._buffer = buffer
            return
        self._buffer = b""
        try:
            if end > MAX_RESPONSE_HEAD:
                raise HTTPError(502, "the response head is too large")
            head = parseResponseHead(buffer[:end], self._method)
        except HTTPError as e:
            self._malformed(e)
            return
        rest = buffer[end + 4 :]
        if head.status < 200:
            if head.status == 101:
                self.state = _TUNNEL
                self._reusable = False
                self.attempt.memberResponse(head)
                if self.state == _DEAD or self.attempt is None:
                    return  # refused: no tunnel without an Upgrade request
                self.attempt.memberSwitched(rest)
                return
            self._interim += 1
            if self._interim > MAX_INTERIM_RESPONSES:
                self._malformed(HTTPError(502, "too many interim responses"))
                return
            self.attempt.memberInterim(head)
            if rest and self.attempt is not None:
                self._headBytes(rest)
            return
        if not head.keepAlive:
            self._reusable = False
        attempt = self.attempt
        attempt.memberResponse(head)
        if self.attempt is not attempt or self.state == _DEAD:
            return  # the attempt gave up on this response
        length = head.length
        if length == 0:
            if rest or head.announced:
                # A body where none may be (or a length announced for one):
                # never reuse this connection.
                self._reusable = False
            self._finished()
        else:
            if length == -1:
                self.state = _UNTIL_CLOSE
                if rest:
                    attempt.memberData(rest)
            else:
                onData = attempt.memberData
                self._body = (
                    ChunkedDecoder(onData, 502) if length is None else LengthCounter(onData, length)
                )
                self.state = _BODY
                if rest:
                    self._feed(rest)
            if self.attempt is attempt:
                attempt.memberReadEnd()

    def _feed(self, data):
        try:
            left = self._body.feed(data)
        except HTTPError as e:
            self._malformed(e)
            return
        if left is not None:
            if left:
                self._reusable = False
            self._finished()

    def _finished(self):
        attempt = self.attempt
        self._body = None
        self.attempt = None
        self.deadline = None
        self.state = _IDLE
        reusable = self._reusable and self._sentAll
        attempt.memberDone()
        if reusable and self.transport is not None:
            self.pool.release(self)
        else:
            self._give_up()

    def _malformed(self, error):
        attempt = self.attempt
        self._give_up()
        if attempt is not None:
            attempt.memberBroken(error)

    def _give_up(self):
        self.state = _DEAD
        self.attempt = None
        self.pool.discard(self)
        if self.transport is not None:
            self.transport.abortConnection()

    def abandon(self):
        """
        The attempt no longer wants this response: close the connection.
        """
        self.attempt = None
        self._give_up()

    def expired(self):
        """
        The member was silent for too long.
        """
        self.deadline = None
        attempt = self.attempt
        if attempt is not None:
            self.attempt = None
            self._give_up()
            attempt.memberTimedOut()
        else:
            self._give_up()

    def connectionLost(self, reason):
        self.pool.sweeper.unwatch(self)
        self.pool.discard(self)
        attempt, self.attempt = self.attempt, None
        state, self.state = self.state, _DEAD
        if attempt is None:
            return
        if state == _UNTIL_CLOSE:
            attempt.memberDone()
        elif state == _TUNNEL:
            attempt.memberTunnelClosed()
        else:
            attempt.memberLost(reason, state == _BODY or bool(self._buffer))


def closedByPeer(connection):
    """
    Whether an idle connection was closed (or reset, or spoken on) by the
    member while it sat in the pool, though the reactor has not noticed
    yet: a peek at its socket, without reading.
    """
    try:
        handle = connection.transport.getHandle()
    except AttributeError:
        return False
    if not isinstance(handle, socket.socket):
        return False  # TLS and the like: no peek
    try:
        handle.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False  # nothing to read: alive and idle, as it should be
    except OSError:
        return True
    return True  # EOF, or bytes nobody asked for


class _ConnectionFactory(Factory):
    noisy = False

    def __init__(self, pool):
        self.pool = pool

    def buildProtocol(self, addr):
        return MemberConnection(self.pool)


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
    ):
        self.endpoint = endpoint
        self.sweeper = sweeper
        self.maxIdle = maxIdle
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.queueLimit = queueLimit
        self.queueTimeout = queueTimeout
        self.idle = []
        self.open = 0
        #: Once retired (see L{retire}), a finished connection is closed.
        self.retired = False
        self._queue = deque()
        self._factory = _ConnectionFactory(self)
        self._all = set()

    def idleConnection(self):
        """
        An idle connection that is still open, taken from the pool, or
        L{None}: the fast path, with no L{Deferred}.
        """
        idle = self.idle
        while idle:
            connection = idle.pop()
            if closedByPeer(connection):
                # Its slot is free; the caller takes it (no _next here).
                self._forget(connection)
                connection.transport.abortConnection()
                continue
            connection.deadline = None
            return connection
        return None

    def acquire(self):
        """
        A connection for one request: an idle one, a new one, or (at the
        limit) the next one released.

        @return: a cancellable L{Deferred} firing with a L{MemberConnection}
            and a flag saying whether it was reused.
        """
        connection = self.idleConnection()
        if connection is not None:
            return _succeed((connection, True))
        if self.maxConnections and self.open >= self.maxConnections:
            return self._wait()
        return self._connect()

    def _connect(self):
        self.open += 1
        d = self.endpoint.connect(self._factory)

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
            # Peeked like any reuse: a member that closed it, or sent
            # bytes nobody asked for, does not get this request on it.
            connection = self.idleConnection()
            if connection is not None:
                waiter.deferred.callback((connection, True))
            else:
                self._connect().chainDeferred(waiter.deferred)
            return

    def release(self, connection):
        """
        A connection finished its request and may carry another.
        """
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


__all__ = ["MemberPool", "MemberConnection", "QueueFull", "closedByPeer", "CancelledError"]


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
                self._endpointFor(member), self.sweeper, **self._settings
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
