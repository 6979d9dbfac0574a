"""
The HTTP/1.1 client face of the proxy: a strict HTTP/1.1 server
connection that reads requests (heads through L{playbalancer.http.wire},
bodies through L{playbalancer.http.chunked}), hands each to an
L{Exchange} with a L{ResponseWriter} as its client side, and enforces the
listener's limits and timeouts.
"""

from __future__ import annotations

from zope.interface import implementer

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolNegotiationFactory, ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from playbalancer.http.bodyreader import BodyReader
from playbalancer.http.clienttunnel import ClientTunnel
from playbalancer.http.exchange import Exchange
from playbalancer.http.frontsettings import FrontSettings
from playbalancer.http.headreader import HeadReader
from playbalancer.http.ownanswer import ownAnswer
from playbalancer.http.routing import BALANCER, MANAGER, RouteError, noRouteTarget, routesOf
from playbalancer.http.negotiate import ProtocolChoice
from playbalancer.http.linger import LINGER_BYTES, LINGER_SECONDS, LingeringClose  # noqa: F401 (their old home)
from playbalancer.http.responses import REASONS, plainResponse
from playbalancer.http.responsewriter import ResponseWriter
from playbalancer.http.trust import TrustedProxies
from playbalancer.http.wire import HTTPError, Limits  # noqa: F401 (Limits: imported from here)
from playbalancer._net.rawsocket import SEND_LIMIT, canHalfClose, closeWhenSent, forThroughput  # noqa: F401
from playbalancer._net.readsize import followReads
from playbalancer._net.tlslisten import HTTP_PROTOCOLS

# FrontConnection's states (see its docstring).
_HEAD, _BODY, _WAIT, _CLOSED, _HANDED_OVER, _ADMIT = range(6)

#: Pipelined bytes read ahead of the current response before the client is
#: paused.
PIPELINE_LIMIT = 65536


