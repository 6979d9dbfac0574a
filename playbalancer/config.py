"""
The TOML configuration, checked and turned into plain objects.

Every problem raises L{ConfigError} naming the key path, for example
C{balancer.mycluster.member[1].url: expected an http:// URL, got 'ftp://x'}.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import dataclass, field

from hyperlink import URL, URLParseError

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

NAME = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")

DEFAULT_SCHEDULER = "round-robin"

#: Idle pooled connections kept per member.  Below the requests in flight
#: to one member at peak, connections would be closed after their response
#: and opened again for the next (at 200 client connections, a default of
#: 64 cost a fifth of the throughput).
DEFAULT_KEEPALIVE = 256
DEFAULT_MANAGER_ENDPOINT = "tcp:8081:interface=127.0.0.1"
DEFAULT_ALLOW = ("127.0.0.0/8", "::1")


class ConfigError(Exception):
    """
    A configuration problem at C{path}.
    """

    def __init__(self, path, message):
        Exception.__init__(self, path, message)
        self.path = path
        self.message = message

    def __str__(self):
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass
class MemberConfig:
    name: str
    url: str
    standby: bool = False
    weight: int = 1


@dataclass
class HealthConfig:
    path: str = "/health"
    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3
    expect: str = "200-399"
    slowstart: float = 0.0


@dataclass
class BalancerConfig:
    name: str
    members: list
    scheduler: str = DEFAULT_SCHEDULER
    schedulerOptions: dict = field(default_factory=dict)
    retry: float = 60.0
    timeout: float = 60.0
    connectTimeout: float = 5.0
    keepalive: int = DEFAULT_KEEPALIVE
    failOnStatus: list = field(default_factory=list)
    health: HealthConfig = None
    sendProxyProtocol: bool = False
    mode: str = "http"
    maxConnections: int = 0
    queue: int = 128
    queueTimeout: float = 10.0
    tlsCAFile: str = None
    tlsVerify: bool = True
    retryIdempotencyKey: bool = False


@dataclass
class ListenConfig:
    endpoint: str
    balancer: str
    preserveHost: bool = True
    maxBody: int = 0
    managerPath: str = None
    mode: str = "http"
    acceptProxyProtocol: bool = False
    trustedProxies: list = field(default_factory=list)
    accessLog: str = None
    headerTimeout: float = 10.0
    idleTimeout: float = 75.0
    bodyTimeout: float = 60.0
    bodyMinRate: float = 500.0
    bodyDeadline: float = 0.0
    tunnelIdleTimeout: float = 3600.0
    sendTimeout: float = 60.0
    bufferSize: int = 16384
    underscoresInHeaders: bool = False
    maxConnections: int = 10000
    maxRequestLine: int = 8192
    maxHeaderLine: int = 8192
    maxHeaderBytes: int = 65536
    maxHeaders: int = 100


@dataclass
class ManagerConfig:
    endpoint: str = DEFAULT_MANAGER_ENDPOINT
    allow: list = field(default_factory=lambda: list(DEFAULT_ALLOW))
    tokenFile: str = None
    stateFile: str = None
    allowedHosts: list = field(default_factory=list)
    metricsEndpoint: str = None


@dataclass
class ClusterConfig:
    endpoints: list
    tier: str
    node: str
    store: str = "etcd"
    cacheFile: str = None
    leaseTTL: int = 3
    startupTimeout: float = 5.0
    user: str = None
    password: str = field(default=None, repr=False)
    passwordFile: str = None
    caFile: str = None
    certFile: str = None
    keyFile: str = None


@dataclass
class Config:
    listeners: list
    balancers: dict
    manager: ManagerConfig = None
    #: Worker processes serving the listeners (1: this process serves).
    workers: int = 1
    cluster: ClusterConfig = None
    #: The decoded TOML, as given (what worker processes are started with).
    raw: dict = field(default=None, compare=False, repr=False)


class _Table:
    """
    Reads the keys of one TOML table, remembering its path for errors and
    refusing keys nobody asked for.
    """

    def __init__(self, data, path):
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected a table, got {_show(data)}")
        self._data = dict(data)
        self.path = path

    def at(self, key):
        key = _key(key)
        return f"{self.path}.{key}" if self.path else key

    def get(self, key, kind, default=None, required=False):
        if key not in self._data:
            if required:
                raise ConfigError(self.at(key), "missing")
            return default
        value = self._data.pop(key)
        return kind(value, self.at(key))

    def done(self):
        for key in self._data:
            raise ConfigError(self.at(key), "unknown key")


def _key(key):
    """
    A TOML key as it would be written: quoted unless it is a bare key.
    """
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _show(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _string(value, path):
    if not isinstance(value, str):
        raise ConfigError(path, f"expected a string, got {_show(value)}")
    return value


def _name(value, path):
    _string(value, path)
    if not NAME.match(value):
        raise ConfigError(
            path, f"expected a name of 1-64 letters, digits, '.', '_' or '-', got {value!r}"
        )
    return value


def _bool(value, path):
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {_show(value)}")
    return value


def _count(value, path):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(path, f"expected a whole number >= 0, got {_show(value)}")
    return value


def _nonNegative(unit):
    """
    A check for a finite number >= 0 of C{unit}, given as a float.
    """

    def check(value, path):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise ConfigError(path, f"expected {unit} >= 0, got {_show(value)}")
        return float(value)

    return check


_seconds = _nonNegative("a number of seconds")
_rate = _nonNegative("bytes per second")


def _positiveSeconds(value, path):
    if _seconds(value, path) <= 0:
        raise ConfigError(path, f"expected a number of seconds > 0, got {_show(value)}")
    return float(value)


def _array(value, path):
    if not isinstance(value, list):
        raise ConfigError(path, f"expected an array of tables, got {_show(value)}")
    return value


#: The characters RFC 3986 allows in a URL's scheme, authority and path;
#: and a percent sign must start a %XX escape.
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/\[\]%?#]*\Z")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: A host name: labels of letters, digits, hyphens (and underscores, which
#: container names use), each 1-63 long, not starting or ending with a
#: hyphen.
_HOST_NAME = re.compile(
    r"(?=.{1,253}\.?\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?\Z"
)


def _isIPLiteral(host):
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def memberURL(value, path, mode="http"):
    """
    Check a member URL: C{http://} or C{https://}, a host, optionally a port
    and a path prefix; nothing else.  In TCP mode: C{tcp://host:port}.
    The one check for a member URL, wherever it comes from: the config,
    the API and the page's form, the state file.
    """
    _string(value, path)
    schemes = ("tcp",) if mode == "tcp" else ("http", "https")
    article = "a" if mode == "tcp" else "an"
    expected = f"expected {article} {schemes[0]}:// URL, got {value!r}"
    if not _URL_CHARACTERS.match(value) or _BAD_ESCAPE.search(value):
        # Spaces, CR and LF above all: they would end up in request lines.
        raise ConfigError(path, f"expected only URL characters (RFC 3986) in {value!r}")
    try:
        url = URL.from_text(value)
    except (URLParseError, ValueError):
        raise ConfigError(path, expected)
    if url.scheme not in schemes or not url.host or not url.absolute:
        raise ConfigError(path, expected)
    if not _isIPLiteral(url.host) and not _HOST_NAME.match(url.host):
        raise ConfigError(path, f"expected a host name or IP address in {value!r}")
    if mode == "tcp" and (url.port is None or any(url.path)):
        raise ConfigError(path, f"expected tcp://host:port, got {value!r}")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise ConfigError(path, f"expected a port from 1 to 65535 in {value!r}")
    if url.userinfo or url.query or url.fragment:
        raise ConfigError(path, f"expected no user, query or fragment in {value!r}")
    try:
        str(value).encode("ascii")
    except UnicodeEncodeError:
        raise ConfigError(path, f"expected an ASCII URL, got {value!r}")
    return value


def _endpoint(value, path):
    _string(value, path)
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(None, value)
    except Exception as e:
        raise ConfigError(path, f"bad endpoint {value!r}: {e}")
    return value


def _member(data, path, mode):
    table = _Table(data, path)
    member = MemberConfig(
        name=table.get("name", _name, required=True),
        url=table.get("url", lambda v, p: memberURL(v, p, mode), required=True),
        standby=table.get("standby", _bool, False),
        weight=table.get("weight", _count, 1),
    )
    table.done()
    return member


def _balancer(name, data, path, schedulers, mode="http"):
    table = _Table(data, path)
    scheduler = table.get("scheduler", _string, DEFAULT_SCHEDULER)
    if schedulers is not None and scheduler not in schedulers:
        known = ", ".join(sorted(schedulers))
        raise ConfigError(
            table.at("scheduler"), f"unknown scheduler {scheduler!r} (known: {known})"
        )
    options = table.get("scheduler_options", lambda v, p: dict(_Table(v, p)._data), {})
    rawMembers = table.get("member", _array, required=True)
    members = []
    seen = set()
    for index, item in enumerate(rawMembers):
        member = _member(item, f"{path}.member[{index}]", mode)
        if member.name in seen:
            raise ConfigError(
                f"{path}.member[{index}].name", f"duplicate member name {member.name!r}"
            )
        seen.add(member.name)
        members.append(member)
    if not members:
        raise ConfigError(table.at("member"), "a balancer needs at least one member")
    balancer = BalancerConfig(
        name=name,
        members=members,
        scheduler=scheduler,
        schedulerOptions=options,
        retry=table.get("retry", _seconds, 60.0),
        timeout=table.get("timeout", _positiveSeconds, 60.0),
        connectTimeout=table.get("connect_timeout", _positiveSeconds, 5.0),
        keepalive=table.get("keepalive", _count, DEFAULT_KEEPALIVE),
        failOnStatus=table.get("failonstatus", _statusList, []),
        sendProxyProtocol=table.get("send_proxy_protocol", _bool, False),
        mode=mode,
        maxConnections=table.get("max_connections_per_member", _count, 0),
        queue=table.get("queue", _count, 128),
        queueTimeout=table.get("queue_timeout", _positiveSeconds, 10.0),
        health=table.get("health", _health),
        tlsCAFile=table.get("tls_ca_file", _caFile),
        tlsVerify=table.get("tls_verify", _bool, True),
        retryIdempotencyKey=table.get("retry_idempotency_key", _bool, False),
    )
    table.done()
    return balancer


def _caFile(value, path):
    from playbalancer.membertls import loadAuthorities

    try:
        loadAuthorities(_string(value, path))
    except ValueError as e:
        raise ConfigError(path, str(e)) from None
    return value


def _statusList(value, path):
    if not isinstance(value, list):
        raise ConfigError(path, f"expected an array of HTTP statuses, got {_show(value)}")
    for index, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or not 100 <= item <= 599:
            raise ConfigError(f"{path}[{index}]", f"expected an HTTP status, got {_show(item)}")
    return list(value)


def _atLeastOne(value, path):
    if _count(value, path) < 1:
        raise ConfigError(path, f"expected a whole number >= 1, got {_show(value)}")
    return value


def _expect(value, path):
    from playbalancer.health import parseExpect

    _string(value, path)
    try:
        parseExpect(value)
    except ValueError as e:
        raise ConfigError(path, str(e))
    return value


def _healthPath(value, path):
    _string(value, path)
    if not value.startswith("/") or any(c in value for c in " \t\r\n#"):
        raise ConfigError(path, f"expected a path starting with '/', got {value!r}")
    try:
        value.encode("ascii")
    except UnicodeEncodeError:
        raise ConfigError(path, f"expected an ASCII path, got {value!r}")
    return value


def _health(data, path):
    table = _Table(data, path)
    health = HealthConfig(
        path=table.get("path", _healthPath, "/health"),
        interval=table.get("interval", _positiveSeconds, 2.0),
        timeout=table.get("timeout", _positiveSeconds, 1.0),
        rise=table.get("rise", _atLeastOne, 2),
        fall=table.get("fall", _atLeastOne, 3),
        expect=table.get("expect", _expect, "200-399"),
        slowstart=table.get("slowstart", _seconds, 0.0),
    )
    table.done()
    return health


def _listener(data, path):
    table = _Table(data, path)
    listener = ListenConfig(
        endpoint=table.get("endpoint", _endpoint, required=True),
        balancer=table.get("balancer", _name, required=True),
        preserveHost=table.get("preserve_host", _bool, True),
        maxBody=table.get("max_body", _count, 0),
        managerPath=table.get("manager_path", _urlPath),
        mode=table.get("mode", _mode, "http"),
        acceptProxyProtocol=table.get("accept_proxy_protocol", _bool, False),
        trustedProxies=table.get("trusted_proxies", _cidrList, []),
        accessLog=table.get("access_log", _string),
        headerTimeout=table.get("header_timeout", _positiveSeconds, 10.0),
        idleTimeout=table.get("idle_timeout", _positiveSeconds, 75.0),
        bodyTimeout=table.get("body_timeout", _positiveSeconds, 60.0),
        bodyMinRate=table.get("body_min_rate", _rate, 500.0),
        bodyDeadline=table.get("body_deadline", _seconds, 0.0),
        tunnelIdleTimeout=table.get("tunnel_idle_timeout", _seconds, 3600.0),
        sendTimeout=table.get("send_timeout", _seconds, 60.0),
        bufferSize=table.get("buffer_size", _atLeast(1024), 16384),
        underscoresInHeaders=table.get("underscores_in_headers", _bool, False),
        maxConnections=table.get("max_connections", _count, 10000),
        maxRequestLine=table.get("max_request_line", _atLeast(256), 8192),
        maxHeaderLine=table.get("max_header_line", _atLeast(256), 8192),
        maxHeaderBytes=table.get("max_header_bytes", _atLeast(1024), 65536),
        maxHeaders=table.get("max_headers", _atLeast(8), 100),
    )
    table.done()
    if listener.acceptProxyProtocol and listener.endpoint.split(":")[0] == "ssl":
        # The PROXY line comes before TLS on the wire; an ssl: endpoint
        # would look for it inside TLS.
        raise ConfigError(
            table.at("accept_proxy_protocol"), "not available on ssl: listeners yet"
        )
    return listener


def _atLeast(minimum):
    def check(value, path):
        value = _count(value, path)
        if value < minimum:
            raise ConfigError(path, f"expected at least {minimum}, got {value}")
        return value

    return check


def _mode(value, path):
    if value not in ("http", "tcp"):
        raise ConfigError(path, f"expected \"http\" or \"tcp\", got {_show(value)}")
    return value


def _urlPath(value, path):
    _string(value, path)
    segments = value.strip("/").split("/")
    if not value.startswith("/") or not all(NAME.match(s) for s in segments):
        raise ConfigError(
            path, f"expected a path like '/balancer-manager', got {value!r}"
        )
    return "/" + "/".join(segments)


def _hostList(value, path):
    if not isinstance(value, list):
        raise ConfigError(path, f"expected an array of host names, got {_show(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not re.match(r"[A-Za-z0-9.-]{1,253}\Z", item):
            raise ConfigError(f"{path}[{index}]", f"expected a host name, got {_show(item)}")
    return list(value)


def _cidrList(value, path):
    if not isinstance(value, list) or not value:
        raise ConfigError(path, f"expected a non-empty array of addresses, got {_show(value)}")
    for index, item in enumerate(value):
        _cidr(item, f"{path}[{index}]")
    return list(value)


def _cidr(value, path):
    _string(value, path)
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ConfigError(path, f"expected an address or CIDR network, got {value!r}")
    return value


def _manager(data, path):
    table = _Table(data, path)
    manager = ManagerConfig(
        endpoint=table.get("endpoint", _endpoint, DEFAULT_MANAGER_ENDPOINT),
        allow=table.get("allow", _cidrList, list(DEFAULT_ALLOW)),
        tokenFile=table.get("token_file", _string),
        stateFile=table.get("state_file", _string),
        allowedHosts=table.get("allowed_hosts", _hostList, []),
        metricsEndpoint=table.get("metrics_endpoint", _endpoint),
    )
    table.done()
    return manager


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
    top.done()
    modes = {}
    for index, listener in enumerate(listeners):
        if listener.mode == "tcp" and listener.managerPath:
            raise ConfigError(f"listen[{index}].manager_path", "not available in tcp mode")
        if listener.mode == "tcp" and listener.accessLog:
            raise ConfigError(f"listen[{index}].access_log", "not available in tcp mode")
        other = modes.setdefault(listener.balancer, listener.mode)
        if other != listener.mode:
            raise ConfigError(
                f"listen[{index}].mode",
                f"balancer {listener.balancer!r} is used in both http and tcp mode",
            )
    balancers = {}
    for name, table in rawBalancers.items():
        path = f"balancer.{_key(name)}"
        _name(name, path)
        balancers[name] = _balancer(name, table, path, schedulers, modes.get(name, "http"))
    for index, listener in enumerate(listeners):
        if listener.balancer not in balancers:
            raise ConfigError(
                f"listen[{index}].balancer", f"no balancer named {listener.balancer!r}"
            )
    used = {listener.balancer for listener in listeners}
    for name in balancers if needListeners else ():
        if name not in used:
            raise ConfigError(f"balancer.{_key(name)}", "no listener uses this balancer")
    for index, listener in enumerate(listeners):
        if listener.managerPath and manager is None:
            raise ConfigError(
                f"listen[{index}].manager_path", "needs a [manager] table (even an empty one)"
            )
        if (
            listener.managerPath
            and listener.endpoint.split(":")[0] == "unix"
            and not manager.tokenFile
        ):
            # Behind a Unix socket the address allow-list cannot see who
            # connected (a proxy in front may pass on anyone's request).
            raise ConfigError(
                f"listen[{index}].manager_path",
                "on a unix: listener the manager needs [manager] token_file",
            )
    if workers > 1:
        for index, listener in enumerate(listeners):
            if listener.endpoint.split(":")[0] not in ("tcp", "tcp6"):
                raise ConfigError(
                    f"listen[{index}].endpoint", "with workers > 1, listeners must be tcp: or tcp6:"
                )
            if listener.managerPath:
                raise ConfigError(
                    f"listen[{index}].manager_path",
                    "not available with workers > 1 (use the [manager] endpoint)",
                )
            if listener.acceptProxyProtocol and listener.mode == "http":
                raise ConfigError(
                    f"listen[{index}].accept_proxy_protocol",
                    "not available in http mode with workers > 1",
                )
    if cluster is not None and workers > 1:
        raise ConfigError("cluster", "not available with workers > 1 yet")
    return Config(
        listeners=listeners,
        balancers=balancers,
        manager=manager,
        workers=workers,
        cluster=cluster,
        raw=data,
    )


def _cluster(data, path):
    import socket

    table = _Table(data, path)
    store = table.get("store", _string, "etcd")
    if store != "etcd":
        raise ConfigError(table.at("store"), f"expected \"etcd\", got {store!r}")
    endpoints = table.get("endpoints", _array, required=True)
    if not endpoints:
        raise ConfigError(table.at("endpoints"), "at least one endpoint is needed")
    for index, endpoint in enumerate(endpoints):
        if not isinstance(endpoint, str) or not re.match(r"https?://[^/\s]+\Z", endpoint):
            raise ConfigError(
                f"{table.at('endpoints')}[{index}]",
                f"expected a URL like http://127.0.0.1:2379, got {_show(endpoint)}",
            )
    cluster = ClusterConfig(
        store=store,
        endpoints=list(endpoints),
        tier=table.get("tier", _name, required=True),
        node=table.get("node", _name, socket.gethostname().split(".")[0][:64] or "node"),
        cacheFile=table.get("cache_file", _string),
        leaseTTL=table.get("lease_ttl", _atLeast(2), 3),
        startupTimeout=table.get("startup_timeout", _positiveSeconds, 5.0),
        user=table.get("user", _string),
        password=table.get("password", _string),
        passwordFile=table.get("password_file", _string),
        caFile=table.get("ca_file", _caFile),
        certFile=table.get("cert_file", _string),
        keyFile=table.get("key_file", _string),
    )
    table.done()
    if cluster.user == "":
        raise ConfigError(table.at("user"), "expected a user name, got ''")
    if cluster.password is not None and cluster.passwordFile is not None:
        raise ConfigError(table.at("password"), "give password or password_file, not both")
    if cluster.user is None:
        for key in ("password", "password_file"):
            if key in data:
                raise ConfigError(table.at(key), "needs user")
    elif cluster.password is None and cluster.passwordFile is None:
        raise ConfigError(table.at("user"), "needs password or password_file")
    if (cluster.certFile is None) != (cluster.keyFile is None):
        missing = "key_file" if cluster.keyFile is None else "cert_file"
        raise ConfigError(table.at(missing), "missing (cert_file and key_file go together)")
    for key in ("ca_file", "cert_file"):
        if key in data and any(not e.startswith("https://") for e in cluster.endpoints):
            raise ConfigError(table.at(key), "only for https:// endpoints")
    if cluster.certFile is not None:
        from playbalancer.cluster.access import loadClientCertificate

        try:
            loadClientCertificate(cluster.certFile, cluster.keyFile)
        except ValueError as e:
            raise ConfigError(table.at("cert_file"), str(e)) from None
    return cluster


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
