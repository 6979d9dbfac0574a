"""
The TOML configuration, checked and turned into plain objects: the whole
document here (L{parseConfig}, L{loadConfig}), its tables in
L{listeners}, L{balancers} and L{cluster}, the objects in L{model}, the
checks of single values in L{values}.  Every public name is importable
from this package.

Every problem raises L{ConfigError} naming the key path, for example
C{balancer.mycluster.member[1].url: expected an http:// URL, got 'ftp://x'}.
"""

from __future__ import annotations

from playbalancer.config.balancers import _balancer
from playbalancer.config.cluster import _cluster
from playbalancer.config.listeners import _listener, _manager
from playbalancer.config.routes import resolverTable
from playbalancer.config.sticky import checkCookieNames
from playbalancer.config.model import (
    DEFAULT_ALLOW,
    DEFAULT_KEEPALIVE,
    DEFAULT_MANAGER_ENDPOINT,
    DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_SCHEDULER,
    BalancerConfig,
    ClusterConfig,
    Config,
    HealthConfig,
    ListenConfig,
    ManagerConfig,
    MemberConfig,
    ResolverConfig,
    RouteConfig,
)
from playbalancer.config.values import (
    NAME,
    ConfigError,
    _array,
    _count,
    _key,
    _name,
    _seconds,
    _Table,
    memberURL,
)

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

__all__ = [
    "NAME",
    "DEFAULT_SCHEDULER",
    "DEFAULT_KEEPALIVE",
    "DEFAULT_MANAGER_ENDPOINT",
    "DEFAULT_SHUTDOWN_GRACE",
    "DEFAULT_ALLOW",
    "ConfigError",
    "MemberConfig",
    "HealthConfig",
    "BalancerConfig",
    "ListenConfig",
    "RouteConfig",
    "ResolverConfig",
    "ManagerConfig",
    "ClusterConfig",
    "Config",
    "memberURL",
    "parseConfig",
    "loadConfig",
    "configFromArguments",
    "tomllib",
]


def parseConfig(data, schedulers=None, needListeners=True):
    """
    Check a decoded TOML document and build the L{Config}.

    @param schedulers: the known scheduler names, or L{None} not to check.
    @param needListeners: whether C{[[listen]]} tables are needed, and every
        balancer must be used by one (not for balancers embedded in an
        application of one's own, L{playbalancer.embed}).
    @raise ConfigError: for the first problem found.
    """
    top = _Table(data, "")
    rawListeners = top.get("listen", _array, [], required=needListeners)
    if needListeners and not rawListeners:
        raise ConfigError("listen", "at least one [[listen]] is needed")
    listeners = [_listener(item, f"listen[{i}]") for i, item in enumerate(rawListeners)]
    rawBalancers = top.get("balancer", lambda v, p: _Table(v, p)._data, required=True)
    manager = top.get("manager", _manager)
    workers = top.get("workers", _workerCount, 1)
    cluster = top.get("cluster", _cluster)
    resolver = top.get("resolver", resolverTable, ResolverConfig())
    shutdownGrace = top.get("shutdown_grace", _seconds, DEFAULT_SHUTDOWN_GRACE)
    top.done()
    modes = {}
    for index, listener in enumerate(listeners):
        if listener.mode == "tcp" and listener.managerPath:
            raise ConfigError(f"listen[{index}].manager_path", "not available in tcp mode")
        if listener.mode == "tcp" and listener.accessLog:
            raise ConfigError(f"listen[{index}].access_log", "not available in tcp mode")
        for name in listener.balancers:
            other = modes.setdefault(name, listener.mode)
            if other != listener.mode:
                raise ConfigError(
                    f"listen[{index}].mode",
                    f"balancer {name!r} is used in both http and tcp mode",
                )
    balancers = {}
    for name, table in rawBalancers.items():
        path = f"balancer.{_key(name)}"
        _name(name, path)
        balancers[name] = _balancer(name, table, path, schedulers, modes.get(name, "http"))
    checkCookieNames(balancers)
    for index, listener in enumerate(listeners):
        for route, key in _routeKeys(listener, index):
            if route.balancer is not None and route.balancer not in balancers:
                raise ConfigError(f"{key}.balancer" if key.endswith("]") else key, f"no balancer named {route.balancer!r}")
    used = {name for listener in listeners for name in listener.balancers}
    for name in balancers if needListeners else ():
        if name not in used:
            raise ConfigError(f"balancer.{_key(name)}", "no listener uses this balancer")
    for index, listener in enumerate(listeners):
        for route, key in _routeKeys(listener, index):
            if not route.manager:
                continue
            where = f"{key}.manager" if key.endswith("]") else key
            if manager is None:
                raise ConfigError(where, "needs a [manager] table (even an empty one)")
            if listener.endpoint.split(":")[0] == "unix" and not manager.tokenFile:
                # Behind a Unix socket the address allow-list cannot see who
                # connected (a proxy in front may pass on anyone's request).
                raise ConfigError(
                    where, "on a unix: listener the manager needs [manager] token_file"
                )
    if workers > 1:
        for index, listener in enumerate(listeners):
            if listener.endpoint.split(":")[0] not in ("tcp", "tcp6", "ssl"):
                raise ConfigError(
                    f"listen[{index}].endpoint",
                    "with workers > 1, listeners must be tcp:, tcp6: or ssl:",
                )
            if listener.acceptProxyProtocol and listener.mode == "http":
                raise ConfigError(
                    f"listen[{index}].accept_proxy_protocol",
                    "not available in http mode with workers > 1",
                )
    return Config(
        listeners=listeners,
        balancers=balancers,
        manager=manager,
        workers=workers,
        cluster=cluster,
        resolver=resolver,
        shutdownGrace=shutdownGrace,
        raw=data,
    )


