"""
The front end's L{Site}: twisted.web, minus the per-request log line when
no access log is wanted, plus a request body size limit enforced while the
body arrives.
"""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.web import http, resource, server

_TOO_LARGE = (
    b"HTTP/1.1 413 Content Too Large\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 39\r\n"
    b"Connection: close\r\n"
    b"\r\n"
    b"Content Too Large: the body is too big\n"
)


class ProxyRequest(server.Request):
    """
    A request that refuses a body over the site's C{maxBody} as soon as it
    is known to be too large: from C{Content-Length}, or while a chunked body
    arrives.  Nothing of such a request is passed on.
    """

    _bodySize = 0
    _refused = False

    def gotLength(self, length):
        limit = self.channel.site.maxBody
        if limit and length is not None and length > limit:
            self._refuse()
            return
        server.Request.gotLength(self, length)

    def handleContentChunk(self, data):
        if self._refused:
            return
        limit = self.channel.site.maxBody
        if limit:
            self._bodySize += len(data)
            if self._bodySize > limit:
                self._refuse()
                return
        server.Request.handleContentChunk(self, data)

    def requestReceived(self, command, path, version):
        if self._refused:
            return
        server.Request.requestReceived(self, command, path, version)

    def processingFailed(self, reason):
        """
        A bug of ours while handling the request: log it, answer a short
        plain-text 500 (never a traceback) if nothing was sent yet, else
        close the connection.
        """
        self._log.failure("error while proxying {uri}", failure=reason, uri=self.uri)
        if self.startedWriting:
            self.channel.loseConnection()
            return reason
        body = b"Internal Server Error\n"
        self.setResponseCode(500)
        self.responseHeaders.setRawHeaders(b"content-type", [b"text/plain; charset=utf-8"])
        self.responseHeaders.setRawHeaders(b"content-length", [b"%d" % len(body)])
        self.write(body)
        self.finish()
        return reason

    def _refuse(self):
        self._refused = True
        self.content = None
        # No "100 Continue" after the refusal: the client must not send.
        self.requestHeaders.removeHeader(b"expect")
        channel = self.channel
        channel.transport.write(_TOO_LARGE)
        channel.loseConnection()


class _TrackedChannel(http.HTTPChannel):
    """
    An HTTP/1.1 channel its site knows about, so that the site can close
    them all gracefully when the balancer stops.
    """

    def connectionMade(self):
        http.HTTPChannel.connectionMade(self)
        self.site.channels.add(self)

    def connectionLost(self, reason):
        self.site.channels.discard(self)
        http.HTTPChannel.connectionLost(self, reason)


class ProxySite(server.Site):
    """
    A L{Site} for the proxy.

    @param maxBody: the largest request body accepted, in bytes (0: no
        limit).
    @param accessLog: whether to write twisted.web's access log lines.
    @param timeout: seconds an idle client connection is kept open.
    """

    requestFactory = ProxyRequest
    protocol = _TrackedChannel

    def __init__(self, resource, maxBody=0, accessLog=False, timeout=75, **kwargs):
        server.Site.__init__(self, resource, timeout=timeout, **kwargs)
        self.maxBody = maxBody
        self._accessLog = accessLog
        self.channels = set()

    def closeGracefully(self, clock, grace):
        """
        Close every client connection without cutting off a request: idle
        ones at once, busy ones once their response is done, with
        C{Connection: close} on responses that have not started.  After
        C{grace} seconds the rest are cut.

        @return: a L{Deferred} that fires when all are closed.
        """
        for channel in list(self.channels):
            channel.persistent = False
            if not channel.requests:
                channel.loseConnection()
                continue
            for request in channel.requests:
                if not request.startedWriting:
                    request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        d = Deferred()
        deadline = clock.seconds() + grace

        def check():
            if not self.channels:
                d.callback(None)
            elif clock.seconds() >= deadline:
                for channel in list(self.channels):
                    channel.transport.abortConnection()
                d.callback(None)
            else:
                clock.callLater(0.05, check)

        check()
        return d

    def log(self, request):
        if self._accessLog:
            server.Site.log(self, request)


class ManagerMount(resource.Resource):
    """
    A front listener's root when the manager is also served under a path
    of it (like Apache's C{ProxyPass /balancer-manager !}): requests under
    that path go to the manager and are never proxied; all others go to the
    proxy, unchanged.

    @param path: the manager's path, e.g. C{"/balancer-manager"}.
    """

    def __init__(self, proxy, path, manager):
        resource.Resource.__init__(self)
        self.proxy = proxy
        self.manager = manager
        self.segments = [s.encode("ascii") for s in path.strip("/").split("/")]

    def getChildWithDefault(self, path, request):
        rest = len(self.segments) - 1
        if [path] + request.postpath[:rest] == self.segments:
            for _ in range(rest):
                request.prepath.append(request.postpath.pop(0))
            return self.manager
        # Not ours: give the proxy the whole path, as if it were the root.
        request.postpath.insert(0, request.prepath.pop())
        return self.proxy

    def render(self, request):
        return self.proxy.render(request)


class GracefulService(StreamServerEndpointService):
    """
    Listens for a L{ProxySite}; when stopped, stops listening and then
    closes its client connections gracefully (see
    L{ProxySite.closeGracefully}).
    """

    def __init__(self, endpoint, site, clock, grace=10.0):
        StreamServerEndpointService.__init__(self, endpoint, site)
        self._raiseSynchronously = True
        self.clock = clock
        self.grace = grace

    def stopService(self):
        d = maybeDeferred(StreamServerEndpointService.stopService, self)
        d.addCallback(lambda _: self.factory.closeGracefully(self.clock, self.grace))
        return d
