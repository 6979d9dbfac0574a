"""
One HTTP/1.1 connection to a member: our own client protocol, strict
about what members answer.  The pools that keep these connections are in
L{playbalancer.http.upstream}.
"""

from __future__ import annotations

from OpenSSL import SSL

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

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


class HandshakeTimeout(Exception):
    """
    A member took too long over its TLS handshake.
    """

    def __str__(self):
        return "TLS handshake timeout"


@implementer(IHandshakeListener)
class MemberConnection(Protocol):
    """
    One HTTP/1.1 connection to a member, carrying one request at a time;
    over TLS, handed out once the handshake (and the certificate check)
    is done: L{handshake} fires then.

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
        #: When the pool last took it back (its clock's seconds); a
        #: connection never released counts as idle since forever.
        self.releasedAt = 0.0
        self.state = _IDLE
        self.requests = 0
        self._buffer = b""
        self._body = None
        self._reusable = True
        self._sentAll = True
        self._method = b"GET"
        self._interim = 0
        #: While a TLS handshake is under way, a L{Deferred} that fires with
        #: this connection when it is done (or fails with why not).
        self.handshake = None

    def connectionMade(self):
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        pool = self.pool
        if pool.tls:
            self.handshake = Deferred(self._cancelHandshake)
            self.deadline = pool.sweeper.now + pool.handshakeTimeout
        pool.sweeper.watch(self)

    def secured(self):
        """
        A L{Deferred} that fires with this connection once it may carry
        requests (at once without TLS).
        """
        return self.handshake if self.handshake is not None else _succeed(self)

    def handshakeCompleted(self):
        d, self.handshake = self.handshake, None
        if d is not None:
            self.deadline = None
            d.callback(self)

    def _cancelHandshake(self, d):
        self.handshake = None
        self.transport.abortConnection()

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
        handshake, self.handshake = self.handshake, None
        if handshake is not None:
            handshake.errback(Failure(HandshakeTimeout()))
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
        handshake, self.handshake = self.handshake, None
        if handshake is not None:
            handshake.errback(reason)
        if attempt is None:
            return
        if state == _UNTIL_CLOSE:
            attempt.memberDone()
        elif state == _TUNNEL:
            attempt.memberTunnelClosed()
        else:
            answered = state == _BODY or bool(self._buffer)
            if not answered and self.requests == 1 and reason.check(SSL.Error):
                # A TLS alert before any answer on a new connection (a
                # TLS 1.3 member refuses our client certificate only
                # after our side finished the handshake): the member's
                # TLS refused us, the request never reached it.
                attempt.memberRefused(reason)
            else:
                attempt.memberLost(reason, answered)


class ConnectionFactory(Factory):
    """
    Makes the L{MemberConnection}s of one pool.
    """

    noisy = False

    def __init__(self, pool):
        self.pool = pool

    def buildProtocol(self, addr):
        return MemberConnection(self.pool)


def _succeed(result):
    d = Deferred()
    d.callback(result)
    return d
