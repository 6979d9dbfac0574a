"""
One client request on its way to a member and back: the choice of member,
the attempts and retries, the timeouts, the headers both ways, and the
streaming of both bodies with backpressure.

The front connection (L{playbalancer.front}) parses the request and hands
it here; a L{playbalancer.upstream.MemberConnection} carries it.
"""

from __future__ import annotations

import os

from twisted.internet.defer import CancelledError
from twisted.logger import Logger

from playbalancer.failures import describe
from playbalancer.flow import BUFFER_SIZE, holdIfFull, keepsUp, pauses, stopPausing
from playbalancer.headers import (
    LocationRewriter,
    requestHeadersForMember,
    responseHeadersForClient,
)
from playbalancer.rawsocket import closeWhenSent
from playbalancer.sendnow import sendNow, sendSequenceNow
from playbalancer.upstream import QueueFull

#: Methods that may be sent again after a member broke off before answering.
IDEMPOTENT = frozenset([b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"])

#: Request bodies up to this size are kept until the response comes, so
#: that the request can be sent again to another member.
REPLAY_LIMIT = 65536

#: Body bytes buffered for a member not connected yet before the client
#: is paused.
PENDING_LIMIT = 65536

#: Seconds to wait for a member's C{100 Continue} before sending our own.
CONTINUE_WAIT = 1.0

#: The most interim (1xx) responses passed on for one request; a member
#: that sends more is not heard beyond them.
MAX_INTERIM = 8

_PLAIN = b"text/plain; charset=utf-8"
_CONNECTION_WORDS = frozenset([b"close", b"keep-alive", b"upgrade"])

_log = Logger()


def plainResponse(status, text, keepAlive, head=False, extra=()):
    """
    The bytes of a short plain-text response of our own.
    """
    body = text.encode("utf-8") + b"\n"
    lines = [
        b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Error")),
        b"Content-Type: " + _PLAIN + b"\r\n",
        b"Content-Length: %d\r\n" % len(body),
    ]
    for name, value in extra:
        lines.append(name + b": " + value + b"\r\n")
    if not keepAlive:
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    if not head:
        lines.append(body)
    return b"".join(lines)


REASONS = {
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    417: b"Expectation Failed",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}


def _memberBases(member):
    hostText = member.host if ":" not in member.host else f"[{member.host}]"
    scheme = member.scheme
    bases = [member.origin + member.basePath]
    if member.port == {"http": 80, "https": 443}.get(scheme):
        bases.append(f"{scheme}://{hostText}".encode("ascii") + member.basePath)
    return bases


class HTTPProxy:
    """
    What every exchange of one listener shares: its balancer, the member
    connection pools and the settings.

    @param pools: a L{playbalancer.upstream.MemberPools}.
    @param preserveHost: send the client's I{Host} (Apache's
        C{ProxyPreserveHost On}); otherwise the member's own.
    @param timeout: seconds a member may take to start answering once it
        has the whole request, and may stay silent mid-response.
    @param trustedProxies: the networks (L{ipaddress} networks) of proxies
        in front of us whose X-Forwarded-For / Forwarded we extend.
    """

    def __init__(
        self,
        balancer,
        pools,
        clock,
        preserveHost=True,
        timeout=60.0,
        trustedProxies=(),
        underscoresInHeaders=False,
        bufferSize=BUFFER_SIZE,
    ):
        self.balancer = balancer
        self.pools = pools
        self.clock = clock
        self.sweeper = pools.sweeper
        self.preserveHost = preserveHost
        self.timeout = timeout
        self.trustedProxies = tuple(trustedProxies)
        self.underscoresInHeaders = underscoresInHeaders
        #: Bytes that may wait for a slow client (or member) before the
        #: other side is paused.
        self.bufferSize = bufferSize
        self._rewriter = None
        self._trusted = {}
        self._idPrefix = os.urandom(6).hex().encode("ascii") + b"-"
        self._idCounter = 0

    def nextRequestId(self):
        """
        A new request id, unique in this process and across processes.
        """
        self._idCounter += 1
        return self._idPrefix + b"%x" % self._idCounter

    def trusts(self, address):
        """
        Whether the client at C{address} (text) is a trusted proxy.
        """
        if not self.trustedProxies:
            return False
        known = self._trusted.get(address)
        if known is None:
            import ipaddress

            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                known = False
            else:
                known = any(ip in network for network in self.trustedProxies)
            if len(self._trusted) > 10000:
                self._trusted.clear()
            self._trusted[address] = known
        return known

    def locationRewriter(self):
        """
        The rewriter for the balancer's current members (rebuilt only when
        they change).
        """
        members = tuple(self.balancer.members)
        if self._rewriter is None or self._rewriter[0] != members:
            bases = []
            for member in members:
                bases.extend(_memberBases(member))
            self._rewriter = (members, LocationRewriter(bases))
        return self._rewriter[1]


class Exchange:
    """
    One client request and its attempts on members until one answers.

    @param front: the L{playbalancer.front.FrontConnection} it came on.
    @param request: its L{playbalancer.wire.RequestHead}.
    """

    def __init__(self, proxy, front, request):
        self.proxy = proxy
        self.front = front
        self.request = request
        self.tried = []
        self.member = None
        self.connection = None
        self.reused = False
        self.pending = None
        self.pendingBody = []
        self.pendingBytes = 0
        self.sentBody = []
        self.sentBytes = 0
        self.replayable = True
        self.bodyDone = request.length == 0
        self.bodyBytes = 0
        self.retried = False
        self.lastProblem = None
        self.responseStarted = False
        self.responseHead = None
        self.done = False
        self.keepAlive = True
        self.chunkedOut = False
        self.bytesIn = 0
        self.started = 0.0
        self.continueSent = False
        self.continueCall = None
        self.interimSent = 0
        self.tunnel = False
        #: The L{playbalancer.flow.Pauser}s of the upload (member transport pauses the
        #: client) and of the response (client transport pauses the member).
        self.uploadPauser = None
        self.responsePauser = None
        self.buffering = False
        self._ended = True
        self.logged = False
        self.ownStatus = 0
        self.ownBytes = 0
        self.firstByte = None
        self.heldHead = None
        self.arrived = proxy.clock.seconds()

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
            self.buffering = True
            if self.request.expectContinue:
                self._sendContinue()
            return
        self._attempt()

    def bodyData(self, data):
        """
        A piece of the request body arrived from the client.
        """
        self.bodyBytes += len(data)
        if self.request.length is None:
            framed = b"%x\r\n%s\r\n" % (len(data), data)
        else:
            framed = data
        self._sendBody(framed)
        if self.buffering and self.pendingBytes > REPLAY_LIMIT:
            # A chunked body longer than we keep: stream the rest.
            self.buffering = False
            self._attempt()

    def bodyEnd(self):
        """
        The whole request body arrived.
        """
        self.bodyDone = True
        if self.request.length is None:
            # The last chunk goes the way of the others, kept for a replay.
            self._sendBody(b"0\r\n\r\n")
        if self.buffering:
            self.buffering = False
            if not self.done:
                self._attempt()
            return
        connection = self.connection
        if self.responseHead is not None:
            return  # answered early: the member got what it needed
        if connection is None or self.pending is not None:
            return
        self._bodySent(connection)

    def _sendBody(self, framed):
        connection = self.connection
        if connection is None or self.pending is not None or self.responseHead is not None:
            if self.responseHead is not None:
                return  # the member already answered: it gets no more
            self.pendingBody.append(framed)
            self.pendingBytes += len(framed)
            if self.pendingBytes > PENDING_LIMIT:
                self.front.pauseReading()
            return
        connection.writeBody(framed)
        holdIfFull(connection.transport, self.proxy.bufferSize)
        self._keep(framed)

    def clientKeepsUp(self):
        """
        Whether the client takes the response as fast as it comes.
        """
        return keepsUp(self.front.transport)

    def memberKeepsUp(self):
        """
        Whether the member takes the request body as fast as it comes.
        """
        connection = self.connection
        return connection is None or keepsUp(connection.transport)

    def _keep(self, framed):
        if self.replayable:
            self.sentBytes += len(framed)
            if self.sentBytes > REPLAY_LIMIT:
                self.replayable = False
                self.sentBody = []
            else:
                self.sentBody.append(framed)

    def _bodySent(self, connection):
        connection.endBody()
        if self.request.length != 0:
            stopPausing(connection.transport, self.uploadPauser)
            self.uploadPauser = None
        if self.responseHead is None:
            connection.waitFor(self.proxy.timeout)

    # Attempts

    def _attempt(self):
        proxy = self.proxy
        balancer = proxy.balancer
        member = balancer.pick(self.request, self.tried)
        if member is None:
            self._noMember()
            return
        self.tried.append(member)
        self.member = member
        balancer.begin(member)
        self._ended = False
        self.started = proxy.clock.seconds()
        if self.sentBody:
            self.pendingBody[:0] = self.sentBody
            self.pendingBytes += self.sentBytes
            self.sentBody = []
            self.sentBytes = 0
        pool = proxy.pools.forMember(member)
        idle = pool.idleConnection()
        if idle is not None:
            self._connected((idle, True))
            return
        d = self.pending = pool.acquire()
        d.addCallbacks(self._connected, self._notConnected, errbackArgs=(member,))
        d.addErrback(self.failed)

    def failed(self, failure):
        """
        Our own code raised: log it, and never leave the client hanging.
        """
        _log.failure("error while proxying", failure)
        if not self.done and not self.responseStarted:
            self._respond(500, "Internal Server Error", keepAlive=False)
        elif not self.done:
            self._cutShort()

    def _connected(self, result):
        connection, reused = result
        self.pending = None
        if self.done:
            connection.pool.release(connection)
            return
        self.connection = connection
        self.reused = reused
        request = self.request
        hasBody = request.length != 0
        connection.startRequest(self, self._memberHead(self.member), request.method, hasBody)
        if not hasBody:
            connection.waitFor(self.proxy.timeout)
            return
        pending, self.pendingBody = self.pendingBody, []
        self.pendingBytes = 0
        for framed in pending:
            connection.writeBody(framed)
            self._keep(framed)
        if self.bodyDone:
            self._bodySent(connection)
            return
        self.uploadPauser = pauses(connection.transport, self.front)
        self.front.resumeReading()
        if request.expectContinue and not self.continueSent and self.continueCall is None:
            self.continueCall = self.proxy.clock.callLater(CONTINUE_WAIT, self._sendContinue)

    def _notConnected(self, failure, member):
        self.pending = None
        self._end(member)
        if self.done:
            return
        if failure.check(CancelledError):
            return
        if failure.check(QueueFull):
            member.stats.failures["queue_full"] += 1
            self._respond(
                503,
                f"Service Unavailable: {failure.value}",
                extra=[(b"Retry-After", b"1")],
            )
            return
        self.proxy.balancer.memberFailed(member, describe(failure))
        member.stats.failures["connect"] += 1
        member.stats.retries += 1
        self.lastProblem = 503
        self._attempt()

    def _noMember(self):
        if self.lastProblem is None and self.tried:
            self._respond(502, "Bad Gateway: no member answered")
            return
        self.proxy.balancer.unavailable += 1
        self._respond(
            503,
            "Service Unavailable: no usable member",
            extra=[(b"Retry-After", b"%d" % self.proxy.balancer.secondsUntilRetry())],
        )

    def _canRetry(self):
        request = self.request
        return (
            not self.retried
            and not self.responseStarted
            and self.replayable
            and not request.upgrade
            and (request.method in IDEMPOTENT or self._carriesIdempotencyKey())
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

    def _end(self, member, latency=None):
        """
        The attempt on C{member} is over: count it once.
        """
        if self._ended:
            return
        self._ended = True
        self.proxy.balancer.end(
            member, bytesIn=self.bytesIn, bytesOut=self.bodyBytes, latency=latency
        )

    def _memberHead(self, member):
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
        if request.expectContinue and not self.bodyDone:
            parts.append(b"Expect: 100-continue\r\n")
        if request.upgrade:
            parts.append(b"Connection: upgrade\r\nUpgrade: " + request.upgrade + b"\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    # 100 Continue

    def _sendContinue(self):
        self.continueCall = None
        if not self.continueSent and not self.responseStarted and not self.done:
            self.continueSent = True
            self.front.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _stopContinue(self):
        if self.continueCall is not None:
            if self.continueCall.active():
                self.continueCall.cancel()
            self.continueCall = None

    def memberInterim(self, head):
        """
        An interim (1xx) response before the final one: passed on to an
        HTTP/1.1 client, as RFC 9110 15.2 asks of a proxy (a 103 Early
        Hints with its Link headers, a 102), at most L{MAX_INTERIM} of them.
        """
        status = head.status
        if status == 100:
            self._stopContinue()
            if self.continueSent:
                return  # we said it ourselves already
            self.continueSent = True
        if self.request.version != b"HTTP/1.1" or self.done or self.responseStarted:
            return
        self.interimSent += 1
        if self.interimSent > MAX_INTERIM:
            return
        listed = head.connection - _CONNECTION_WORDS if head.connection else frozenset()
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, head.reason)]
        for name, value in responseHeadersForClient(head.headers, self._rewrite, listed):
            parts.extend((name, b": ", value, b"\r\n"))
        parts.append(b"\r\n")
        sendNow(self.front.transport, b"".join(parts))

    # The response

    def memberResponse(self, head):
        self._stopContinue()
        member = self.member
        balancer = self.proxy.balancer
        connection = self.connection
        if head.status == 101 and not self.request.upgrade:
            self.memberBroken(_Broken("101 Switching Protocols without an Upgrade request"))
            connection.abandon()
            return
        stats = member.stats
        stats.answered(head.status)
        self.firstByte = self.proxy.clock.seconds() - self.started
        stats.firstByte.observe(self.firstByte)
        if head.status in balancer.failOnStatus:
            balancer.memberFailed(member, f"answered {head.status}")
            if self._canRetry() and self.bodyDone and balancer.candidates(self.tried):
                self.retried = True
                stats.retries += 1
                self.connection = None
                connection.abandon()
                self._end(member)
                self._attempt()
                return
        else:
            balancer.memberSucceeded(member)
        self.responseHead = head
        if self.request.length != 0 and not self.bodyDone:
            # An early answer: the rest of the body is not sent on, and the
            # client connection cannot be kept (we would have to read it).
            stopPausing(connection.transport, self.uploadPauser)
            self.uploadPauser = None
            self.front.resumeReading()
            self.keepAlive = False
        self._startResponse(head)
        connection.waitFor(self.proxy.timeout)

    def _startResponse(self, head):
        request = self.request
        front = self.front
        self.responseStarted = True
        keepAlive = self.keepAlive and request.keepAlive and not front.closing
        listed = head.connection - _CONNECTION_WORDS if head.connection else frozenset()
        parts = [b"HTTP/1.1 %d %s\r\n" % (head.status, head.reason)]
        for name, value in responseHeadersForClient(head.headers, self._rewrite, listed):
            parts.extend((name, b": ", value, b"\r\n"))
        length = head.length
        status = head.status
        if status == 101:
            upgrade = b""
            for name, value in head.headers:
                if name.lower() == b"upgrade":
                    upgrade = value
            parts.append(b"Connection: upgrade\r\nUpgrade: " + upgrade + b"\r\n")
            self.tunnel = True
        elif length == 0:
            # No body.  Pass on a HEAD or 304 response's own length (never
            # a 1xx's or 204's: RFC 9110 8.6 forbids it there).
            if status == 304 or request.method == b"HEAD":
                for name, value in head.headers:
                    if name.lower() == b"content-length":
                        parts.extend((b"Content-Length: ", value, b"\r\n"))
                        break
        elif length is not None and length > 0:
            parts.append(b"Content-Length: %d\r\n" % length)
        elif request.version == b"HTTP/1.1":
            parts.append(b"Transfer-Encoding: chunked\r\n")
            self.chunkedOut = True
        else:
            keepAlive = False
        if not self.tunnel:
            if not keepAlive:
                parts.append(b"Connection: close\r\n")
            elif request.version == b"HTTP/1.0":
                parts.append(b"Connection: keep-alive\r\n")
        self.keepAlive = keepAlive
        parts.append(b"\r\n")
        transport = front.transport
        if length != 0 and status != 101:
            # The head waits for the body bytes read with it, to go out in
            # one send (see memberReadEnd).
            self.heldHead = b"".join(parts)
        else:
            sendNow(transport, b"".join(parts))
        if length != 0 or status == 101:
            self.responsePauser = pauses(transport, self.connection.transport, front.sendDeadline())

    def _rewrite(self, value):
        request = self.request
        if request.host is None:
            return value
        scheme = b"https://" if request.secure else b"http://"
        return self.proxy.locationRewriter().rewrite(value, scheme + request.host)

    def memberData(self, data):
        """
        Body bytes (or, in a tunnel, any bytes) from the member.
        """
        self.bytesIn += len(data)
        held = self.heldHead
        transport = self.front.transport
        if self.chunkedOut:
            parts = [b"%x\r\n" % len(data), data, b"\r\n"]
            if held is not None:
                self.heldHead = None
                parts.insert(0, held)
            queued = sendSequenceNow(transport, parts)
        elif held is not None:
            self.heldHead = None
            queued = sendSequenceNow(transport, [held, data])
        else:
            queued = sendNow(transport, data)
        if queued:
            holdIfFull(transport, self.proxy.bufferSize)
        if not self.tunnel:
            self.connection.deadline = self.proxy.sweeper.now + self.proxy.timeout
        else:
            self.front.tunnelActive()

    def memberReadEnd(self):
        """
        The bytes the member's response head came with were passed on:
        send the head now if no body bytes came with it.
        """
        held, self.heldHead = self.heldHead, None
        if held is not None:
            sendNow(self.front.transport, held)

    def memberDone(self):
        """
        The member's response ended completely.
        """
        front = self.front
        if self.chunkedOut:
            held, self.heldHead = self.heldHead, None
            sendNow(front.transport, held + b"0\r\n\r\n" if held else b"0\r\n\r\n")
        else:
            self.memberReadEnd()
        if self.responseHead is not None and self.responseHead.length != 0:
            stopPausing(front.transport, self.responsePauser)
            self.responsePauser = None
        self.connection = None
        took = self.proxy.clock.seconds() - self.started
        self.member.stats.total.observe(took)
        self._end(self.member, latency=took)
        self._finish()

    def requestId(self):
        """
        The client's valid C{X-Request-Id}, or one made here (a per-process
        random prefix and a counter: unique without a syscall).
        """
        request = self.request
        if request.requestId is None:
            request.requestId = self.proxy.nextRequestId()
        return request.requestId

    def _record(self, status):
        """
        Write the access log line, once.
        """
        log = self.front.factory.accessLog
        if log is None or self.logged:
            return
        self.logged = True
        head = self.responseHead
        now = self.proxy.clock.seconds()
        log.request(
            self.request,
            status,
            self.bytesIn if head is not None else self.ownBytes,
            self.member.name if self.member is not None else None,
            head.status if head is not None else None,
            self.firstByte,
            now - self.arrived,
            len(self.tried) - 1 if self.tried else 0,
        )

    def _cutShort(self):
        """
        End a response that cannot be completed: close the client
        connection short of it.
        """
        self._record(self.responseHead.status if self.responseHead is not None else 502)
        self.memberReadEnd()
        self.front.abort()

    def _finish(self):
        self._record(self.responseHead.status if self.responseHead is not None else self.ownStatus)
        self._stopContinue()
        self.front.responseDone(self.keepAlive)

    def memberLost(self, reason, answered):
        """
        The member connection closed before the response was complete.

        @param answered: whether some of the response had come.
        """
        member = self.member
        balancer = self.proxy.balancer
        self.connection = None
        self._end(member)
        if self.done:
            return
        member.stats.failures["reset"] += 1
        if self.responseStarted:
            balancer.countFailure(member)
            _log.warn(
                "member {member} broke off a response: {reason}",
                member=member.name,
                reason=describe(reason),
            )
            self._cutShort()
            return
        if answered or not self.reused:
            # (A pooled connection that closes with no answer at all was
            # most likely closed by the member while idle: no failure.)
            balancer.memberFailed(member, describe(reason))
        if self._canRetry():
            self.retried = True
            member.stats.retries += 1
            self._attempt()
            return
        self._respond(502, "Bad Gateway: the member closed the connection")

    def memberBroken(self, error):
        """
        The member's response was malformed.
        """
        member = self.member
        self.connection = None
        self._end(member)
        if self.done:
            return
        self.proxy.balancer.badResponse(member, f"bad response: {error.reason}")
        member.stats.failures["bad_response"] += 1
        if self.responseStarted:
            self._cutShort()
            return
        self._respond(502, f"Bad Gateway: {error.reason}")

    def memberTimedOut(self):
        member = self.member
        self.connection = None
        self._end(member)
        if self.done:
            return
        self.proxy.balancer.countFailure(member)
        member.stats.failures["timeout"] += 1
        if self.responseStarted:
            self._cutShort()
            return
        self._respond(504, "Gateway Timeout: the member did not answer in time")

    # Upgrade tunnels

    def memberSwitched(self, leftover):
        """
        The member switched protocols: relay raw bytes both ways.
        """
        front = self.front
        connection = self.connection
        connection.deadline = None
        self.uploadPauser = pauses(connection.transport, front.transport)
        front.startTunnel(self)
        if leftover:
            self.memberData(leftover)

    def clientData(self, data):
        if self.connection is not None:
            self.bodyBytes += len(data)
            self.connection.transport.write(data)

    def memberTunnelClosed(self):
        self.connection = None
        self._end(self.member)
        self._record(101)
        self.done = True
        self.front.close()

    # Endings

    def _respond(self, status, text, keepAlive=True, extra=()):
        """
        Answer with a response of our own.
        """
        if self.done:
            return
        request = self.request
        keepAlive = keepAlive and self.bodyDone and request.keepAlive and not self.front.closing
        self.keepAlive = keepAlive
        self.responseStarted = True
        self.ownStatus = status
        response = plainResponse(status, text, keepAlive, request.method == b"HEAD", extra)
        self.ownBytes = len(response) - response.find(b"\r\n\r\n") - 4
        sendNow(self.front.transport, response)
        self._finish()

    def clientGone(self):
        """
        The client connection closed: stop whatever is under way.
        """
        if self.done:
            return
        self._record(499)  # nginx's "client closed request"
        self.done = True
        self._stopContinue()
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.cancel()
        connection, self.connection = self.connection, None
        if connection is not None:
            if self.tunnel:
                closeWhenSent(connection.transport)
            else:
                connection.abandon()
            if self.member is not None:
                self._end(self.member)

    def clientTimedOut(self):
        """
        The client stopped sending its request body.  When the member has
        answered already, the client may well have stopped because of that
        answer: the response goes on (the connection is not kept, and
        C{send_timeout} covers a client that stops reading too).
        """
        if self.responseStarted:
            return
        self.bodyDone = True
        connection, self.connection = self.connection, None
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.cancel()
        if connection is not None:
            connection.abandon()
            self._end(self.member)
        self._respond(408, "Request Timeout: the request body stopped", keepAlive=False)


class _Broken(Exception):
    def __init__(self, reason):
        Exception.__init__(self, reason)
        self.reason = reason
