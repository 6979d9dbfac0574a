"""
A listener's routes at run time: for each request head, the target that
serves it (a balancer's L{HTTPProxy}, the manager, an answer of our
own), who may reach it, and how often it was taken.  The matching rules
are L{playbalancer.routes}'.
"""

from __future__ import annotations

from playbalancer.http.responses import responseText
from playbalancer.routes import (
    Route,
    RouteError,
    RouteTable,
    loosePath,
    matchPath,
    normalHost,
)

BALANCER = "balancer"
MANAGER = "manager"
ANSWER = "answer"

#: Host names remembered with the routes they take, per listener, and the
#: longest remembered (a name and a port: 10,000 of them cost at most
#: about 2.6 MB).
HOST_CACHE = 10000
HOST_KEY = 260


class RouteTarget:
    """
    What one route sends its requests to, with its counters.

    @ivar kind: L{BALANCER}, L{MANAGER} or L{ANSWER}.
    @ivar access: a L{playbalancer.access.ClientAccess} for the route's
        C{allow} list, or L{None} (anyone).
    @ivar hits: requests the route took.
    @ivar denied: of those, the ones its C{allow} list refused.
    """

    kind = None
    #: The largest request body (0: no limit).
    maxBody = 0

    def __init__(self, name, host, path, access=None):
        self.name = name
        self.host = host
        self.path = path
        self.prefix = path.encode("ascii")
        self.access = access
        self.hits = 0
        self.denied = 0
        #: Responses by class: C{responses[2]} counts the 2xx.
        self.responses = [0] * 6

    def admits(self, request, trusted):
        """
        Whether the route's C{allow} list lets C{request}'s client in: a
        bool, or a L{Deferred} firing with one.  Behind a trusted proxy
        (C{trusted}, a L{playbalancer.http.trust.TrustedProxies}), the
        client is the one it names; none named is refused.
        """
        address = request.client
        if address is not None and trusted and trusted.trusts(address):
            address = trusted.originOf(request)
            if address is None:
                return False
        return self.access.check(address)

    def answered(self, status):
        """
        Count a response with C{status} (499: the client left first).
        """
        self.responses[status // 100 if 100 <= status < 600 else 5] += 1

    def counters(self):
        """
        Its counters and what it is, as JSON-ready values (for the manager,
        the metrics and the reports of worker processes).
        """
        return {
            "host": self.host,
            "path": self.path,
            "target": self.describe(),
            "hits": self.hits,
            "denied": self.denied,
            "responses": {f"{c}xx": n for c, n in enumerate(self.responses) if c and n},
        }

    def describe(self):
        """
        What it sends requests to, in words (for C{check} and the manager).
        """
        raise NotImplementedError()


class BalancerTarget(RouteTarget):
    """
    A route to a balancer.

    @param proxy: its L{playbalancer.http.proxy.HTTPProxy} (with the
        route's header settings and timeout).
    @param stripPrefix: whether the route's path is taken off the target
        before it goes to a member (and put back on locations).
    @param maxBody: the largest request body (0: no limit).
    """


    kind = BALANCER

    def __init__(self, name, host, path, proxy, stripPrefix=False, maxBody=0, access=None):
        RouteTarget.__init__(self, name, host, path, access)
        self.proxy = proxy
        proxy.routeTarget = self
        self.stripPrefix = stripPrefix and path != "/"
        self.maxBody = maxBody

    def describe(self):
        strip = f" (without {self.path})" if self.stripPrefix else ""
        return f"balancer {self.proxy.balancer.name}{strip}"

    def unmount(self, request):
        """
        Take the route's path off C{request}'s target (it then reads as
        the members see it), keeping it as the request's mount path.
        """
        prefix = self.prefix
        target = request.target
        if target.startswith(prefix) and target[len(prefix):len(prefix) + 1] in (b"", b"/", b"?"):
            rest = target[len(prefix):]
        else:
            # The route matched a path written another way (/x/../app):
            # the members get it as it was matched.
            rest = matchPath(request.path.decode("latin-1"))[len(self.path):].encode("latin-1")
            query = request.query
            if query:
                rest += b"?" + query
        if not rest or rest[:1] == b"?":
            rest = b"/" + rest
        request.mountPath = prefix
        request.target = rest


class ManagerTarget(RouteTarget):
    """
    The manager, served under the route's path (its body limit is the
    manager's own, L{playbalancer.manager.root.MAX_MANAGER_BODY}).

    @param mount: its L{playbalancer.manager.mount.ManagerMount}.
    """

    kind = MANAGER

    def __init__(self, name, host, path, mount, access=None):
        RouteTarget.__init__(self, name, host, path, access)
        self.mount = mount

    def describe(self):
        return "the manager"

    def headFor(self, request, raw):
        """
        The request head C{raw} as the manager gets it: its request line
        with the path as it was matched (origin-form, dot segments
        resolved), so that twisted.web serves the page the route chose.
        """
        path = matchPath(request.path.decode("latin-1")).encode("latin-1")
        query = request.query
        target = path + b"?" + query if query else path
        end = raw.find(b"\r\n")
        line = b"%s %s %s" % (request.method, target, request.version)
        return line + raw[end:]


class AnswerTarget(RouteTarget):
    """
    An answer of our own: C{status}, or a redirect to C{redirect} (bytes)
    with C{status} as its code.
    """

    kind = ANSWER

    def __init__(self, name, host, path, status, redirect=None, access=None):
        RouteTarget.__init__(self, name, host, path, access)
        self.status = status
        self.redirect = redirect
        #: The body of a plain answer.
        self.text = responseText(status)

    def describe(self):
        if self.name is None:
            return "no route: answer 404"
        if self.redirect is not None:
            return f"redirect {self.status} to {self.redirect.decode('ascii')}"
        return f"answer {self.status}"


class ListenerRoutes:
    """
    A listener's L{RouteTarget}s, matched by host and path.

    @raise RouteError: see L{RouteTable}.
    """

    def __init__(self, targets):
        self.targets = list(targets)
        self.table = RouteTable(Route(t.name, t.host, t.path, t) for t in self.targets)
        self._byHost = {}
        only = self.targets[0] if len(self.targets) == 1 else None
        #: The one target of a listener with a single catch-all route
        #: (C{balancer = ...}): every request goes there, nothing to match.
        self.everything = only if only is not None and only.host is None and only.path == "/" else None

    def carryCounters(self, old):
        """
        Go on with the counters of C{old}'s routes of the same names (on a
        reload): requests still in flight on the old ones count here too.
        """
        before = {target.name: target for target in old.targets}
        for target in self.targets:
            previous = before.get(target.name)
            if previous is not None:
                target.hits += previous.hits
                target.denied += previous.denied
                for status, count in enumerate(previous.responses):
                    target.responses[status] += count
                previous.responses = target.responses

    def inOrder(self):
        """
        The targets in the order they are tried (L{RouteTable.inOrder}).
        """
        return [route.target for route in self.table.inOrder()]

    def counters(self, noRoute=None):
        """
        Each route's L{RouteTarget.counters}, in the order they are tried,
        as C{[(name, counters)]}; C{noRoute}'s last, named C{"-"}.
        """
        listed = [(target.name, target.counters()) for target in self.inOrder()]
        if noRoute is not None:
            listed.append(("-", noRoute.counters()))
        return listed

    def targetFor(self, request):
        """
        The L{RouteTarget} for C{request} (a parsed request head), or
        L{None} when no route takes it.

        @raise RouteError: for a path that climbs above the root.
        """
        everything = self.everything
        if everything is not None:
            return everything  # (the front looks at everything itself first)
        host = request.host
        byHost = self._byHost
        try:
            paths = byHost[host]
        except KeyError:
            paths = self.table.hostRoutes(normalHost(host) if host is not None else None)
            if host is None or len(host) <= HOST_KEY:  # (clients choose them)
                if len(byHost) >= HOST_CACHE:
                    byHost.clear()
                byHost[host] = paths
        if paths is None:
            return None
        path = request.path.decode("latin-1")
        route = paths.match(matchPath(path))
        if "%" in path or ";" in path or "\\" in path:
            if paths.match(loosePath(path)) is not route:
                raise RouteError(
                    "the path reads as another route's to some servers (escaped /, \\ or ;)"
                )
        return route.target if route is not None else None


def noRouteTarget():
    """
    What takes the requests no route takes: a 404 (counted in its
    C{hits}).
    """
    return AnswerTarget(None, None, "/", 404)


def routesOf(proxy, mount=None, maxBody=0):
    """
    The routes of a listener that sends everything to C{proxy} (an
    L{playbalancer.http.proxy.HTTPProxy}), but the path of the manager
    C{mount} (a L{playbalancer.manager.mount.ManagerMount}), if any.

    @param maxBody: the listener's largest request body (0: no limit).
    """
    targets = [BalancerTarget("default", None, "/", proxy, maxBody=maxBody)]
    if mount is not None:
        targets.append(ManagerTarget("manager", None, mount.prefix.decode("ascii"), mount))
    return ListenerRoutes(targets)


__all__ = [
    "noRouteTarget",
    "routesOf",
    "BALANCER",
    "MANAGER",
    "ANSWER",
    "RouteTarget",
    "BalancerTarget",
    "ManagerTarget",
    "AnswerTarget",
    "ListenerRoutes",
    "RouteError",
]
