"""
The C{[balancer.NAME.sticky]} table: session affinity, by a cookie the
balancer inserts (C{cookie}), or by the route suffix of the application's
own session id (C{session_cookie}, C{session_param}, as Apache's
C{stickysession=JSESSIONID|jsessionid}).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from playbalancer.config.values import ConfigError, _Table, _positiveSeconds, _seconds, _string

#: An HTTP token (RFC 9110 5.6.2): what a cookie or parameter name may be.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$")
#: A route (the part of a session id after its last dot): no dot in it.
_ROUTE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")

#: Seconds a draining member keeps its sessions by default.
DEFAULT_DRAIN_SECONDS = 60.0


@dataclass(frozen=True)
class StickyConfig:
    """
    How a balancer keeps a client on one member.

    @ivar cookie: the name of the cookie the balancer inserts, or L{None}.
    @ivar maxAge: that cookie's C{Max-Age} in seconds; L{None}: it lasts
        as long as the browser session.
    @ivar sessionCookie: the application's session cookie whose value
        ends in C{.ROUTE}, or L{None}.
    @ivar sessionParam: the URL parameter (C{;name=} in the path, or
        C{name=} in the query) that carries such a session id, or L{None}.
    @ivar drainSeconds: how long a draining member still serves the
        requests of its sessions.
    """

    cookie: str = None
    maxAge: int = None
    sessionCookie: str = None
    sessionParam: str = None
    drainSeconds: float = DEFAULT_DRAIN_SECONDS

    @property
    def insertsCookie(self):
        return self.cookie is not None


def _token(value, path):
    _string(value, path)
    if not _TOKEN.match(value):
        raise ConfigError(path, f"expected a cookie or parameter name (an HTTP token), got {value!r}")
    return value


def _maxAge(value, path):
    seconds = _positiveSeconds(value, path)
    if seconds != int(seconds):
        raise ConfigError(path, f"expected a whole number of seconds, got {value!r}")
    return int(seconds)


def route(value, path):
    """
    A member's C{route}: what follows the last dot of its session ids.
    """
    _string(value, path)
    if not _ROUTE.match(value):
        raise ConfigError(path, f"expected 1-64 letters, digits, '_' or '-' (no dot), got {value!r}")
    return value


def parseSticky(data, path, mode):
    """
    The L{StickyConfig} of a C{sticky} table at C{path}.

    @raise ConfigError: naming the key at fault.
    """
    table = _Table(data, path)
    if mode == "tcp":
        raise ConfigError(path, "session affinity needs HTTP: a TCP balancer has no cookies")
    sticky = StickyConfig(
        cookie=table.get("cookie", _token),
        maxAge=table.get("max_age", _maxAge),
        sessionCookie=table.get("session_cookie", _token),
        sessionParam=table.get("session_param", _token),
        drainSeconds=table.get("drain_seconds", _seconds, DEFAULT_DRAIN_SECONDS),
    )
    table.done()
    routeKinds = sticky.sessionCookie is not None or sticky.sessionParam is not None
    if sticky.cookie is None and not routeKinds:
        raise ConfigError(path, "give cookie (the balancer inserts one), or session_cookie / session_param")
    if sticky.cookie is not None and routeKinds:
        key = "session_cookie" if sticky.sessionCookie is not None else "session_param"
        raise ConfigError(table.at(key), "not with cookie: choose inserted cookies or the application's routes")
    if sticky.maxAge is not None and sticky.cookie is None:
        raise ConfigError(table.at("max_age"), "only with cookie (the balancer's own cookie)")
    return sticky


def checkCookieNames(balancers):
    """
    Each balancer that inserts a cookie needs a name of its own: the
    cookie is set for the whole site (C{Path=/}), so two balancers behind
    one host would take each other's for a stranger's and replace it.

    @param balancers: L{playbalancer.config.BalancerConfig}s by name.
    @raise ConfigError: at the second balancer's C{cookie}.
    """
    owners = {}
    for name, balancer in balancers.items():
        sticky = balancer.sticky
        if sticky is None or sticky.cookie is None:
            continue
        other = owners.setdefault(sticky.cookie, name)
        if other != name:
            raise ConfigError(
                f"balancer.{name}.sticky.cookie",
                f"{sticky.cookie!r} is also balancer {other!r}'s cookie: give each its own name",
            )