class FrontConnection(Protocol):
    """
    One client connection.  Its C{state} is one of:
      - C{_HEAD}: reading a request head (L{HeadReader});
      - C{_ADMIT}: a request head was read; its route's C{allow} list is
        being checked (a DNS lookup), and reading is paused;
      - C{_BODY}: reading its body (L{BodyReader}), the exchange under way;
      - C{_WAIT}: the request was read; its response is under way;
      - C{_HANDED_OVER}: another protocol has the connection: a
        L{ClientTunnel} once the member switched protocols, the manager on
        the same listener, or a L{LingeringClose} after a refusal;
      - C{_CLOSED}: closing or closed; what comes is dropped.
    """

    def __init__(self, factory):
        self.factory = factory
        self.settings = factory.settings
        self.state = _HEAD
        self.buffer = b""
        self.exchange = None
        self.deadline = None
        self.closing = False
        #: No request answered yet: its first may be on its way.
        self.fresh = True
        self.client = None
        self.secure = False
        # (Each route has its own body limit: see _dispatch.)
        self._heads = HeadReader(self.settings.limits, 0)
        self._body = None
        self._processing = False
        self._paused = False
        self._handedOver = None
        self.writer = None

    def connectionMade(self):
        factory = self.factory
        transport = self.transport
        forThroughput(transport)
        self.secure = ISSLTransport.providedBy(transport)
        self.writer = ResponseWriter(
            self,
            transport,
            factory.accessLog,
            factory.bufferSize,
            factory.sweeper,
            self.settings.sendTimeout,
        )
        factory.connections.add(self)
        factory.accepted += 1
        factory.sweeper.watch(self)
        self.deadline = factory.sweeper.now + self.settings.headerTimeout

    # Reading

    def dataReceived(self, data):
        followReads(self.transport, len(data), self._memberKeepsUp)
        state = self.state
        if state == _BODY and not self.buffer:
            self._feedBody(data)
            if self.state == _BODY:
                return
        elif state == _HANDED_OVER:
            self._handedOver.dataReceived(data)
            return
        elif state == _CLOSED:
            return
        else:
            self.buffer = self.buffer + data if self.buffer else data
        if not self._processing:
            self._process()

    def _memberKeepsUp(self):
        exchange = self.exchange
        return exchange is None or exchange.memberKeepsUp()

    def _process(self):
        self._processing = True
        try:
            while True:
                state = self.state
                if state == _HEAD:
                    if not self._readHead():
                        return
                elif state == _BODY:
                    if not self.buffer:
                        return
                    data, self.buffer = self.buffer, b""
                    self._feedBody(data)
                    if self.state == _BODY:
                        return
                else:
                    if state == _WAIT and len(self.buffer) > PIPELINE_LIMIT:
                        self.pauseReading()
                    return
        finally:
            self._processing = False

    def _readHead(self):
        """
        Read a request head from the buffer and start its exchange.

        @return: whether to go on processing.
        """
        buffer = self.buffer
        if not buffer:
            return False
        if buffer[:1] in (b"\r", b"\n"):
            buffer = self.buffer = buffer.lstrip(b"\r\n")
            if not buffer:
                return False
        reader = self._heads
        started = reader.started
        try:
            found = reader.read(buffer)
        except HTTPError as e:
            self.refuse(e)
            return False
        if found is None:
            if not started:
                self.deadline = self.factory.sweeper.now + self.settings.headerTimeout
            return False
        request, raw, self.buffer = found
        if self.client is None:
            # Asked only now: a PROXY protocol wrapper knows the real peer
            # once its header was read.
            self.client = getattr(self.transport.getPeer(), "host", None) or ""
        request.client = self.client or None  # (no address: a UNIX socket)
        request.secure = self.secure
        factory = self.factory
        routes = factory.routes
        target = routes.everything
        if target is None:
            try:
                target = routes.targetFor(request)
            except RouteError as e:
                self.refuse(HTTPError(400, str(e)))
                return False
            if target is None:
                target = factory.noRoute
        target.hits += 1
        access = target.access
        if access is None:
            return self._dispatch(target, request, raw)
        verdict = target.admits(request, factory.trustedProxies)
        if isinstance(verdict, Deferred):
            known = []

            def keep(allowed):
                known.append(allowed)
                return allowed

            verdict.addCallback(keep)
            if not known:
                self.state = _ADMIT
                self.deadline = None
                self.pauseReading()
                verdict.addCallback(self._admitted, target, request, raw)
                return False
            verdict = known[0]
        if not verdict:
            self._deny(target, request)
            return False
        return self._dispatch(target, request, raw)

    def _admitted(self, allowed, target, request, raw):
        """
        The check of a route's C{allow} list is done.
        """
        if self.state != _ADMIT:
            return
        self.state = _HEAD
        self.resumeReading()
        if not allowed:
            self._deny(target, request)
        elif self._dispatch(target, request, raw) and not self._processing:
            self._process()

    def _deny(self, target, request):
        target.denied += 1
        self.refuse(HTTPError(403, "this route is not open to your address"), request, target)

    def _dispatch(self, target, request, raw):
        """
        Start serving C{request} by C{target} (a
        L{playbalancer.http.routing.RouteTarget}).

        @return: whether to go on processing.
        """
        kind = target.kind
        if kind is MANAGER:
            self._mount(target.mount, target.headFor(request, raw))
            return False
        maxBody = target.maxBody
        if maxBody and request.length and request.length > maxBody:
            self.refuse(HTTPError(413, "the body is too big"), request, target)
            return False
        writer = self.writer
        writer.begin(request)
        if kind is BALANCER:
            if target.stripPrefix:
                target.unmount(request)
            exchange = Exchange(target.proxy, writer, request)
        else:
            exchange = ownAnswer(target, writer, request, self.factory.sweeper.clock)
        self.exchange = exchange
        length = request.length
        if length == 0:
            self.state = _WAIT
            self.deadline = None
        else:
            self.state = _BODY
            now = self.factory.sweeper.now
            self._body = BodyReader(length, self.settings, exchange.bodyData, now, maxBody)
            self.deadline = self._body.deadline(now)
        try:
            exchange.start()
        except Exception:
            exchange.failed(Failure())
        return True

    def _feedBody(self, data):
        try:
            left = self._body.feed(data)
        except HTTPError as e:
            exchange = self.exchange
            if exchange is not None and exchange.responseHead is not None:
                self.abort()
            else:
                if exchange is not None:
                    exchange.clientGone()
                self.refuse(e)
            return
        if left is None:
            # (Reading may have just paused, the member being slow: then
            # the body's clock stopped.)
            self.deadline = None if self._paused else self._body.deadline(self.factory.sweeper.now)
            return
        self._body = None
        self.buffer = left + self.buffer if self.buffer else left
        exchange = self.exchange
        if exchange is None:
            # Its response went out already; the connection closes.
            self.close()
            return
        self.state = _WAIT
        self.deadline = None
        exchange.bodyEnd()

    # Flow control

    def pauseReading(self):
        if not self._paused:
            self._paused = True
            self.transport.pauseProducing()
            if self.state == _BODY:
                self._body.paused(self.factory.sweeper.now)
                self.deadline = None

    def resumeReading(self):
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()
            if self.state == _BODY:
                now = self.factory.sweeper.now
                self._body.resumed(now)
                self.deadline = self._body.deadline(now)

    # Answers

    def responseDone(self, keepAlive):
        """
        The current exchange wrote its whole response.
        """
        self.exchange = None
        self.fresh = False
        if self.state == _CLOSED:
            return
        if not keepAlive or self.closing or self.state == _BODY:
            self.close()
            return
        self.state = _HEAD
        self.deadline = self.factory.sweeper.now + self.settings.idleTimeout
        self.resumeReading()
        if self.buffer and not self._processing:
            self._process()

    def close(self):
        """
        Close once what was written has gone out (L{closeWhenSent}).
        """
        self.state = _CLOSED
        self.deadline = None
        closeWhenSent(self.transport)
        self.writer.transportClosing()

    def refuse(self, error, request=None, target=None):
        """
        Answer a request we will not pass on, and close.

        @param request: its head, when it was read whole (then its access
            log line is a request's, naming the route C{target}).
        """
        if self.state == _CLOSED:
            return
        self.factory.refused += 1
        exchange, self.exchange = self.exchange, None
        log = self.factory.accessLog
        if exchange is not None:
            exchange.clientGone()
        elif request is not None:
            target.answered(error.status)
            if log is not None:
                log.request(request, error.status, 0, None, None, None, 0.0, 0, target.name)
        elif log is not None:
            client = self.client or getattr(self.transport.getPeer(), "host", None)
            log.refused(client, error.status, error.reason)
        self.transport.write(plainResponse(error.status, _text(error), keepAlive=False))
        if not canHalfClose(self.transport):
            self.close()
            return
        self.transport.loseWriteConnection()
        self.buffer = b""
        self._handOver(LingeringClose(self.transport, self.factory.sweeper))

    def abort(self):
        """
        Close the connection short of a complete response: what was sent
        goes out, and cannot look complete (short of its Content-Length, or
        without its last chunk).
        """
        self.close()

    def expired(self):
        """
        A timeout passed (see L{FrontSettings}).
        """
        self.deadline = None
        state = self.state
        if state == _HEAD:
            if self.buffer or self._heads.started:
                self.refuse(HTTPError(408, "the request head took too long"))
            else:
                self.close()
        elif state == _BODY:
            exchange = self.exchange
            if exchange is not None:
                exchange.clientTimedOut()
            else:
                self.refuse(HTTPError(408, "the request body stopped"))

    def startTunnel(self, exchange):
        """
        From now on, bytes from the client go to the member as they are.

        @return: the L{ClientTunnel} that has the connection.
        """
        tunnel = ClientTunnel(
            exchange, self.factory.sweeper, self.settings.tunnelIdleTimeout, self.close
        )
        self._handOver(tunnel)
        buffered, self.buffer = self.buffer, b""
        if buffered:
            tunnel.dataReceived(buffered)
        return tunnel

    def closeGracefully(self, lingerIdle=False):
        """
        Close once the current response is done; at once if idle between
        requests, unless C{lingerIdle}.  A new connection that has sent
        nothing yet, and with C{lingerIdle} an idle one too, gets its next
        request answered (with C{Connection: close}) or its timeout: its
        client may be sending that request already.
        """
        self.closing = True
        idle = self.state == _HEAD and self.exchange is None and not self.buffer
        if idle and not self.fresh and not lingerIdle:
            self.close()

    # Handing over to another protocol

    def _handOver(self, protocol):
        """
        From now on, C{protocol} gets what arrives, and the connection's end.
        """
        self.state = _HANDED_OVER
        self.deadline = None
        self.factory.sweeper.unwatch(self)
        self._handedOver = protocol

    def _mount(self, mount, raw):
        """
        The manager on the same listener takes the connection, starting
        with the request head C{raw}.
        """
        channel = mount.buildProtocol(self.transport.getPeer())
        self._handOver(channel)
        channel.makeConnection(self.transport)
        rest, self.buffer = self.buffer, b""
        channel.dataReceived(raw + rest)

    def connectionLost(self, reason):
        factory = self.factory
        factory.connections.discard(self)
        factory.sweeper.unwatch(self)
        self.writer.connectionLost()
        self.state = _CLOSED
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.clientGone()
        if self._handedOver is not None:
            self._handedOver.connectionLost(reason)


