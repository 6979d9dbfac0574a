"""
Which route of a listener a request takes, by its host and its path, with
the precedence nginx users know: the most specific host first (an exact
name, then the longest C{*.} wildcard, then the routes without a host),
then, among that host's routes, the longest path prefix, matched on whole
segments (C{/app} takes C{/app}, C{/app/} and C{/app/x}, never
C{/application}).  A request whose host's routes have no prefix for its
path matches nothing (as in nginx, it does not fall through to another
host's routes).

Lookups cost a few dictionary probes, whatever the number of routes: one
per label of the host for the wildcards, and one per segment of the path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

_ANY_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED_ESCAPE = re.compile(r"%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])")


class RouteError(ValueError):
    """
    A route that cannot be used: its message says which and why.
    """


@dataclass(frozen=True)
class Route:
    """
    One route: where requests for C{host} (L{None}: any host) under
    C{path} go.

    @ivar name: what logs, metrics and the manager call it.
    @ivar target: what serves its requests (for the listener to interpret:
        a balancer, the manager, an answer of our own).
    """

    name: str
    host: Optional[str]
    path: str
    target: Any = None


def normalHost(value):
    """
    The host a I{Host} header or an absolute-form authority names, as
    routes match it: lower case, without its port or a final dot; an IPv6
    literal keeps its brackets.  L{None} for an empty one.

    @param value: C{bytes} or C{str}.
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        host = value[: end + 1] if end != -1 else value
    else:
        host = value.rsplit(":", 1)[0] if ":" in value else value
        host = host.rstrip(".")
    return host or None


def normalPrefix(path):
    """
    A route's path prefix as matched: starting with C{/}, without a final
    C{/} (C{/app/} and C{/app} are the same prefix).

    @raise RouteError: for a path that does not start with C{/}.
    """
    if not path.startswith("/"):
        raise RouteError(f"path {path!r} must start with /")
    stripped = path.rstrip("/")
    return stripped or "/"


def checkHost(host):
    """
    A route's host as matched (lower case, no final dot), checked.
    """
    if host is None:
        return None
    name = host.strip().lower().rstrip(".")
    bracketed = name.startswith("[") and name.endswith("]")
    if not name or (":" in name and not bracketed) or "/" in name or " " in name:
        raise RouteError(f"host {host!r} must be a name without a port, or *.name")
    if "*" in name and (not name.startswith("*.") or "*" in name[2:] or len(name) < 3):
        raise RouteError(f"host {host!r}: a wildcard is *. followed by a name")
    return name


def matchPath(path):
    """
    The path a route is chosen by, for a request target's path C{path}
    (C{str}), read as strictly as HTTP allows: percent-escapes of
    unreserved characters decoded (C{%61} is C{a}, RFC 3986 6.2.2.2),
    C{.} and C{..} segments resolved and repeated slashes merged, so that
    C{/public/../admin} or C{/%61dmin} take the route of C{/admin}.  What
    is sent on is the target as the client wrote it.

    See L{loosePath} for how a lax member may read it.

    @raise RouteError: for a path that climbs above the root.
    """
    if "%" in path:
        path = _UNRESERVED_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), path)
    if "/." not in path and "//" not in path:
        return path
    return _resolveDots(path)


def loosePath(path):
    """
    C{path} as the laxest common members read it: every escape decoded
    (WSGI's C{PATH_INFO} has C{%2F} as C{/}), a backslash as a slash (IIS),
    C{;parameters} dropped from each segment (Tomcat, Spring), then dot
    segments resolved as L{matchPath} does.  A request whose route under
    this reading differs from its route under L{matchPath} is ambiguous,
    and refused (a member could read it as a path that another route's
    C{allow} list guards).

    @raise RouteError: for a path that climbs above the root, or holds an
        escaped NUL.
    """
    if "%" in path:
        if "%00" in path:
            raise RouteError("the path holds an escaped NUL")
        path = _ANY_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), path)
    if "\\" in path:
        path = path.replace("\\", "/")
    if ";" in path:
        path = "/".join(segment.split(";", 1)[0] for segment in path.split("/"))
    return _resolveDots(path)


