"""
The answers a route gives itself, without a member: a plain status
(C{status = 404}) or a redirect (C{redirect = "https://..."}), and the
404 for a request no route takes.
"""

from __future__ import annotations

from twisted.logger import Logger

from playbalancer.routes import matchPath

_log = Logger()



class OwnAnswer:
    """
    Stands where an L{playbalancer.http.exchange.Exchange} would for one
    request (the front calls the same methods): reads and drops the
    request body, then answers.  A client waiting for C{100 Continue}
    gets the answer at once instead, and the connection closes after it.

    @param client: the L{playbalancer.interfaces.IClientSide}.
    @param status: the status of the answer.
    @param text: its plain-text body.
    @param extra: extra header C{(name, value)} pairs (a I{Location}).
    @param route: the L{playbalancer.http.routing.RouteTarget} that
        answers (its counters, its name in the access log), or L{None}.
    """

    def __init__(self, client, request, clock, status, text, extra=(), route=None):
        self.client = client
        self.request = request
        self.clock = clock
        self.status = status
        self.text = text
        self.extra = extra
        self.route = route
        self.arrived = clock.seconds()
        self.done = False

    def start(self):
        request = self.request
        if request.length == 0:
            self._answer(keepAlive=True)
        elif request.expectContinue:
            self._answer(keepAlive=False)

    def bodyData(self, data):
        pass

    def bodyEnd(self):
        self._answer(keepAlive=True)

    def clientData(self, data):
        pass

    def memberKeepsUp(self):
        return True

    def clientGone(self):
        if not self.done:
            self.done = True
            self._record(499, 0)

    def clientTimedOut(self):
        if not self.done:
            self.status, self.text, self.extra = 408, "Request Timeout: the request body stopped", ()
            self._answer(keepAlive=False)

    def failed(self, failure):
        _log.failure("error while answering", failure)
        if not self.done:
            self.status, self.text, self.extra = 500, "Internal Server Error", ()
            self._answer(keepAlive=False)

    def _answer(self, keepAlive):
        if self.done:
            return
        self.done = True
        sent = self.client.respond(self.status, self.text, keepAlive, self.extra)
        self._record(self.status, sent)
        self.client.finish()

    def _record(self, status, sent):
        route = self.route
        if route is not None:
            route.answered(status)
        log = self.client.accessLog
        if log is not None:
            log.request(
                self.request,
                status,
                sent,
                None,
                None,
                None,
                self.clock.seconds() - self.arrived,
                0,
                route.name if route is not None else None,
            )


def redirectLocation(base, prefix, request):
    """
    Where a redirect route sends C{request}: its URL C{base} followed by
    what the request's path has after the route's C{prefix}, and its query
    (Apache's C{Redirect /old https://new/}: C{/old/a?b} goes to
    C{https://new/a?b}).  The rest is taken from the path as it was
    matched (L{matchPath}), so it always starts with C{/}: whatever the
    client writes cannot change the host of C{base}.

    @param base: the route's C{redirect}, as bytes.
    @param prefix: the route's path, as bytes (C{b"/"} for all).
    """
    target = request.target
    if target == b"*":
        return base
    path = matchPath(request.path.decode("latin-1")).encode("latin-1")
    rest = path[len(prefix):] if prefix != b"/" else path
    if rest:
        base = base.rstrip(b"/") + rest if b"?" not in base else base
    query = request.query
    if query:
        base += (b"&" if b"?" in base else b"?") + query
    return base


def ownAnswer(target, client, request, clock):
    """
    The L{OwnAnswer} of an answer route C{target} (a
    L{playbalancer.http.routing.AnswerTarget}) to C{request}.
    """
    extra = ()
    if target.redirect is not None:
        location = redirectLocation(target.redirect, target.prefix, request)
        extra = [(b"Location", location)]
        text = "Redirecting to " + location.decode("latin-1")
    elif target.status == 404 and target.name is None:
        text = "Not Found: no route for this host and path"
    else:
        text = target.text
    return OwnAnswer(client, request, clock, target.status, text, extra, target)
