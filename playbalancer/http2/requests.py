"""
What a new HTTP/2 stream's request becomes: rebuilt and checked
(L{playbalancer.http2.translate}), routed by the listener's routes,
admitted by the route's allow list, then served by an exchange (or the
route's own answer), or refused on its stream with the status an
HTTP/1.1 client would get.
"""

from __future__ import annotations

from h2.errors import ErrorCodes

from twisted.internet.defer import Deferred

from playbalancer.http.exchange import Exchange
from playbalancer.http.ownanswer import ownAnswer
from playbalancer.http.responses import REASONS
from playbalancer.http.routing import BALANCER, MANAGER, RouteError
from playbalancer.http.wire import HTTPError
from playbalancer.http2.stream import H2Stream
from playbalancer.http2.translate import requestHeadOf


class StreamRequests:
    """
    Starts the requests of one L{playbalancer.http2.connection.H2FrontConnection}.
    """

    def __init__(self, connection):
        self.connection = connection
        self.factory = connection.factory
        self.settings = connection.settings

    def start(self, streamId, fields, ended):
        """
        The request head C{fields} opened stream C{streamId} (C{ended}: no
        body follows).
        """
        connection = self.connection
        factory = self.factory
        settings = self.settings
        try:
            request = requestHeadOf(fields, ended, settings.limits)
        except HTTPError as e:
            self.refuse(streamId, e)
            return
        request.client = connection.client or None
        request.secure = connection.secure
        stream = H2Stream(
            connection, streamId, request, factory.accessLog, factory.bufferSize, settings
        )
        connection.streams[streamId] = stream
        routes = factory.routes
        target = routes.everything
        if target is None:
            try:
                target = routes.targetFor(request)
            except RouteError as e:
                self.refuse(streamId, HTTPError(400, str(e)), stream)
                return
            if target is None:
                target = factory.noRoute
        target.hits += 1
        if target.access is None:
            self._dispatch(stream, target)
            return
        verdict = target.admits(request, factory.trustedProxies)
        if isinstance(verdict, Deferred):
            verdict.addCallback(self._admitted, stream, target)
            return
        self._admitted(verdict, stream, target)

    def _admitted(self, allowed, stream, target):
        connection = self.connection
        if stream.over or connection.ended:
            return
        if not allowed:
            target.denied += 1
            self.refuse(
                stream.streamId,
                HTTPError(403, "this route is not open to your address"),
                stream,
                target,
            )
        else:
            self._dispatch(stream, target)
        connection.flush()

    def _dispatch(self, stream, target):
        request = stream.request
        kind = target.kind
        if kind is MANAGER:
            # The manager is a twisted.web site, spoken to over HTTP/1.1:
            # clients retry this request on an HTTP/1.1 connection.
            stream.reset(ErrorCodes.HTTP_1_1_REQUIRED)
            return
        maxBody = target.maxBody
        if maxBody and request.length and request.length > maxBody:
            self.refuse(stream.streamId, HTTPError(413, "the body is too big"), stream, target)
            return
        stream.maxBody = maxBody
        if kind is BALANCER:
            if target.stripPrefix:
                target.unmount(request)
            exchange = Exchange(target.proxy, stream, request)
        else:
            exchange = ownAnswer(target, stream, request, self.factory.sweeper.clock)
        stream.serve(exchange)

    def refuse(self, streamId, error, stream=None, target=None):
        """
        Answer a request we do not pass on (malformed, too large, not
        allowed) on its stream; the connection goes on.
        """
        connection = self.connection
        factory = self.factory
        factory.refused += 1
        if not connection.spendOnRefusal():
            if stream is not None:
                stream.clientReset()
            return
        log = factory.accessLog
        if stream is None:
            stream = H2Stream(connection, streamId, None, log, factory.bufferSize, self.settings)
            connection.streams[streamId] = stream
        if target is not None:
            target.answered(error.status)
            if log is not None:
                log.request(stream.request, error.status, 0, None, None, None, 0.0, 0, target.name)
        elif log is not None:
            log.refused(connection.client, error.status, error.reason)
        stream.bodyExpected = True  # (whatever it sends is not wanted)
        phrase = REASONS.get(error.status, b"Error").decode("ascii")
        stream.respond(error.status, f"{phrase}: {error.reason}", False)
        stream.finish()