def _resolveDots(path):
    kept = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if not kept:
                raise RouteError(f"the path {path!r} climbs above the root")
            kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    last = path.rsplit("/", 1)[-1]
    trailing = "/" if kept and (path.endswith("/") or last in (".", "..")) else ""
    return "/" + "/".join(kept) + trailing


class _Paths:
    """
    One host's routes by path prefix.
    """

    def __init__(self):
        self.byPrefix = {}
        #: The segments of the longest prefix: a path is cut to as many
        #: before the probes (each costs as much as what is left of it).
        self.depth = 0

    def add(self, route, prefix):
        if prefix in self.byPrefix:
            other = self.byPrefix[prefix]
            raise RouteError(
                f"routes {other.name!r} and {route.name!r} have the same host and path"
            )
        self.byPrefix[prefix] = route
        self.depth = max(self.depth, prefix.count("/") if prefix != "/" else 0)

    def match(self, path):
        byPrefix = self.byPrefix
        if not self.depth:
            return byPrefix.get("/")
        cut = path.split("/", self.depth + 1)
        if len(cut) > self.depth + 1:
            path = "/".join(cut[: self.depth + 1])
        while True:
            route = byPrefix.get(path)
            if route is not None:
                return route
            if path == "/":
                return None
            # The next shorter prefix on a segment boundary (/app/ is
            # matched as /app).
            path = path[: path.rfind("/")] or "/"


class RouteTable:
    """
    A listener's routes, ready to match.

    @param routes: L{Route}s, in any order (precedence does not depend on
        it).
    @raise RouteError: for a malformed host or path, or two routes with
        the same host and path.
    """

    def __init__(self, routes):
        self.routes = list(routes)
        self._exact = {}
        self._wildcard = {}
        self._anyHost = None
        for route in self.routes:
            host = checkHost(route.host)
            prefix = normalPrefix(route.path)
            if host is None:
                if self._anyHost is None:
                    self._anyHost = _Paths()
                table = self._anyHost
            elif host.startswith("*."):
                table = self._wildcard.setdefault(host[1:], _Paths())
            else:
                table = self._exact.setdefault(host, _Paths())
            table.add(route, prefix)

    def hostRoutes(self, host):
        """
        The routes of the most specific host entry for C{host} (a
        normalized name, or L{None}), or L{None} if no entry applies.
        """
        if host is not None:
            table = self._exact.get(host)
            if table is not None:
                return table
            if self._wildcard:
                dot = host.find(".")
                while dot != -1:
                    table = self._wildcard.get(host[dot:])
                    if table is not None:
                        return table
                    dot = host.find(".", dot + 1)
        return self._anyHost

    def match(self, host, path):
        """
        The route for a request to C{host} (as L{normalHost} gives it, or
        L{None}) for C{path} (C{str}, the target's path without its
        query), or L{None}.
        """
        table = self.hostRoutes(host)
        if table is None:
            return None
        return table.match(path or "/")

    def inOrder(self):
        """
        The routes in the order they are tried: exact hosts, wildcards
        longest first, then any host; within each, longest path first (for
        C{playbalancer check} and the manager).
        """

        def byPath(table):
            return sorted(table.byPrefix.items(), key=lambda item: (-len(item[0]), item[0]))

        ordered = []
        for host in sorted(self._exact):
            ordered.extend(route for _, route in byPath(self._exact[host]))
        for suffix in sorted(self._wildcard, key=lambda s: (-len(s), s)):
            ordered.extend(route for _, route in byPath(self._wildcard[suffix]))
        if self._anyHost is not None:
            ordered.extend(route for _, route in byPath(self._anyHost))
        return ordered
