"""
Balancers, health checks, member pools and proxies built from a checked
config (L{playbalancer.config}): what C{twistd playbalancer}, a worker
process and an embedding application (L{playbalancer.embed}) share.
Problems raise L{ConfigError}; the command line turns them into one line
and a non-zero exit.
"""

from __future__ import annotations

import ipaddress

from twisted.application.service import Service

from playbalancer.balancer import Balancer, Member
from playbalancer.config import ConfigError
from playbalancer.sticky import affinityFor


class PoolService(Service):
    """
    Closes the idle member connections when the balancer stops.
    """

    def __init__(self, pools):
        self.pools = pools
        self.retired = False

    def stopService(self):
        Service.stopService(self)
        if not self.retired:
            self.pools.close()

    def retire(self):
        """
        New pools replace these: retire them (requests in flight and
        waiting keep their connections) and stop.
        """
        self.retired = True
        self.pools.retire()
        self.disownServiceParent()


def buildBalancer(config, schedulerFactory, clock):
    """
    A L{Balancer} from a L{playbalancer.config.BalancerConfig}.

    @raise ConfigError: when the scheduler refuses its options.
    """
    try:
        scheduler = schedulerFactory.makeScheduler(dict(config.schedulerOptions))
    except ValueError as e:
        raise ConfigError(f"balancer.{config.name}.scheduler_options", str(e))
    members = [
        Member(m.name, m.url, weight=m.weight, standby=m.standby, aliases=m.aliases)
        for m in config.members
    ]
    balancer = Balancer(
        config.name,
        scheduler,
        members,
        clock,
        retry=config.retry,
        schedulerName=config.scheduler,
    )
    balancer.mode = config.mode
    balancer.sticky = affinityFor(balancer, config.sticky, memberRoutes(config))
    balancer.failOnStatus = frozenset(config.failOnStatus)
    balancer.retryIdempotencyKey = config.retryIdempotencyKey
    balancer.rollingRestart = config.rollingRestart
    if config.health is not None:
        balancer.activeChecks = True
        balancer.healthSettings = config.health
        balancer.slowStart = config.health.slowstart
    return balancer


def memberRoutes(config):
    """
    Route -> member name, for the members of a balancer's config that give
    a C{route} of their own.
    """
    return {m.route: m.name for m in config.members if m.route is not None}


def memberTLS(balancerConfig):
    """
    The L{playbalancer.membertls.MemberTLS} of a balancer's config.

    @raise ConfigError: when its CA file or client certificate cannot be
        used.
    """
    from playbalancer.membertls import ClientCertificateError, MemberTLS

    config = balancerConfig
    try:
        return MemberTLS.fromConfig(
            config.tlsCAFile,
            config.tlsVerify,
            config.tlsServerName,
            config.tlsClientCert,
            config.tlsClientKey,
        )
    except ClientCertificateError as e:  # a file changed since the config was read
        raise ConfigError(f"balancer.{config.name}.tls_client_{e.which}", str(e))
    except ValueError as e:
        raise ConfigError(f"balancer.{config.name}.tls_ca_file", str(e))


def makeHealthChecker(balancer, settings, reactor, tcp=False, tls=None):
    """
    The active health checks of one balancer, over fresh connections (a
    pooled one would not show whether the member accepts new ones): HTTP
    GETs, or in TCP mode plain connects.
    """
    from treq.client import HTTPClient
    from twisted.web.client import Agent

    from playbalancer.endpoints import MemberEndpoints
    from playbalancer.health import HealthChecker, connectCheck, quietPool

    if tcp:
        endpoints = MemberEndpoints(reactor, settings.timeout)
        return HealthChecker(balancer, settings, None, reactor, connectCheck(endpoints.forMember))
    from playbalancer.membertls import SYSTEM

    agent = Agent(
        reactor, contextFactory=tls if tls is not None else SYSTEM, pool=quietPool(reactor)
    )
    return HealthChecker(balancer, settings, HTTPClient(agent), reactor)


def buildBalancers(config, schedulers, reactor, top=None, checkers=None):
    """
    The balancers of a config, with their health checkers under C{top} (if
    given; worker processes get health from their parent).

    @param checkers: a dict filled with the health checkers, by balancer.
    @raise ConfigError: when a scheduler refuses its options.
    """
    balancers = {}
    for name, balancerConfig in config.balancers.items():
        factory = schedulers[balancerConfig.scheduler]
        balancers[name] = buildBalancer(balancerConfig, factory, reactor)
    for name, balancerConfig in config.balancers.items():
        if balancerConfig.health is not None and top is not None:
            checker = healthCheckerOf(balancers[name], balancerConfig, reactor)
            checker.setServiceParent(top)
            if checkers is not None:
                checkers[name] = checker
    return balancers