def _text(error):
    phrase = REASONS.get(error.status, b"Error").decode("ascii")
    return f"{phrase}: {error.reason}"


class Rejected(Protocol):
    """
    A connection over the listener's limit: closed at once.
    """

    def connectionMade(self):
        self.transport.abortConnection()


@implementer(IProtocolNegotiationFactory)
class HTTPFrontFactory(Factory):
    """
    Builds L{FrontConnection}s for one listener.

    Give either C{proxy} (and C{mount}), for a listener that sends every
    request to one balancer, or C{routes} with C{sweeper}, C{bufferSize}
    and C{trustedProxies}.

    @param proxy: the L{playbalancer.http.proxy.HTTPProxy} requests go to.
    @param settings: the listener's L{FrontSettings}.
    @param mount: optional L{playbalancer.manager.mount.ManagerMount}:
        requests under its path go to it, not to the proxy.
    @param routes: the listener's
        L{playbalancer.http.routing.ListenerRoutes}.
    @param bufferSize: bytes that may wait for a slow client before its
        member is paused.
    @param trustedProxies: a L{playbalancer.http.trust.TrustedProxies},
        whose clients the C{allow} lists check.
    """

    noisy = False

    def __init__(
        self,
        proxy=None,
        settings=FrontSettings(),
        mount=None,
        routes=None,
        sweeper=None,
        bufferSize=None,
        trustedProxies=None,
    ):
        if routes is None:
            routes = routesOf(proxy, mount, settings.maxBody)
        #: The one balancer's proxy, when given one (L{None} with routes).
        self.proxy = proxy
        self.routes = routes
        self.settings = settings
        self.sweeper = sweeper if sweeper is not None else proxy.sweeper
        self.bufferSize = bufferSize if bufferSize is not None else proxy.bufferSize
        if trustedProxies is None:
            trustedProxies = proxy.trustedProxies if proxy is not None else TrustedProxies()
        self.trustedProxies = trustedProxies
        #: What answers the requests no route takes (a 404).
        self.noRoute = noRouteTarget()
        self.noRoute.maxBody = settings.maxBody
        self.connections = set()
        #: An L{playbalancer.observe.accesslog.AccessLog}, or L{None}.
        self.accessLog = None
        self.accepted = 0
        self.rejected = 0
        self.refused = 0

    @property
    def openConnections(self):
        return len(self.connections)

    def routeCounters(self):
        """
        The counters of its routes (L{ListenerRoutes.counters}), the
        requests no route took last.
        """
        return self.routes.counters(self.noRoute)

    def acceptableProtocols(self):
        """
        What a TLS client may negotiate by ALPN: the listener's protocols
        (HTTP/2 as C{h2}, HTTP/1.1), in its order.
        """
        protocols = self.settings.protocols
        offered = [p.encode("ascii") for p in protocols if p in ("h2", "http/1.1")]
        return offered or list(HTTP_PROTOCOLS)

    def buildProtocol(self, addr):
        settings = self.settings
        limit = settings.maxConnections
        if limit and len(self.connections) >= limit:
            self.rejected += 1
            return Rejected()
        if settings.speaksHTTP2:
            return ProtocolChoice(self)
        return FrontConnection(self)

    def closeGracefully(self, clock, grace, lingerIdle=False):
        """
        Close every client connection without cutting off a request: idle
        ones at once, busy ones once their response is done (with
        C{Connection: close} on responses that have not started).  After
        C{grace} seconds the rest are cut.

        @param lingerIdle: idle keep-alive connections too get their next
            request answered before they close (when another process takes
            over: closing one as its client reuses it would fail that
            request).

        @return: a L{Deferred} that fires when all are closed.
        """
        from playbalancer.graceful import untilClosed

        for connection in list(self.connections):
            connection.closeGracefully(lingerIdle)
        return untilClosed(self.connections, clock, grace)