def _routeKeys(listener, index):
    """
    Each route of a listener with the key path it comes from: its
    C{[[listen.route]]} table, or the shorthand key.
    """
    path = f"listen[{index}]"
    explicit = len(listener.routes) - (listener.balancer is not None) - bool(listener.managerPath)
    for number, route in enumerate(listener.routes):
        if number < explicit:
            yield route, f"{path}.route[{number}]"
        elif route.manager:
            yield route, f"{path}.manager_path"
        else:
            yield route, f"{path}.balancer"


def _workerCount(value, path):
    _count(value, path)
    if not 1 <= value <= 64:
        raise ConfigError(path, f"expected 1 to 64 worker processes, got {value}")
    return value


def loadConfig(path, schedulers=None, needListeners=True):
    """
    Read and check the TOML file at C{path} (see L{parseConfig}).

    @raise ConfigError: when the file cannot be read, is not TOML, or does
        not check out.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError("", f"{path}: cannot read: {e.strerror}")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError("", f"{path}: not valid TOML: {e}")
    return parseConfig(data, schedulers, needListeners)


def configFromArguments(
    listen,
    members,
    standbys,
    scheduler,
    retry,
    schedulers=None,
    manager=None,
    workers=1,
    entries=None,
):
    """
    Build a L{Config} with one listener and one balancer (C{default}) from
    command-line values; members are named C{app1}, C{app2}, ... in order.

    @param manager: the manager's endpoint, or L{None} for no manager.
    @param entries: C{(url, standby)} in command-line order; when given,
        C{members} and C{standbys} are not used.
    """
    if entries is None:
        entries = [(url, False) for url in members] + [(url, True) for url in standbys]
    data = {
        "listen": [{"endpoint": listen, "balancer": "default"}],
        "balancer": {
            "default": {
                "scheduler": scheduler,
                "retry": retry,
                "member": [
                    {"name": f"app{i + 1}", "url": url, "standby": standby}
                    for i, (url, standby) in enumerate(entries)
                ],
            }
        },
    }
    if manager is not None:
        data["manager"] = {"endpoint": manager}
    if workers != 1:
        data["workers"] = workers
    return parseConfig(data, schedulers)