def healthCheckerOf(balancer, balancerConfig, reactor):
    """
    The health checker of a balancer with C{health} settings (not started).

    @raise ConfigError: when its CA file cannot be used.
    """
    return makeHealthChecker(
        balancer,
        balancerConfig.health,
        reactor,
        tcp=balancerConfig.mode == "tcp",
        tls=memberTLS(balancerConfig),
    )


def buildPools(config, reactor, top, sweeper):
    """
    The member connection pools of the config's HTTP balancers (closed
    when C{top} stops), and every balancer's member endpoints.

    @return: C{(pools, endpoints)}, both by balancer name.
    """
    pools = {}
    endpoints = {}
    for name, balancerConfig in config.balancers.items():
        endpoints[name], pools[name] = balancerPools(balancerConfig, reactor, sweeper)
        if pools[name] is None:
            del pools[name]
        else:
            PoolService(pools[name]).setServiceParent(top)
    return pools, endpoints


def balancerPools(balancerConfig, reactor, sweeper):
    """
    One balancer's member endpoints, and its member connection pools
    (L{None} in TCP mode).

    @return: C{(endpoints, pools)}.
    @raise ConfigError: when its CA file cannot be used.
    """
    from playbalancer.endpoints import MemberEndpoints
    from playbalancer.http.upstream import MemberPools

    endpoints = MemberEndpoints(
        reactor, balancerConfig.connectTimeout, memberTLS(balancerConfig)
    )
    if balancerConfig.mode == "tcp":
        return endpoints, None
    pools = MemberPools(
        endpoints.forMember,
        sweeper,
        maxIdle=balancerConfig.keepalive,
        maxConnections=balancerConfig.maxConnections,
        queueLimit=balancerConfig.queue,
        queueTimeout=balancerConfig.queueTimeout,
        handshakeTimeout=balancerConfig.connectTimeout,
    )
    return endpoints, pools


def makeProxy(
    balancer, pools, balancerConfig, reactor, listener=None, route=None, trusted=None, addresses=None
):
    """
    The L{playbalancer.http.proxy.HTTPProxy} of one balancer, with the
    header settings of C{listener} (a L{playbalancer.config.ListenConfig})
    and C{route} (a L{playbalancer.config.RouteConfig}), or the defaults
    without them.

    @param trusted: the listener's L{playbalancer.http.trust.TrustedProxies}
        (made from C{listener} when not given).
    @param addresses: the balancer's
        L{playbalancer.http.memberaddresses.MemberAddresses}, shared by its
        proxies (one of its own when not given).
    """
    from playbalancer.http.proxy import HTTPProxy

    settings = {}
    if listener is not None:
        if trusted is None:
            trusted = [ipaddress.ip_network(n, strict=False) for n in listener.trustedProxies]
        settings = dict(
            preserveHost=listener.preserveHost,
            trustedProxies=trusted,
            underscoresInHeaders=listener.underscoresInHeaders,
            bufferSize=listener.bufferSize,
        )
    timeout = balancerConfig.timeout
    if route is not None:
        if route.preserveHost is not None:
            settings["preserveHost"] = route.preserveHost
        if route.timeout is not None:
            timeout = route.timeout
        settings["aliases"] = route.aliases
        settings["routeName"] = route.name
    return HTTPProxy(
        balancer, pools, reactor, timeout=timeout, addresses=addresses, **settings
    )


def frontSettingsOf(listener):
    """
    The L{playbalancer.http.front.FrontSettings} of a listener's config.
    """
    from playbalancer.http.front import FrontSettings
    from playbalancer.http.wire import Limits

    return FrontSettings(
        limits=Limits(
            maxRequestLine=listener.maxRequestLine,
            maxHeaderLine=listener.maxHeaderLine,
            maxHeaderBytes=listener.maxHeaderBytes,
            maxHeaders=listener.maxHeaders,
        ),
        headerTimeout=listener.headerTimeout,
        idleTimeout=listener.idleTimeout,
        bodyTimeout=listener.bodyTimeout,
        minBodyRate=listener.bodyMinRate,
        bodyDeadline=listener.bodyDeadline,
        tunnelIdleTimeout=listener.tunnelIdleTimeout,
        sendTimeout=listener.sendTimeout,
        maxBody=listener.maxBody,
        maxConnections=listener.maxConnections,
        protocols=tuple(listener.protocols),
        maxConcurrentStreams=listener.maxConcurrentStreams,
    )
