"""
The manager's root resource: every manager request passes here first.
"""

from __future__ import annotations

import io
from functools import partial

from twisted.web import resource, server, static

from playbalancer.manager.api import Answer, ApiResource, jsonError
from playbalancer.manager.guard import SECURITY_HEADERS, Refusal
from playbalancer.manager.page import STATIC_DIR, ActionsResource, PageResource
from playbalancer.manager.restarts import RollingRestarts


class ManagerRoot(resource.Resource):
    """
    Every manager request passes here first: the access policy, then the
    security headers, then the page, the API, the form actions or the
    static files.

    @param balancers: the balancers by name.
    @param policy: an L{playbalancer.manager.guard.AccessPolicy}.
    @param clock: provides C{seconds()}.
    @param metrics: the resource for C{/metrics}, if any (see
        L{playbalancer.observe.metrics.MetricsPage}).
    """

    def __init__(self, balancers, policy, clock, metrics=None):
        resource.Resource.__init__(self)
        self.balancers = balancers
        self.policy = policy
        self.clock = clock
        #: C{[(name, front factory)]} of the listeners (filled in once they
        #: are built), whose routes C{/api/status} shows.
        self.listeners = []
        #: Gives the listener configs running now, whose certificates the
        #: page and C{/api/status} show (set once they are known).
        self.listenerConfigs = lambda: ()
        #: The recent history C{/api/history} serves (a
        #: L{playbalancer.manager.history.History}, started by whoever
        #: runs the manager), or L{None}.
        self.history = None
        #: The rolling restarts reported to C{/api/rolling}.
        self.restarts = RollingRestarts(clock)
        #: Starts the rolling restarts the manager runs itself (a
        #: L{playbalancer.manager.rollout.Rollouts}, set by whoever runs the
        #: manager with a reactor), or L{None}.
        self.rollouts = None
        self.api = ApiResource(self)
        self.pages = {
            b"": PageResource(self),
            b"api": self.api,
            b"actions": ActionsResource(self),
            b"static": static.File(STATIC_DIR),
        }
        self.pages[b"static"].directoryListing = lambda: Answer(404, "not found")
        if metrics is not None:
            self.pages[b"metrics"] = metrics

    def _guard(self, request):
        for name, value in SECURITY_HEADERS:
            request.setHeader(name, value)
        self._policyOf(request).check(request)
        if getattr(request, "bodyTooLarge", False):
            raise Refusal(413, f"the request body is over {MAX_MANAGER_BODY} bytes")
        upgrader = getattr(self, "upgrader", None)
        if request.method not in (b"GET", b"HEAD") and upgrader is not None and upgrader.underway:
            # A change now would not reach the new process.
            raise Refusal(
                503,
                "an upgrade is under way: try again in a moment, on the new process",
                [(b"retry-after", b"1")],
            )

    def getChildWithDefault(self, path, request):
        try:
            self._guard(request)
        except Refusal as refusal:
            return Answer(refusal.code, refusal.message, refusal.headers)
        child = self.pages.get(path)
        if child is None:
            return Answer(404, "not found")
        return child

    def render(self, request):
        # The manager mounted under a path, asked for without the slash.
        try:
            self._guard(request)
        except Refusal as refusal:
            return jsonError(request, refusal.code, refusal.message, refusal.headers)
        request.redirect(request.prePathURL() + b"/")
        return b""

    def rollingStatus(self):
        """
        What C{GET api/rolling} answers (see L{RollingRestarts.status}).
        """
        rollouts = self.rollouts
        configured = rollouts.configured if rollouts is not None else (lambda name: False)
        return self.restarts.status(list(self.balancers), configured)

    def who(self, request):
        return self._policyOf(request).who(request)

    def _policyOf(self, request):
        # The manager behind a route has that route's policy (see
        # AccessPolicy.forRoute), carried by its requests.
        return getattr(request, "policy", None) or self.policy


class MetricsRoot(resource.Resource):
    """
    The root of a listener that serves only C{/metrics}, behind the same
    access policy as the manager.
    """

    def __init__(self, policy, metrics):
        resource.Resource.__init__(self)
        self.policy = policy
        self.metrics = metrics

    def getChildWithDefault(self, path, request):
        for name, value in SECURITY_HEADERS:
            request.setHeader(name, value)
        try:
            self.policy.check(request)
        except Refusal as refusal:
            return Answer(refusal.code, refusal.message, refusal.headers)
        if path == b"metrics":
            return self.metrics
        return Answer(404, "not found")


class _DiscardedBody(io.BytesIO):
    """
    A request body that is read from the connection and dropped.
    """

    def write(self, data):
        return len(data)


#: The largest manager request body kept (its API takes small JSON and
#: form bodies); beyond it the request gets 413.
MAX_MANAGER_BODY = 1 << 20


class GuardedRequest(server.Request):
    """
    A manager request whose body is kept only if its client passes the
    address allow-list, in memory, and up to L{MAX_MANAGER_BODY} bytes.
    twisted.web reads a whole body (into memory, or a temporary file from
    100 KB) before any resource sees the request: a client that may not use
    the manager must not be able to make it store anything, and one that
    may, no more than the manager needs.

    @param policy: the L{playbalancer.manager.guard.AccessPolicy}.
    @ivar bodyTooLarge: whether the body went over the limit (and was
        dropped).
    """

    bodyTooLarge = False

    def __init__(self, *args, policy, **kwargs):
        server.Request.__init__(self, *args, **kwargs)
        self.policy = policy
        self._bodySize = 0

    def gotLength(self, length):
        if not self.policy.allowsAddress(self.getClientAddress()):
            self.content = _DiscardedBody()
        elif length is not None and length > MAX_MANAGER_BODY:
            self.bodyTooLarge = True
            self.content = _DiscardedBody()
        else:
            self.content = io.BytesIO()

    def handleContentChunk(self, data):
        self._bodySize += len(data)
        if self._bodySize > MAX_MANAGER_BODY and not self.bodyTooLarge:
            self.bodyTooLarge = True
            self.content = _DiscardedBody()
        self.content.write(data)


def managerSite(root, policy, timeout=60):
    """
    A twisted.web site for the manager's C{root} resource: requests are
    L{GuardedRequest}s, and no access log line is formatted.
    """
    site = server.Site(root, timeout=timeout)
    site.requestFactory = partial(GuardedRequest, policy=policy)
    site.log = lambda request: None
    return site
