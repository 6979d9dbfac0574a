"""
The C{[[listen.route]]} tables of a listener, and the routes its
C{balancer} and C{manager_path} keys stand for.
"""

from __future__ import annotations

import re

from playbalancer.config.model import ResolverConfig, RouteConfig
from playbalancer.config.values import (
    ConfigError,
    _Table,
    _array,
    _bool,
    _count,
    _name,
    _positiveSeconds,
    _show,
    _string,
    memberURL,
)
from playbalancer.routes import RouteError, checkHost, normalPrefix

#: What a route's path may hold: a path of URL characters, no query.
_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*\Z")
_REDIRECT_CODES = (301, 302, 303, 307, 308)
#: What a redirect's URL may hold (it goes out as a Location header): URL
#: characters, no fragment.
_REDIRECT = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%?\[\]]+\Z")


def routeTable(data, path, index):
    """
    The L{RouteConfig} of one C{[[listen.route]]} table at C{path} (its
    default name is its index).
    """
    table = _Table(data, path)
    route = RouteConfig(
        name=table.get("name", _name, str(index)),
        host=table.get("host", _host),
        path=table.get("path", _routePath, "/"),
        balancer=table.get("balancer", _name),
        manager=table.get("manager", _bool, False),
        status=table.get("status", _status),
        redirect=table.get("redirect", _redirect),
        stripPrefix=table.get("strip_prefix", _bool, False),
        allow=table.get("allow", _allowList),
        preserveHost=table.get("preserve_host", _bool),
        maxBody=table.get("max_body", _count),
        timeout=table.get("timeout", _positiveSeconds),
        aliases=table.get("aliases", _aliases, []),
    )
    keys = set(data)
    table.done()
    _checkTarget(route, keys, table)
    return route


def _checkTarget(route, keys, table):
    targets = [k for k in ("balancer", "manager", "redirect") if k in keys]
    if route.manager is False and "manager" in keys:
        targets.remove("manager")
    if "status" in keys and "redirect" not in keys:
        targets.append("status")
    if len(targets) != 1:
        where = table.at(targets[-1]) if targets else table.path
        raise ConfigError(
            where,
            "a route has one target: balancer, manager = true, status or redirect"
            + (f" (this one has {' and '.join(targets)})" if targets else " (this one has none)"),
        )
    if route.redirect is not None:
        if route.status is None:
            route.status = 302
        elif route.status not in _REDIRECT_CODES:
            raise ConfigError(
                table.at("status"), f"a redirect's status is 301, 302, 303, 307 or 308, not {route.status}"
            )
    elif route.status is not None and 300 <= route.status < 400:
        raise ConfigError(table.at("status"), "a 3xx answer needs a redirect = URL")
    if route.balancer is None:
        for key in ("strip_prefix", "preserve_host", "max_body", "timeout", "aliases"):
            if key in keys:
                raise ConfigError(table.at(key), "only for a route to a balancer")


def shorthandRoutes(listener):
    """
    The routes a listener's C{balancer} (anything on any host) and
    C{manager_path} keys stand for.
    """
    routes = []
    if listener.managerPath:
        routes.append(RouteConfig(name="manager", path=listener.managerPath, manager=True))
    if listener.balancer is not None:
        routes.append(RouteConfig(name="default", balancer=listener.balancer))
    return routes


def checkRoutes(routes, path, explicit):
    """
    Refuse two routes of one listener with the same name, or the same host
    and path (matched as L{playbalancer.routes.RouteTable} does).

    @param explicit: how many of C{routes} come from C{[[listen.route]]}
        tables (the rest from the shorthand keys).
    """

    def where(index, key):
        if index < explicit:
            return f"{path}.route[{index}].{key}"
        return f"{path}.{'balancer' if routes[index].balancer else 'manager_path'}"

    names = {}
    places = {}
    for index, route in enumerate(routes):
        if route.name in names:
            raise ConfigError(
                where(index, "name"), f"another route of this listener is named {route.name!r}"
            )
        names[route.name] = index
        place = (checkHost(route.host), normalPrefix(route.path))
        if place in places:
            other = routes[places[place]]
            raise ConfigError(
                where(index, "path"),
                f"route {other.name!r} has the same host and path "
                f"({route.host or 'any host'}, {route.path})",
            )
        places[place] = index


def _host(value, path):
    _string(value, path)
    try:
        return checkHost(value)
    except RouteError as e:
        raise ConfigError(path, str(e))


def _routePath(value, path):
    _string(value, path)
    if not _PATH.match(value) or "//" in value or re.search(r"%(?![0-9A-Fa-f]{2})", value):
        raise ConfigError(path, f"expected a path like \"/app\", got {value!r}")
    if any(segment in (".", "..") for segment in value.split("/")):
        raise ConfigError(path, f"expected a path without . or .. segments, got {value!r}")
    return normalPrefix(value)


def _status(value, path):
    # (2xx other than 200 would need their own framing: 204 has no body.)
    if not isinstance(value, int) or isinstance(value, bool) or not (
        value == 200 or 300 <= value <= 599
    ):
        raise ConfigError(
            path, f"expected an HTTP status: 200, 3xx with redirect, or 400 to 599; got {_show(value)}"
        )
    return value


def _redirect(value, path):
    _string(value, path)
    if not _REDIRECT.match(value) or re.search(r"%(?![0-9A-Fa-f]{2})", value):
        raise ConfigError(
            path, f"expected an http:// or https:// URL, or a path like /new, got {value!r}"
        )
    if value.startswith("/") and not value.startswith("//") and _PATH.match(value.split("?")[0]):
        return value
    try:
        memberURL(value.split("?")[0], path)
    except ConfigError:
        raise ConfigError(
            path, f"expected an http:// or https:// URL, or a path like /new, got {value!r}"
        )
    return value


def _allowList(value, path):
    from playbalancer.access import checkRule

    _array(value, path)
    if not value:
        raise ConfigError(path, "expected at least one address, network or host name")
    rules = []
    for index, item in enumerate(value):
        _string(item, f"{path}[{index}]")
        try:
            rules.append(checkRule(item))
        except ValueError as e:
            raise ConfigError(f"{path}[{index}]", str(e))
    return rules


def _aliases(value, path):
    _array(value, path)
    return [memberURL(item, f"{path}[{index}]") for index, item in enumerate(value)]


def resolverTable(data, path):
    """
    The C{[resolver]} table: C{servers} (C{"host"} or C{"host:port"}; the
    system's when missing) and C{timeout}.
    """
    from playbalancer.access import checkServer

    table = _Table(data, path)
    servers = table.get("servers", _array)
    timeout = table.get("timeout", _positiveSeconds, 5.0)
    table.done()
    if servers is not None:
        if not servers:
            raise ConfigError(table.at("servers"), "expected at least one server")
        for index, item in enumerate(servers):
            where = f"{table.at('servers')}[{index}]"
            _string(item, where)
            try:
                checkServer(item)
            except ValueError as e:
                raise ConfigError(where, str(e))
    return ResolverConfig(servers=servers, timeout=timeout)
