"""
One try of a request on one member: a connection from the member's pool,
the request sent on it, the response read from it, and the outcome
reported to the balancer once, when the try ends.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError

from playbalancer import outcome
from playbalancer.failures import describe
from playbalancer.flow import holdIfFull, keepsUp, pauses, stopPausing
from playbalancer.http import retry
from playbalancer.http.upstream import QueueFull
from playbalancer.outcome import Outcome
from playbalancer._net.rawsocket import closeWhenSent

CONNECTING = "connecting"
SENDING = "sending"
WAITING = "waiting"
RECEIVING = "receiving"
TUNNEL = "tunnel"
ENDED = "ended"


class Attempt:
    """
    One try of an L{playbalancer.http.exchange.Exchange}'s request on one
    member.  It owns the member connection while it runs: the exchange
    reaches the member only through it.

    Its C{state} is one of:
      - C{connecting}: waiting for a connection from the member's pool;
      - C{sending}: the request head went out, the body is going;
      - C{waiting}: the whole request went out, no response yet;
      - C{receiving}: the final response head came, its body is coming;
      - C{tunnel}: the member switched protocols (a C{101});
      - C{ended}: over, and reported to the balancer (L{end}), once.

    The member connection (L{playbalancer.http.upstream.MemberConnection})
    calls its C{member*} methods; the attempt passes on to the exchange
    what matters to the request, and body bytes straight to the client.
    """

    def __init__(self, exchange, member):
        self.exchange = exchange
        self.client = exchange.client
        self.member = member
        self.state = CONNECTING
        self.connection = None
        self.pending = None
        self.reused = False
        self.started = exchange.proxy.clock.seconds()
        self.firstByte = None
        self.status = 0
        self.bytesIn = 0
        self._uploadPauser = None
        self._responsePause = None
        exchange.proxy.balancer.begin(member)

    def __repr__(self):
        return f"<Attempt on {self.member.name}: {self.state}>"

    # Connecting and sending

    def connect(self, pool):
        """
        Take an idle connection from C{pool}, or wait for one.
        """
        # A request that could not go on to another member if this
        # connection turned out closed gets one peeked at, however fresh.
        alwaysPeek = not retry.afterLoss(self.exchange.retry)
        idle = pool.idleConnection(alwaysPeek)
        if idle is not None:
            self._connected((idle, True))
            return
        d = self.pending = pool.acquire(alwaysPeek)
        d.addCallbacks(self._connected, self._notConnected)
        d.addErrback(self.exchange.failed)

    def _connected(self, result):
        connection, reused = result
        self.pending = None
        if self.state == ENDED:
            connection.pool.release(connection)
            return
        self.connection = connection
        self.reused = reused
        exchange = self.exchange
        request = exchange.request
        hasBody = request.length != 0
        connection.startRequest(self, exchange.memberHead(self.member), request.method, hasBody)
        if not hasBody:
            self.state = WAITING
            connection.waitFor(exchange.proxy.timeout)
            return
        self.state = SENDING
        body = exchange.body
        for framed in body.takePending():
            connection.writeBody(framed)
            body.wasSent(framed)
        if body.complete:
            self.endBody()
            return
        self._uploadPauser = pauses(connection.transport, self.client)
        exchange.sendingBody()

    def _notConnected(self, failure):
        self.pending = None
        if self.state == ENDED or failure.check(CancelledError):
            return
        if failure.check(QueueFull):
            self.exchange.attemptFailed(self, outcome.QUEUE_FULL, str(failure.value))
        else:
            self.exchange.attemptFailed(self, outcome.CONNECT, describe(failure))

    def sendBody(self, framed):
        """
        Send a piece of the request body (framed for the member).
        """
        connection = self.connection
        connection.writeBody(framed)
        holdIfFull(connection.transport, self.exchange.proxy.bufferSize)
        self.exchange.body.wasSent(framed)

    def endBody(self):
        """
        The whole request body went out.
        """
        connection = self.connection
        connection.endBody()
        self.stopUpload()
        if self.state == SENDING:
            self.state = WAITING
            connection.waitFor(self.exchange.proxy.timeout)

    def stopUpload(self):
        """
        No more of the request body goes to the member: it no longer
        pauses the client.
        """
        if self._uploadPauser is not None:
            stopPausing(self.connection.transport, self._uploadPauser)
            self._uploadPauser = None

    def takesBody(self):
        """
        Whether body pieces can be sent now (connected, no answer yet).
        """
        return self.state == SENDING

    def keepsUp(self):
        """
        Whether the member takes the request body as fast as it comes.
        """
        connection = self.connection
        return connection is None or keepsUp(connection.transport)

    # What the member connection tells

    def clientKeepsUp(self):
        return self.client.keepsUp()

    def memberInterim(self, head):
        self.exchange.attemptInterim(head)

    def memberResponse(self, head):
        self.status = head.status
        self.firstByte = self.exchange.proxy.clock.seconds() - self.started
        self.exchange.attemptAnswered(self, head)

    def receiving(self, paced):
        """
        The exchange passes the response on: read its body, paced by the
        client if C{paced}.
        """
        self.state = RECEIVING
        if paced:
            self._responsePause = self.client.pauseWhileFull(self.connection.transport)
        self.connection.waitFor(self.exchange.proxy.timeout)

    def memberData(self, data):
        """
        Body bytes (or, in a tunnel, any bytes) from the member.
        """
        self.bytesIn += len(data)
        client = self.client
        client.writeBody(data)
        if self.state == RECEIVING:
            self.connection.waitFor(self.exchange.proxy.timeout)
        else:
            client.tunnelActive()

    def memberReadEnd(self):
        self.client.readEnd()

    def memberDone(self):
        """
        The member's response ended completely.
        """
        if self._responsePause is not None:
            self.client.stopPausing(self._responsePause)
            self._responsePause = None
        self.connection = None
        took = self.exchange.proxy.clock.seconds() - self.started
        self.end(outcome.ANSWERED, total=took)
        self.exchange.attemptDone(self)

    def memberLost(self, reason, answered):
        self.connection = None
        self.exchange.attemptFailed(self, outcome.RESET, describe(reason), answeredPart=answered)

    def memberRefused(self, reason):
        """
        The member's TLS refused the new connection after our side's
        handshake was done: a connect failure (the request never reached
        it), retried as one.
        """
        self.connection = None
        self.exchange.attemptFailed(self, outcome.CONNECT, describe(reason))

    def memberBroken(self, error):
        self.connection = None
        self.exchange.attemptFailed(self, outcome.BAD_RESPONSE, error.reason)

    def memberTimedOut(self):
        self.connection = None
        self.exchange.attemptFailed(self, outcome.TIMEOUT, "no answer in time")

    # Tunnels

    def memberSwitched(self, leftover):
        """
        The member switched protocols: bytes go both ways as they are.
        """
        self.state = TUNNEL
        connection = self.connection
        connection.deadline = None
        self._uploadPauser = pauses(connection.transport, self.client)
        self.exchange.tunnelStarted()
        if leftover:
            self.memberData(leftover)

    def tunnelData(self, data):
        """
        Bytes from the client, for the member, in a tunnel.
        """
        if self.connection is not None:
            self.exchange.body.received += len(data)
            self.connection.transport.write(data)

    def memberTunnelClosed(self):
        self.connection = None
        self.end(outcome.ANSWERED)
        self.exchange.tunnelClosed()

    # Ending

    def abandon(self):
        """
        Drop the member connection (closing it) and stop waiting for one;
        the attempt is still to be ended (L{end}).
        """
        pending, self.pending = self.pending, None
        connection, self.connection = self.connection, None
        if connection is not None:
            if self.state == TUNNEL:
                closeWhenSent(connection.transport)
            else:
                connection.abandon()
        if pending is not None:
            pending.cancel()

    def cancel(self):
        """
        The request no longer needs this attempt (its client left or
        stalled): drop the connection, and end without blaming the member.
        """
        if self.state != ENDED:
            self.abandon()
            self.end(outcome.CANCELLED)

    def end(self, kind, reason=None, total=None, retried=False, answeredPart=False):
        """
        Report the attempt's outcome to the balancer, once.
        """
        if self.state == ENDED:
            return
        self.state = ENDED
        self.exchange.proxy.balancer.attemptEnded(
            self.member,
            Outcome(
                kind,
                self.status,
                reason,
                self.firstByte,
                total,
                self.bytesIn,
                self.exchange.body.received,
                retried,
                answeredPart,
                self.reused,
            ),
        )
