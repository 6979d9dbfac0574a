"""
The checked configuration: plain dataclasses, one per TOML table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_SCHEDULER",
    "DEFAULT_KEEPALIVE",
    "DEFAULT_MANAGER_ENDPOINT",
    "DEFAULT_ALLOW",
    "DEFAULT_SHUTDOWN_GRACE",
    "MemberConfig",
    "HealthConfig",
    "BalancerConfig",
    "RouteConfig",
    "ListenConfig",
    "ResolverConfig",
    "ManagerConfig",
    "ClusterConfig",
    "Config",
]


DEFAULT_SCHEDULER = "round-robin"

#: Idle pooled connections kept per member.  Below the requests in flight
#: to one member at peak, connections would be closed after their response
#: and opened again for the next (at 200 client connections, a default of
#: 64 cost a fifth of the throughput).
DEFAULT_KEEPALIVE = 256
DEFAULT_MANAGER_ENDPOINT = "tcp:8081:interface=127.0.0.1"
DEFAULT_ALLOW = ("127.0.0.0/8", "::1")
#: Seconds a stopping balancer (or a listener a reload removes) lets the
#: requests in flight finish before it cuts them.
DEFAULT_SHUTDOWN_GRACE = 10.0


@dataclass
class MemberConfig:
    name: str
    url: str
    standby: bool = False
    weight: int = 1
    #: Other base URLs of the member, for Location rewriting (Apache's
    #: extra C{ProxyPassReverse} lines).
    aliases: list = field(default_factory=list)
    #: What follows the last dot of this member's session ids (Apache's
    #: C{route=}); L{None}: its name.
    route: str = None


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
    tlsServerName: str = None
    tlsClientCert: str = None
    tlsClientKey: str = None
    #: A digest of the TLS files' contents (see
    #: L{playbalancer.config.values.filesDigest}).
    tlsFiles: str = None
    retryIdempotencyKey: bool = False
    #: Session affinity (L{playbalancer.config.sticky.StickyConfig}), or
    #: L{None}.
    sticky: object = None
    #: The command a rolling restart started by the manager runs
    #: (L{playbalancer.config.rolling.RollingRestartConfig}), or L{None}.
    rollingRestart: object = None


@dataclass
class RouteConfig:
    """
    One C{[[listen.route]]}: requests for C{host} (L{None}: any) under
    C{path} go to one target: a balancer, the manager, or an answer of our
    own (C{status}, or a C{redirect} with C{status} as its code).  The
    balancer settings left L{None} are the listener's (or the balancer's).
    """

    name: str
    host: str = None
    path: str = "/"
    balancer: str = None
    manager: bool = False
    status: int = None
    redirect: str = None
    stripPrefix: bool = False
    allow: list = None
    preserveHost: bool = None
    maxBody: int = None
    timeout: float = None
    aliases: list = field(default_factory=list)

    @property
    def kind(self):
        if self.balancer is not None:
            return "balancer"
        if self.manager:
            return "manager"
        return "redirect" if self.redirect is not None else "status"


@dataclass
class ListenConfig:
    endpoint: str
    balancer: str = None
    preserveHost: bool = True
    maxBody: int = 0
    managerPath: str = None
    mode: str = "http"
    acceptProxyProtocol: bool = False
    trustedProxies: list = field(default_factory=list)
    accessLog: str = None
    #: An C{ssl:} listener's L{playbalancer.config.tls.ListenerCertificates}
    #: (read from its files), else L{None}.
    certificates: object = None
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
    maxConcurrentStreams: int = 100
    #: What clients may speak (C{"h2"}, C{"http/1.1"}, C{"h2c"}); by
    #: default HTTP/2 and HTTP/1.1 on C{ssl:} listeners, else HTTP/1.1.
    protocols: tuple = ("http/1.1",)
    #: The listener's L{RouteConfig}s: its C{[[listen.route]]}s, then the
    #: routes its C{manager_path} and C{balancer} keys stand for.
    routes: list = field(default_factory=list)

    @property
    def balancers(self):
        """
        The names of the balancers its routes use.
        """
        return [route.balancer for route in self.routes if route.balancer is not None]


@dataclass
class ResolverConfig:
    """
    The C{[resolver]} table: the DNS servers host-name C{allow} rules ask
    (L{None}: the system's, from C{/etc/resolv.conf}), and how long a
    lookup may take.
    """

    servers: list = None
    timeout: float = 5.0


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
    resolver: ResolverConfig = field(default_factory=ResolverConfig)
    shutdownGrace: float = DEFAULT_SHUTDOWN_GRACE
    #: The decoded TOML, as given (what worker processes are started with).
    raw: dict = field(default=None, compare=False, repr=False)
