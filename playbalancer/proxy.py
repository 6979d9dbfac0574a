"""
The HTTP reverse proxy: a twisted.web resource that asks a L{Balancer} for a
member per request and relays the exchange over pooled connections, with
failover to another member when that is safe.
"""

from __future__ import annotations

from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.internet.protocol import Protocol
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.web._newclient import (
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.client import PotentialDataLoss, ResponseDone
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from playbalancer._client import connectionListedHeaders
from playbalancer.failures import describe
from playbalancer.bodies import SpooledBody
from playbalancer.headers import (
    LocationRewriter,
    requestHeadersForMember,
    responseHeadersForClient,
)

#: Methods that may be sent again after a member broke off before answering.
IDEMPOTENT = frozenset([b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"])

_NOT_SENT = (ConnectError, DNSLookupError, ConnectTimeoutError, RequestNotSent)
_NO_RESPONSE = (ResponseNeverReceived, RequestTransmissionFailed, ResponseFailed)

#: Statuses whose responses never have a body.
_NO_BODY = frozenset([204, 304])

_log = Logger()


def plainResponse(request, code, text, headers=()):
    """
    Answer C{request} with a short plain-text body.
    """
    body = text.encode("utf-8") + b"\n"
    request.setResponseCode(code)
    request.responseHeaders.setRawHeaders(b"content-type", [b"text/plain; charset=utf-8"])
    request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % len(body)])
    for name, value in headers:
        request.responseHeaders.setRawHeaders(name, [value])
    if request.method == b"HEAD":
        return b""
    return body


def originTarget(request):
    """
    The request target to send on: origin-form (path and query), without
    the path segments that led to this resource, or L{None} if the target is
    not acceptable.
    """
    uri = request.uri
    if uri == b"*":
        return uri if request.method == b"OPTIONS" and not request.prepath else None
    if not uri.startswith(b"/"):
        lowered = uri[:8].lower()
        if not (lowered.startswith(b"http://") or lowered.startswith(b"https://")):
            return None
        slash = uri.find(b"/", uri.find(b"//") + 2)
        uri = uri[slash:] if slash != -1 else b"/"
    if request.prepath:
        path, sep, query = uri.partition(b"?")
        segments = path.split(b"/")
        uri = b"/" + b"/".join(segments[1 + len(request.prepath) :]) + sep + query
    return uri


def _malformed(request):
    """
    Why twisted.web accepted a request that a proxy must refuse, or L{None}.
    """
    hosts = request.requestHeaders.getRawHeaders(b"host", [])
    if len(hosts) > 1:
        return "more than one Host header"
    if not hosts and request.clientproto == b"HTTP/1.1":
        return "HTTP/1.1 request without a Host header"
    return None


def _memberBases(member):
    hostText = member.host if ":" not in member.host else f"[{member.host}]"
    scheme = member.scheme
    bases = [member.origin + member.basePath]
    if member.port == {"http": 80, "https": 443}.get(scheme):
        bases.append(f"{scheme}://{hostText}".encode("ascii") + member.basePath)
    return bases


class ReverseProxyResource(Resource):
    """
    Proxy every request under this resource to a member of C{balancer}.

    @param connector: a L{playbalancer._client.MemberConnector}.
    @param reactor: provides C{callLater}, for timeouts and body reads.
    @param preserveHost: send the client's I{Host} (Apache's
        C{ProxyPreserveHost On}); otherwise the member's own.
    @param timeout: seconds to wait for a member's response headers before
        answering 504.
    """

    isLeaf = True

    def __init__(self, balancer, connector, reactor, preserveHost=True, timeout=60.0):
        Resource.__init__(self)
        self.balancer = balancer
        self.connector = connector
        self.reactor = reactor
        self.preserveHost = preserveHost
        self.timeout = timeout
        self.cooperator = Cooperator(scheduler=lambda f: reactor.callLater(0, f))
        self._rewriter = None

    def render(self, request):
        problem = _malformed(request)
        target = originTarget(request)
        if problem is None and target is None:
            problem = "request target must be a path"
        if problem is not None:
            # Nothing more is read from a client that sent this.
            request.setHeader(b"connection", b"close")
            request.channel.persistent = False
            return plainResponse(request, 400, f"Bad Request: {problem}")
        _Exchange(self, request, target).start()
        return NOT_DONE_YET

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


class _Exchange:
    """
    One client request and its attempts on members until one answers.
    """

    def __init__(self, resource, request, target):
        self.resource = resource
        self.request = request
        self.target = target
        self.tried = []
        self.retriedAfterSend = False
        self.clientGone = False
        self.timedOut = False
        self.pending = None
        self.timeoutCall = None
        self.relay = None
        self.lastProblem = None
        content = request.content
        hasBody = request.requestHeaders.hasHeader(
            b"content-length"
        ) or request.requestHeaders.hasHeader(b"transfer-encoding")
        self.body = SpooledBody(content if hasBody else None, resource.cooperator)
        request.notifyFinish().addErrback(self._clientLost)

    def start(self):
        self._attempt()

    def _headersFor(self, member):
        request = self.request
        peer = request.getClientAddress()
        clientAddress = getattr(peer, "host", "unknown").encode("ascii")
        return requestHeadersForMember(
            request.requestHeaders,
            clientAddress,
            request.isSecure(),
            member.hostHeader,
            self.resource.preserveHost,
        )

    def _attempt(self):
        balancer = self.resource.balancer
        member = balancer.pick(self.request, self.tried)
        if member is None:
            self._noMember()
            return
        self.tried.append(member)
        balancer.begin(member)
        self.started = self.resource.reactor.seconds()
        producer = self.body.producer()
        if producer is not None:
            producer = _TimeAfterBody(producer, self._startTimer)
        d = self.resource.connector.request(
            member, self.request.method, self.target, self._headersFor(member), producer
        )
        self.pending = d
        if producer is None:
            self._startTimer()
        d.addCallbacks(self._gotResponse, self._failed, (member,), None, (member,))
        d.addErrback(self._bug)

    def _bug(self, failure):
        """
        Our own code raised: never leave the client hanging.
        """
        if not self.clientGone and not self.request.finished:
            self.request.processingFailed(failure)
        else:
            _log.failure("error while proxying", failure)

    def _startTimer(self):
        """
        The member has the whole request: from now on it has C{timeout}
        seconds to answer.
        """
        if self.pending is not None and self.timeoutCall is None:
            self.timeoutCall = self.resource.reactor.callLater(
                self.resource.timeout, self._timeOut
            )

    def _timeOut(self):
        self.timeoutCall = None
        self.timedOut = True
        if self.pending is not None:
            self.pending.cancel()

    def _stopTimer(self):
        if self.timeoutCall is not None:
            self.timeoutCall.cancel()
            self.timeoutCall = None

    def _failed(self, failure, member):
        self.pending = None
        self._stopTimer()
        balancer = self.resource.balancer
        balancer.end(member)
        if self.clientGone:
            return
        if self.timedOut:
            balancer.countFailure(member)
            self._respond(504, "Gateway Timeout: the member did not answer in time")
            return
        reason = failure.value
        if failure.check(*_NOT_SENT):
            if not failure.check(RequestNotSent):
                balancer.memberFailed(member, describe(failure))
            self.lastProblem = 503
            self._attempt()
            return
        if failure.check(*_NO_RESPONSE):
            balancer.memberFailed(member, describe(failure))
            if self.request.method in IDEMPOTENT and not self.retriedAfterSend:
                self.retriedAfterSend = True
                self._attempt()
                return
            self._respond(502, "Bad Gateway: the member closed the connection")
            return
        _log.failure("unexpected error from member {member}", failure, member=member.name)
        self._respond(502, f"Bad Gateway: {type(reason).__name__}")

    def _noMember(self):
        if self.lastProblem is None and self.tried:
            self._respond(502, "Bad Gateway: no member answered")
            return
        self._respond(
            503,
            "Service Unavailable: no usable member",
            [(b"retry-after", b"%d" % self.resource.balancer.secondsUntilRetry())],
        )

    def _respond(self, code, text, headers=()):
        request = self.request
        body = plainResponse(request, code, text, headers)
        if body:
            request.write(body)
        request.finish()

    def _gotResponse(self, response, member):
        self.pending = None
        self._stopTimer()
        balancer = self.resource.balancer
        if response.code in balancer.failOnStatus:
            balancer.memberFailed(member, f"answered {response.code}")
            if self._retryFailedStatus():
                balancer.end(member)
                response.deliverBody(_Discard())
                self._attempt()
                return
        else:
            balancer.memberSucceeded(member)
        if self.clientGone:
            balancer.end(member)
            response.deliverBody(_Discard())
            return
        try:
            self._relayResponse(response, member)
        except BaseException:
            balancer.end(member)
            response.deliverBody(_Discard())
            raise

    def _relayResponse(self, response, member):
        request = self.request
        request.setResponseCode(response.code, response.phrase)
        outgoing = request.responseHeaders
        outgoing.removeHeader(b"server")
        for name, values in responseHeadersForClient(
            response.headers, self._rewrite, connectionListedHeaders(response)
        ):
            outgoing.setRawHeaders(name, values)
        if (
            response.length is not UNKNOWN_LENGTH
            and request.method != b"HEAD"
            and response.code not in _NO_BODY
        ):
            outgoing.setRawHeaders(b"content-length", [b"%d" % response.length])
        request.defaultContentType = None
        self.relay = _ResponseRelay(self, member)
        response.deliverBody(self.relay)

    def _retryFailedStatus(self):
        """
        Whether a C{failonstatus} answer is worth another member: only for
        an idempotent request, once, and when another member is usable.
        """
        if self.clientGone or self.retriedAfterSend or self.request.method not in IDEMPOTENT:
            return False
        if self.body.spooled:
            # The first attempt may still be reading the spooled body.
            return False
        if not self.resource.balancer.candidates(self.tried):
            return False
        self.retriedAfterSend = True
        return True

    def _rewrite(self, value):
        request = self.request
        host = request.getHeader(b"host")
        if host is None:
            return value
        prefix = b"".join(b"/" + segment for segment in request.prepath)
        scheme = b"https://" if request.isSecure() else b"http://"
        return self.resource.locationRewriter().rewrite(value, scheme + host + prefix)

    def responseEnded(self, member, reason, received):
        """
        The member's response body ended, completely or not.
        """
        self.relay = None
        balancer = self.resource.balancer
        balancer.end(
            member,
            bytesIn=received,
            bytesOut=self.body.length or 0,
            latency=self.resource.reactor.seconds() - self.started,
        )
        if self.clientGone:
            return
        request = self.request
        request.unregisterProducer()
        if reason.check(ResponseDone, PotentialDataLoss):
            request.finish()
            return
        # Broken off after the headers went out: close the client connection
        # so that the client cannot take a truncated body for a whole one.
        balancer.countFailure(member)
        _log.warn(
            "member {member} broke off a response: {reason}",
            member=member.name,
            reason=describe(reason),
        )
        request.channel.loseConnection()

    def _clientLost(self, failure):
        self.clientGone = True
        self._stopTimer()
        if self.pending is not None:
            self.pending.cancel()
        if self.relay is not None and self.relay.transport is not None:
            self.relay.transport.stopProducing()


class _ResponseRelay(Protocol):
    """
    Writes a member's response body to the client, pausing the member while
    the client is slow to read.
    """

    def __init__(self, exchange, member):
        self.exchange = exchange
        self.member = member
        self.received = 0
        self.idle = None

    def connectionMade(self):
        self.exchange.request.registerProducer(self.transport, True)
        resource = self.exchange.resource
        self.idle = resource.reactor.callLater(resource.timeout, self._stalled)

    def dataReceived(self, data):
        self.received += len(data)
        self.idle.reset(self.exchange.resource.timeout)
        if not self.exchange.clientGone:
            self.exchange.request.write(data)

    def _stalled(self):
        # The member sent nothing for `timeout` seconds mid-body (or the
        # client read nothing that long): give up on this response.
        self.idle = None
        self.transport.stopProducing()

    def connectionLost(self, reason):
        if self.idle is not None and self.idle.active():
            self.idle.cancel()
        self.idle = None
        self.exchange.responseEnded(self.member, reason, self.received)


@implementer(IBodyProducer)
class _TimeAfterBody:
    """
    A request body producer that says when the whole body was sent, so that
    the response timeout does not count a slow upload.
    """

    def __init__(self, producer, sent):
        self._producer = producer
        self._sent = sent
        self.length = producer.length

    def startProducing(self, consumer):
        d = self._producer.startProducing(consumer)

        def done(result):
            self._sent()
            return result

        return d.addCallback(done)

    def pauseProducing(self):
        self._producer.pauseProducing()

    def resumeProducing(self):
        self._producer.resumeProducing()

    def stopProducing(self):
        self._producer.stopProducing()


class _Discard(Protocol):
    """
    Drops a response nobody waits for, and its connection.
    """

    def connectionMade(self):
        self.transport.stopProducing()
