"""
One client request on its way to a member and back: the choice of member,
the attempts (L{playbalancer.http.attempt}) and the retry rules
(L{playbalancer.http.retry}), the headers both ways, and the response
handed to the client side (an L{playbalancer.interfaces.IClientSide}).
"""

from __future__ import annotations

from twisted.logger import Logger

from playbalancer import outcome
from playbalancer.http import retry
from playbalancer.http.attempt import Attempt
from playbalancer.http.interim import CONTINUE_WAIT, MAX_INTERIM, Interim  # noqa: F401
from playbalancer.http.memberrequest import memberRequestHead
from playbalancer.http.proxy import HTTPProxy  # noqa: F401 (its old home)
from playbalancer.http.requestbody import PENDING_LIMIT, REPLAY_LIMIT, RequestBody  # noqa: F401
from playbalancer.http.responsehead import clientHeaders, clientResponse, rewriteLocation
from playbalancer.http.responses import REASONS, plainResponse  # noqa: F401
from playbalancer.http.retry import IDEMPOTENT  # noqa: F401


BUFFERING = "buffering"
ATTEMPTING = "attempting"
RESPONDING = "responding"
TUNNEL = "tunnel"
FINISHED = "finished"
ABANDONED = "abandoned"

_log = Logger()


class Exchange:
    """
    One client request, from its head to the end of its response.

    Its C{state} is one of:
      - C{buffering}: reading a small (or chunked) request body whole
        before a member is chosen;
      - C{attempting}: an attempt on a member is under way (L{attempt});
        nothing but interim responses went to the client yet;
      - C{responding}: the response head went to the client, its body is
        going;
      - C{tunnel}: the member switched protocols; bytes go both ways;
      - C{finished}: the whole response went out (ours or a member's);
      - C{abandoned}: the client left, or the response was cut short.

    The client side calls L{start}, L{bodyData}, L{bodyEnd}, L{clientData}
    (in a tunnel), L{memberKeepsUp}, L{clientGone}, L{clientTimedOut}, and
    L{failed} when starting it raised; the current L{Attempt} calls the
    C{attempt*} and C{tunnel*} methods.

    @param proxy: the L{playbalancer.http.proxy.HTTPProxy} it belongs to.
    @param client: the L{playbalancer.interfaces.IClientSide} it serves.
    @param request: its L{playbalancer.http.wire.RequestHead}.
    """

    def __init__(self, proxy, client, request):
        self.proxy = proxy
        self.client = client
        self.request = request
        self.state = ATTEMPTING
        self.tried = []
        #: The current (or last) L{Attempt}, or L{None} before the first.
        self.attempt = None
        self.body = RequestBody(request.length)
        self.retry = retry.stateOf(request, proxy.balancer, self.body)
        self.connectFailed = False
        self.responseHead = None
        self.keepAlive = True
        #: The request's L{Interim} responses, made when the first is
        #: needed (most requests have none).
        self.interim = None
        self.ownStatus = 0
        self.ownBytes = 0
        self.arrived = proxy.clock.seconds()
        if proxy.trusting and proxy.trusts(request.client):
            request.origin = proxy.originOf(request)

    def __repr__(self):
        return f"<Exchange {self.request.method!r} {self.request.target!r}: {self.state}>"

    # The request

    def start(self):
        """
        Pick a member and send the request, or, for a body of at most
        L{REPLAY_LIMIT} bytes (or a chunked one, until it passes that),
        first read the whole body (as nginx buffers request bodies): a
        client that sends slowly then holds no member connection, a body
        that turns out malformed or too large reaches no member at all,
        and the request can be sent again if a member fails.
        """
        length = self.request.length
        if length is None or 0 < length <= REPLAY_LIMIT:
            self.state = BUFFERING
            if self.request.expectContinue:
                self._interim().sendContinue()
            return
        self._attempt()

    def bodyData(self, data):
        """
        A piece of the request body arrived from the client.
        """
        body = self.body
        self._sendBody(body.frame(data))
        if self.state == BUFFERING and body.pendingBytes > REPLAY_LIMIT:
            # A chunked body longer than we keep: stream the rest.
            self._attempt()

    def bodyEnd(self):
        """
        The whole request body arrived.
        """
        length = self.request.length
        if length and self.body.received != length:
            # A client face ended a body short of its length: never sent
            # on as complete (the member would read the next request on
            # its connection as the rest of this one).
            self.clientGone()
            return
        self.body.complete = True
        if self.request.length is None:
            # The last chunk goes the way of the others, kept for a replay.
            self._sendBody(b"0\r\n\r\n")
        if self.state == BUFFERING:
            self._attempt()
            return
        attempt = self.attempt
        if attempt is not None and attempt.takesBody() and self.responseHead is None:
            attempt.endBody()

    def _sendBody(self, framed):
        if self.responseHead is None:  # (once answered, the member gets no more)
            self.body.offer(framed, self.attempt, self.client)

    def sendingBody(self):
        """
        The attempt is connected and sent what was held: the client may
        send the rest.
        """
        self.client.resumeProducing()
        request = self.request
        if request.expectContinue:
            self._interim().continueSoon()

    def memberKeepsUp(self):
        """
        Whether the member takes the request body as fast as it comes.
        """
        attempt = self.attempt
        return attempt is None or attempt.keepsUp()

    def clientData(self, data):
        """
        Bytes from the client in a tunnel.
        """
        if self.attempt is not None:
            self.attempt.tunnelData(data)

    # Attempts

    def _attempt(self):
        self.state = ATTEMPTING
        proxy = self.proxy
        member = proxy.balancer.pick(self.request, self.tried)
        if member is None:
            self._noMember()
            return
        self.tried.append(member)
        self.body.rewind()
        attempt = self.attempt = Attempt(self, member)
        attempt.connect(proxy.pools.forMember(member))

    def failed(self, failure):
        """
        Our own code raised: log it, and never leave the client hanging.
        """
        _log.failure("error while proxying", failure)
        if self.state in (BUFFERING, ATTEMPTING):
            self._respond(500, "Internal Server Error", keepAlive=False)
        elif self.state != FINISHED and self.state != ABANDONED:
            self._cutShort()

    def _noMember(self):
        if not self.connectFailed and self.tried:
            self._respond(502, "Bad Gateway: no member answered")
            return
        wait = self.proxy.balancer.noUsableMember()
        self._respond(
            503,
            "Service Unavailable: no usable member",
            extra=[(b"Retry-After", b"%d" % wait)],
        )

    def memberHead(self, member):
        """
        The request head for C{member}, as bytes.
        """
        expect = self.request.expectContinue and not self.body.complete
        return memberRequestHead(self.proxy, self.request, member, expect)

    def attemptInterim(self, head):
        """
        An interim (1xx) response before the final one.
        """
        if self.state == ATTEMPTING:
            self._interim().fromMember(head.status, head.reason, clientHeaders(head, self._rewrite))

    def _interim(self):
        interim = self.interim
        if interim is None:
            interim = self.interim = Interim(self.client, self.proxy.clock)
        return interim

    # The response

    def attemptAnswered(self, attempt, head):
        """
        The member's final response head came: pass it on, or try another
        member.
        """
        if self.interim is not None:
            self.interim.stop()
        if self.state != ATTEMPTING:
            attempt.abandon()
            attempt.end(outcome.CANCELLED)
            return
        status = head.status
        if status == 101 and not self.request.upgrade:
            attempt.abandon()
            self.attemptFailed(
                attempt, outcome.BAD_RESPONSE, "101 Switching Protocols without an Upgrade request"
            )
            return
        balancer = self.proxy.balancer
        balancer.memberResponded(attempt.member, status)
        if status in balancer.failOnStatus and retry.afterFailingStatus(
            self.retry, self.body.complete, bool(balancer.candidates(self.tried))
        ):
            self.retry.retried = True
            attempt.abandon()
            attempt.end(outcome.REFUSED, retried=True)
            self._attempt()
            return
        self.responseHead = head
        if self.request.length != 0 and not self.body.complete:
            # An early answer: the rest of the body is not sent on, and the
            # client connection cannot be kept (we would have to read it).
            attempt.stopUpload()
            self.client.resumeProducing()
            self.keepAlive = False
        self._startResponse(head)
        attempt.receiving(head.length != 0 or status == 101)

    def _startResponse(self, head):
        self.state = RESPONDING
        self.retry.responseStarted = True
        headers, length, upgrade = clientResponse(head, self.request, self._rewrite)
        sticky = self.proxy.balancer.sticky
        if sticky is not None:
            affinity = sticky.responseHeader(self.request, self.attempt.member, head.status)
            if affinity is not None:
                headers.append(affinity)
        self.client.startResponse(head.status, head.reason, headers, length, self.keepAlive, upgrade)

    def _rewrite(self, value):
        return rewriteLocation(
            value, self.request, self.attempt.member, self.proxy.locationRewriter()
        )

    def attemptDone(self, attempt):
        """
        The member's response ended completely.
        """
        self._finish()

    def tunnelClosed(self):
        """
        The member closed its side of the tunnel.
        """
        if self.state == TUNNEL or self.state == RESPONDING:
            self._record(101)
            self._over(FINISHED)
            self.client.close()

    def tunnelStarted(self):
        """
        The member switched protocols: from now on the client's bytes go
        to L{clientData}.
        """
        self.state = TUNNEL
        self.client.startTunnel(self)

    # Failures

    def attemptFailed(self, attempt, kind, reason, answeredPart=False):
        """
        The attempt failed (C{kind} is one of L{playbalancer.outcome.KINDS}):
        try another member if the rules allow, else answer or cut short.
        """
        state = self.state
        if state == ABANDONED or state == FINISHED:
            attempt.end(outcome.CANCELLED)
            return
        if state == RESPONDING or state == TUNNEL:
            attempt.end(kind, reason, answeredPart=answeredPart)
            if kind == outcome.RESET:
                _log.warn(
                    "member {member} broke off a response: {reason}",
                    member=attempt.member.name,
                    reason=reason,
                )
            self._cutShort()
            return
        again, status, text = retry.afterFailure(self.retry, kind, reason)
        attempt.end(kind, reason, retried=again, answeredPart=answeredPart)
        if not again:
            extra = [(b"Retry-After", b"1")] if kind == outcome.QUEUE_FULL else ()
            self._respond(status, text, extra=extra)
            return
        if kind == outcome.CONNECT:
            self.connectFailed = True  # (it does not use up the one retry)
        else:
            self.retry.retried = True
        self._attempt()

    # Endings

    def _record(self, status):
        route = self.proxy.routeTarget
        if route is not None:
            # (RouteTarget.answered, inlined: once per request.)
            route.responses[status // 100 if 100 <= status < 600 else 5] += 1
        log = self.client.accessLog
        if log is not None:
            recordExchange(log, self, status)

    def _cutShort(self):
        """
        End a response that cannot be completed: close the client
        connection short of it.
        """
        self._record(self.responseHead.status if self.responseHead is not None else 502)
        self._over(ABANDONED)
        self.client.readEnd()
        self.client.abort()

    def _finish(self):
        self._record(self.responseHead.status if self.responseHead is not None else self.ownStatus)
        self._over(FINISHED)
        self.client.finish()

    def _over(self, state):
        """
        The exchange ends in C{state} (C{finished} or C{abandoned}): an
        attempt still under way is cancelled, and the exchange lets go of
        it, so that neither keeps the other alive (a request's objects are
        freed as it ends, not left for the cyclic garbage collector).
        """
        self.state = state
        if self.interim is not None:
            self.interim.stop()
        attempt, self.attempt = self.attempt, None
        if attempt is not None:
            attempt.cancel()

    def _respond(self, status, text, keepAlive=True, extra=()):
        """
        Answer with a response of our own.
        """
        if self.state == FINISHED or self.state == ABANDONED:
            return
        self.keepAlive = keepAlive = keepAlive and self.body.complete
        self.retry.responseStarted = True
        self.ownStatus = status
        self.ownBytes = self.client.respond(status, text, keepAlive, extra)
        self._finish()

    def clientGone(self):
        """
        The client connection closed: stop whatever is under way.
        """
        state = self.state
        if state == FINISHED or state == ABANDONED:
            return
        self._record(499)  # nginx's "client closed request"
        self._over(ABANDONED)

    def clientTimedOut(self):
        """
        The client stopped sending its request body.  When the member has
        answered already, the client may well have stopped because of that
        answer: the response goes on (the connection is not kept, and
        C{send_timeout} covers a client that stops reading too).
        """
        if self.state not in (BUFFERING, ATTEMPTING):
            return
        self.body.complete = True
        if self.attempt is not None:
            self.attempt.cancel()
        self._respond(408, "Request Timeout: the request body stopped", keepAlive=False)


def recordExchange(log, exchange, status):
    """
    Write C{exchange}'s line in access log C{log}, C{status} being what
    the client got (499: it left first).
    """
    head = exchange.responseHead
    attempt = exchange.attempt
    answered = head is not None
    log.request(
        exchange.request,
        status,
        attempt.bytesIn if answered else exchange.ownBytes,
        attempt.member.name if attempt is not None else None,
        head.status if answered else None,
        attempt.firstByte if answered else None,
        exchange.proxy.clock.seconds() - exchange.arrived,
        len(exchange.tried) - 1 if exchange.tried else 0,
        exchange.proxy.routeName,
    )
