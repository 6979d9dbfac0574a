"""
The proxy as a twisted.web resource: mount L{ReverseProxyResource} in any
L{twisted.web.server.Site}, next to your own resources, and the requests
under it go through the same exchange as on a playbalancer listener (the
same balancer, scheduler, member pools, health, retries, header rules and
Location rewriting), to the path under the mount (Apache's
C{ProxyPass /app balancer://mycluster/}).

twisted.web reads a request's whole body before a resource sees it, so the
body goes to the member from memory (or twisted.web's temporary file),
paced by the member; the response streams to the client, and a client
that reads slowly pauses the member.  Protocol upgrades (WebSocket) are
not passed through this face; mount the proxy on a listener for them.
Requests are logged by the site's own log, not playbalancer's access log.
"""

from __future__ import annotations

from zope.interface import implementer

from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from playbalancer.flow import Pauser
from playbalancer.http.exchange import ABANDONED, FINISHED, Exchange
from playbalancer.http.responses import PLAIN, REASONS, plainBody
from playbalancer.http.wire import HTTPError, Limits, parseRequestHead
from playbalancer.interfaces import IClientSide

#: The exchange's states in which it takes no more of the request body.
_OVER = (FINISHED, ABANDONED)

#: Bytes of the request body handed to the exchange at a time.
BODY_PIECE = 65536

#: Request headers not passed on as they came: twisted.web already took
#: the body off its framing, and upgrades are not passed through here.
_REFRAMED = frozenset([b"content-length", b"transfer-encoding", b"upgrade", b"expect"])


class ReverseProxyResource(Resource):
    """
    Proxies every request under it to a balancer's members.

    @param proxy: the L{playbalancer.http.proxy.HTTPProxy} of a balancer,
        as L{playbalancer.embed.loadBalancers} gives them by name.
    @param limits: the L{playbalancer.http.wire.Limits} a request head
        must keep to (the listener defaults if not given).
    """

    isLeaf = True

    def __init__(self, proxy, limits=Limits()):
        Resource.__init__(self)
        self.proxy = proxy
        self.limits = limits

    def render(self, request):
        client = WebRequestClient(request)
        try:
            head = requestHead(request, self.limits)
        except HTTPError as e:
            client.refuse(e.status, e.reason)
            return NOT_DONE_YET
        exchange = Exchange(self.proxy, client, head)
        client.serve(exchange)
        return NOT_DONE_YET


def requestHead(request, limits):
    """
    The L{playbalancer.http.wire.RequestHead} of a twisted.web request,
    checked by the same parser as on a listener, with the target and mount
    path as seen under the resource.

    @raise HTTPError: for a request a listener would refuse.
    """
    uri = request.uri
    path, question, query = uri.partition(b"?")
    segments = path[1:].split(b"/")
    consumed = len(request.prepath)
    mountPath = b"/" + b"/".join(segments[:consumed]) if consumed else b""
    if mountPath == b"/":
        mountPath = b""
    target = b"/" + b"/".join(segments[consumed:]) + question + query
    # An HTTP/1.0 request keeps its version: it may come without Host.
    version = b"HTTP/1.0" if request.clientproto == b"HTTP/1.0" else b"HTTP/1.1"
    lines = [b"%s %s %s" % (request.method, target, version)]
    for name, values in request.requestHeaders.getAllRawHeaders():
        lowered = name.lower()
        if lowered in _REFRAMED:
            continue
        for value in values:
            if lowered == b"connection":
                value = _withoutUpgrade(value)
                if not value:
                    continue
            lines.append(name + b": " + value)
    length = _bodyLength(request)
    if length or request.method in (b"POST", b"PUT", b"PATCH"):
        lines.append(b"Content-Length: %d" % length)
    head = parseRequestHead(b"\r\n".join(lines), limits)
    head.mountPath = mountPath
    address = request.getClientAddress()
    head.client = getattr(address, "host", None) or None
    head.secure = bool(request.isSecure())
    return head


def _withoutUpgrade(value):
    tokens = [t.strip() for t in value.split(b",")]
    return b", ".join(t for t in tokens if t and t.lower() != b"upgrade")


