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
from playbalancer.http.headers import requestHeadersForMember, responseHeadersForClient
from playbalancer.http.proxy import HTTPProxy  # noqa: F401 (its old home)
from playbalancer.http.requestbody import PENDING_LIMIT, REPLAY_LIMIT, RequestBody  # noqa: F401
from playbalancer.http.responses import REASONS, plainResponse  # noqa: F401
from playbalancer.http.retry import IDEMPOTENT  # noqa: F401

#: Seconds to wait for a member's C{100 Continue} before sending our own.
CONTINUE_WAIT = 1.0

#: The most interim (1xx) responses passed on for one request; a member
#: that sends more is not heard beyond them.
MAX_INTERIM = 8

_CONNECTION_WORDS = frozenset([b"close", b"keep-alive", b"upgrade"])

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
    (in a tunnel), L{clientGone} and L{clientTimedOut}; the current
    L{Attempt} calls the C{attempt*} methods.

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
        self.retry = retry.RetryState(request.method, request.upgrade, self._carriesIdempotencyKey())
        self.connectFailed = False
        self.responseHead = None
        self.keepAlive = True
        self.continueSent = False
        self.continueCall = None
        self.interimSent = 0
        self.ownStatus = 0
        self.ownBytes = 0
        self.arrived = proxy.clock.seconds()

    def __repr__(self):
        return f"<Exchange {self.request.method!r} {self.request.target!r}: {self.state}>"

    @property
    def member(self):
        """
        The member of the current (or last) attempt, or L{None}.
        """
        attempt = self.attempt
        return attempt.member if attempt is not None else None

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
                self._sendContinue()
            return
        self._attempt()

    def bodyData(self, data):
        """
        A piece of the request body arrived from the client.
        """
        body = self.body
        body.received += len(data)
        if self.request.length is None:
            framed = b"%x\r\n%s\r\n" % (len(data), data)
        else:
            framed = data
        self._sendBody(framed)
        if self.state == BUFFERING and body.pendingBytes > REPLAY_LIMIT:
            # A chunked body longer than we keep: stream the rest.
            self._attempt()

    def bodyEnd(self):
        """
        The whole request body arrived.
        """
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
        if self.responseHead is not None:
            return  # the member already answered: it gets no more
        attempt = self.attempt
        if attempt is not None and attempt.takesBody():
            attempt.sendBody(framed)
        elif self.body.hold(framed):
            self.client.pauseProducing()

    def sendingBody(self):
        """
        The attempt is connected and sent what was held: the client may
        send the rest.
        """
        self.client.resumeProducing()
        request = self.request
        if request.expectContinue and not self.continueSent and self.continueCall is None:
            self.continueCall = self.proxy.clock.callLater(CONTINUE_WAIT, self._sendContinue)

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

    def _carriesIdempotencyKey(self):
        """
        Whether a request of another method may be sent again all the same:
        the balancer allows it (C{retry_idempotency_key}) and the client
        sent an C{Idempotency-Key} (the IETF draft), promising that the
        member will not act on it twice.
        """
        if not self.proxy.balancer.retryIdempotencyKey:
            return False
        return any(name.lower() == b"idempotency-key" for name, _ in self.request.headers)

    def memberHead(self, member):
        """
        The request head for C{member}, as bytes.
        """
        request = self.request
        proxy = self.proxy
        target = request.target
        if member.basePath and target[:1] == b"/":
            target = member.basePath + target
        listed = request.connection - _CONNECTION_WORDS if request.connection else frozenset()
        address = request.client or "unknown"
        headers = requestHeadersForMember(
            request.headers,
            address.encode("ascii"),
            request.secure,
            member.hostHeader,
            proxy.preserveHost,
            request.host,
            listed,
            proxy.trusts(address),
            self.requestId(),
            proxy.underscoresInHeaders,
        )
        parts = [request.method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            parts.extend((name, b": ", value, b"\r\n"))
        if request.length is None:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif request.length or request.method in (b"POST", b"PUT", b"PATCH"):
            parts.append(b"Content-Length: %d\r\n" % request.length)
        if request.expectContinue and not self.body.complete:
            parts.append(b"Expect: 100-continue\r\n")
        if request.upgrade:
            parts.append(b"Connection: upgrade\r\nUpgrade: " + request.upgrade + b"\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def requestId(self):
        """
        The client's valid C{X-Request-Id}, or one made here (a per-process
        random prefix and a counter: unique without a syscall).
        """
        request = self.request
        if request.requestId is None:
            request.requestId = self.proxy.nextRequestId()
        return request.requestId

    # 100 Continue and other interim responses

    def _sendContinue(self):
        self.continueCall = None
        if not self.continueSent and self.state in (BUFFERING, ATTEMPTING):
            self.continueSent = True
            self.client.sendContinue()

    def _stopContinue(self):
        if self.continueCall is not None:
            if self.continueCall.active():
                self.continueCall.cancel()
            self.continueCall = None

    def attemptInterim(self, head):
        """
        An interim (1xx) response before the final one: passed on, as RFC
        9110 15.2 asks of a proxy (a 103 Early Hints with its Link headers,
        a 102), at most L{MAX_INTERIM} of them.
        """
        status = head.status
        if status == 100:
            self._stopContinue()
            if self.continueSent:
                return  # we said it ourselves already
            self.continueSent = True
        if self.state != ATTEMPTING:
            return
        self.interimSent += 1
        if self.interimSent > MAX_INTERIM:
            return
        self.client.sendInterim(status, head.reason, list(self._clientHeaders(head)))

    # The response

    def attemptAnswered(self, attempt, head):
        """
        The member's final response head came: pass it on, or try another
        member.
        """
        self._stopContinue()
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
        headers = list(self._clientHeaders(head))
        status = head.status
        length = head.length
        upgrade = None
        if status == 101:
            upgrade = b""
            for name, value in head.headers:
                if name.lower() == b"upgrade":
                    upgrade = value
            length = None
        elif length == 0:
            # No body.  Pass on a HEAD or 304 response's own length (never
            # a 1xx's or 204's: RFC 9110 8.6 forbids it there).
            if status == 304 or self.request.method == b"HEAD":
                for name, value in head.headers:
                    if name.lower() == b"content-length":
                        headers.append((b"Content-Length", value))
                        break
        elif length == -1:
            length = None
        self.client.startResponse(status, head.reason, headers, length, self.keepAlive, upgrade)

    def _clientHeaders(self, head):
        listed = head.connection - _CONNECTION_WORDS if head.connection else frozenset()
        return responseHeadersForClient(head.headers, self._rewrite, listed)

    def _rewrite(self, value):
        request = self.request
        mountPath = request.mountPath
        if mountPath and value[:1] == b"/" and value[:2] != b"//":
            # A path on the member: the same path under the mount.
            basePath = self.attempt.member.basePath
            if basePath and value.startswith(basePath):
                rest = value[len(basePath) :]
                if not rest or rest[:1] in b"/?#":
                    return mountPath + (rest or b"/")
                return value
            return mountPath + value
        if request.host is None:
            return value
        scheme = b"https://" if request.secure else b"http://"
        return self.proxy.locationRewriter().rewrite(value, scheme + request.host + mountPath)

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
            self.state = FINISHED
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
        if kind == outcome.QUEUE_FULL:
            attempt.end(kind, reason)
            self._respond(
                503, f"Service Unavailable: {reason}", extra=[(b"Retry-After", b"1")]
            )
            return
        if kind == outcome.CONNECT:
            attempt.end(kind, reason, retried=True)
            self.connectFailed = True
            self._attempt()
            return
        again = kind == outcome.RESET and retry.afterLoss(self.retry)
        attempt.end(kind, reason, retried=again, answeredPart=answeredPart)
        if again:
            self.retry.retried = True
            self._attempt()
        elif kind == outcome.RESET:
            self._respond(502, "Bad Gateway: the member closed the connection")
        elif kind == outcome.BAD_RESPONSE:
            self._respond(502, f"Bad Gateway: {reason}")
        else:
            self._respond(504, "Gateway Timeout: the member did not answer in time")

    # Endings

    def _record(self, status):
        """
        Write the access log line.
        """
        log = self.client.accessLog
        if log is None:
            return
        head = self.responseHead
        attempt = self.attempt
        log.request(
            self.request,
            status,
            attempt.bytesIn if head is not None else self.ownBytes,
            attempt.member.name if attempt is not None else None,
            head.status if head is not None else None,
            attempt.firstByte if head is not None else None,
            self.proxy.clock.seconds() - self.arrived,
            len(self.tried) - 1 if self.tried else 0,
        )

    def _cutShort(self):
        """
        End a response that cannot be completed: close the client
        connection short of it.
        """
        self.state = ABANDONED
        self._record(self.responseHead.status if self.responseHead is not None else 502)
        self.client.readEnd()
        self.client.abort()

    def _finish(self):
        self.state = FINISHED
        self._record(self.responseHead.status if self.responseHead is not None else self.ownStatus)
        self._stopContinue()
        self.client.finish()

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
        self.state = ABANDONED
        self._stopContinue()
        if self.attempt is not None:
            self.attempt.cancel()

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