def _bodyLength(request):
    content = request.content
    if content is None:
        return 0
    content.seek(0, 2)
    length = content.tell()
    content.seek(0)
    return length


@implementer(IClientSide)
class WebRequestClient:
    """
    The L{IClientSide} of one twisted.web request: the response goes out
    through the request's own API (its framing is twisted.web's).
    """

    closing = False
    accessLog = None

    def __init__(self, request):
        self.request = request
        self.exchange = None
        self.gone = False
        self._paused = False
        self._feeding = False

    def serve(self, exchange):
        """
        Run C{exchange} for this request: start it, then feed it the body.
        """
        self.exchange = exchange
        self.request.notifyFinish().addErrback(self._lost)
        try:
            exchange.start()
        except Exception:
            exchange.failed(Failure())
        self._feed()

    def _lost(self, reason):
        self.gone = True
        self.exchange.clientGone()

    def _feed(self):
        """
        Hand the body to the exchange, a piece at a time, while it is not
        paused.
        """
        exchange = self.exchange
        content = self.request.content
        if content is None or exchange.body.complete:
            return
        if exchange.responseHead is not None or exchange.state in _OVER:
            return  # answered early, or over: the rest of the body is not read
        self._feeding = True
        try:
            while not self._paused and not self.gone:
                piece = content.read(BODY_PIECE)
                if not piece:
                    exchange.bodyEnd()
                    return
                exchange.bodyData(piece)
        finally:
            self._feeding = False

    def refuse(self, status, reason):
        """
        Answer a request a listener would have refused.
        """
        text = f"{REASONS.get(status, b'Error').decode('ascii')}: {reason}"
        self.respond(status, text, False)
        self.finish()

    # IClientSide

    def sendContinue(self):
        pass  # twisted.web has read the body already

    def sendInterim(self, status, reason, headers):
        pass  # twisted.web's request has no way to send one

    def startResponse(self, status, reason, headers, length, keepAlive, upgrade=None):
        request = self.request
        if self.gone:
            return
        request.setResponseCode(status, reason)
        request.defaultContentType = None
        byName = {}
        for name, value in headers:
            byName.setdefault(name.lower(), (name, []))[1].append(value)
        responseHeaders = request.responseHeaders
        for _, (name, values) in byName.items():
            responseHeaders.setRawHeaders(name, values)
        if b"server" not in byName:
            responseHeaders.removeHeader(b"server")
        if (
            length is not None
            and status not in (204, 304)
            and not 100 <= status < 200
            and request.method != b"HEAD"
        ):
            if b"content-length" not in byName:
                responseHeaders.setRawHeaders(b"Content-Length", [b"%d" % length])

    def writeBody(self, data):
        if not self.gone:
            self.request.write(data)

    def readEnd(self):
        pass

    def finish(self):
        if not self.gone:
            self.request.finish()

    def respond(self, status, text, keepAlive=True, extra=()):
        request = self.request
        body = plainBody(text)
        if self.gone:
            return 0
        request.setResponseCode(status, REASONS.get(status, b"Error"))
        headers = request.responseHeaders
        headers.setRawHeaders(b"Content-Type", [PLAIN])
        headers.setRawHeaders(b"Content-Length", [b"%d" % len(body)])
        for name, value in extra:
            headers.addRawHeader(name, value)
        if request.method == b"HEAD":
            return 0
        request.write(body)
        return len(body)

    def abort(self):
        if not self.gone:
            self.gone = True
            self.request.loseConnection()

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        if self._paused:
            self._paused = False
            if not self._feeding and self.exchange is not None:
                self._feed()

    def stopProducing(self):
        pass

    def pauseWhileFull(self, producer):
        pauser = Pauser(producer)
        if not self.gone:
            self.request.registerProducer(pauser, True)
        return pauser

    def stopPausing(self, token):
        if not self.gone:
            self.request.unregisterProducer()
        if token.paused:
            token.resumeProducing()

    def keepsUp(self):
        return True

    def startTunnel(self, exchange):
        self.abort()  # never asked for: upgrades do not come this way

    def tunnelActive(self):
        pass

    def close(self):
        if not self.gone:
            self.request.finish()
