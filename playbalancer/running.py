"""
The running balancer of one process: what it built from its config
(balancers, their health checks and connection pools, the listeners and
their fronts) and kept together, so that a reload
(L{playbalancer.reconfigure}) can change it in place.
"""

from __future__ import annotations

from dataclasses import dataclass

from playbalancer.assembly import PoolService, balancerPools, buildBalancers
from playbalancer.handover import NONE


def listenerName(endpoint):
    """
    A listener's name in metrics and logs: its endpoint's kind and port
    (C{"tcp:8080"}), without options such as key file paths.
    """
    return ":".join(endpoint.split(":")[:2])


def listenerContexts(listener, front):
    """
    The TLS options of an C{ssl:} listener (a
    L{playbalancer._net.sni.ListenerContexts} of its certificates and its
    front's ALPN protocols), or L{None} for another kind.
    """
    if listener.certificates is None:
        return None
    from playbalancer._net.sni import ListenerContexts
    from playbalancer._net.tlslisten import protocolsOf

    return ListenerContexts(listener.certificates, protocolsOf(front))


@dataclass
class Served:
    """
    One listener this process serves: its config, its front factory and
    the service that listens for it.
    """

    config: object
    front: object
    service: object
    #: Once stopped by a reload: fires when its connections are closed.
    stopped: object = None

    @property
    def name(self):
        return listenerName(self.config.endpoint)


class Running:
    """
    A config's balancers, member pools, health checks and listeners, built
    and kept.

    Made in two steps: the balancers (and their health checks, under
    C{top}) at once, so that the manager and a cluster node can be made
    with them; the pools and listeners by L{serve}.

    @param listeners: a list kept filled with C{(name, front factory)} of
        the listeners served, for the manager's metrics.
    @param checks: whether to run the health checks (a worker process
        gets health from its parent).
    @ivar balancers: C{{name: Balancer}}; one dict for the life of the
        process, shared with the manager, the state file and the cluster
        node, changed in place by reloads.
    """

    def __init__(self, config, schedulers, reactor, top, listeners=None, checks=True):
        from playbalancer.sweeper import Sweeper

        self.config = config
        self.schedulers = schedulers
        self.reactor = reactor
        self.top = top
        self.listeners = listeners if listeners is not None else []
        self.checkers = {}
        self.balancers = buildBalancers(
            config, schedulers, reactor, top if checks else None, self.checkers
        )
        self.sweeper = Sweeper(reactor)
        #: The manager's root resource, for manager routes (set before L{serve}).
        self.manager = None
        self.pools = {}
        self.endpoints = {}
        self.poolServices = {}
        #: The L{MemberAddresses} of each balancer, shared by its proxies.
        self.addresses = {}
        #: C{{endpoint: Served}}.
        self.served = {}
        self.parent = None
        #: C{{endpoint: ListenerService}} of the other listeners (the
        #: manager's), handed over in an upgrade with the front ones.
        self.others = {}
        #: The L{playbalancer.handover.Handover} this process started with.
        self.handover = NONE
        #: The L{playbalancer.workers.WorkerSupervisor}, when workers serve.
        self.supervisor = None
        #: In a worker process: the parent's sockets for manager routes.
        self.managerSockets = None
        self._resolvers = {}
        self._accessLogs = {}

    # Building

    def resolver(self, settings=None):
        """
        The DNS resolver (and its cache) of every listener's C{allow} lists:
        the one of C{settings} (a L{playbalancer.config.ResolverConfig}; by
        default the running config's), made once.
        """
        settings = self.config.resolver if settings is None else settings
        key = tuple(settings.servers or ())
        if key not in self._resolvers:
            from playbalancer.access import systemResolver

            self._resolvers = {key: systemResolver(self.reactor, settings.servers)}
        return self._resolvers[key]

    def makePools(self, balancerConfig):
        """
        A balancer's C{(endpoints, pools, pool service)}, not yet kept.

        @raise ConfigError: when its CA file cannot be used.
        """
        endpoints, pools = balancerPools(balancerConfig, self.reactor, self.sweeper)
        return endpoints, pools, (PoolService(pools) if pools is not None else None)

    def keepPools(self, name, made):
        """
        Keep a balancer's pools made by L{makePools}; they close when the
        balancer stops.
        """
        self.endpoints[name], pools, service = made
        if pools is not None:
            self.pools[name] = pools
            self.poolServices[name] = service
            service.setServiceParent(self.top)

    def buildPools(self):
        """
        Make and keep the member pools of every balancer.

        @raise ConfigError: when a balancer's CA file cannot be used.
        """
        for name, balancerConfig in self.config.balancers.items():
            self.keepPools(name, self.makePools(balancerConfig))

    def routesFor(self, listener, config, pools=None, balancers=None, policy=None):
        """
        The L{playbalancer.http.routing.ListenerRoutes} of an HTTP listener,
        to this process's balancers and pools or the ones given.

        @param policy: the manager's access policy for its routes (by
            default its own).
        """
        from playbalancer.listenerroutes import buildRoutes

        return buildRoutes(
            listener,
            config,
            self.balancers if balancers is None else balancers,
            self.pools if pools is None else pools,
            self.reactor,
            self.manager,
            lambda: self.resolver(config.resolver),
            self.addresses,
            policy=policy,
            managerSockets=self.managerSockets,
        )

    def accessLog(self, path, key="access_log", opened=None):
        """
        The access log written to C{path}, opened on first use (L{None} for
        none).  It stays open until the balancer stops, even once no
        listener uses it: connections accepted before a reload still log
        their requests there.

        @param key: the config key that names it, for errors.
        @param opened: a list to which C{(path, service)} of a log opened
            here is added (to close it again, see L{closeAccessLog}).
        @raise ConfigError: when it cannot be opened.
        """
        if not path:
            return None
        if path not in self._accessLogs:
            from playbalancer.config import ConfigError
            from playbalancer.observe.accesslog import AccessLog, ReopenOnSignal

            try:
                log = AccessLog.open(path, self.reactor)
            except OSError as e:
                raise ConfigError(key, f"cannot open {path}: {e.strerror}")
            service = ReopenOnSignal(log, self.reactor)
            service.setServiceParent(self.top)
            self._accessLogs[path] = log
            if opened is not None:
                opened.append((path, service))
        return self._accessLogs[path]

    def closeAccessLog(self, path, service):
        """
        Close an access log no listener got (a reload refused).
        """
        self._accessLogs.pop(path, None)
        service.disownServiceParent()

    def makeFront(
        self, listener, config, pools=None, endpoints=None, balancers=None, policy=None, opened=None
    ):
        """
        The front factory of a listener (an HTTP or TCP one), to this
        process's balancers, pools and member endpoints or the ones given.
        """
        from playbalancer.assembly import frontSettingsOf
        from playbalancer.http.front import HTTPFrontFactory
        from playbalancer.listenerroutes import trustedProxiesOf
        from playbalancer.tcp import TCPFrontFactory

        if listener.mode == "tcp":
            endpoints = self.endpoints if endpoints is None else endpoints
            balancers = self.balancers if balancers is None else balancers
            return TCPFrontFactory(
                balancers[listener.balancer],
                endpoints[listener.balancer].forMember,
                sendProxyProtocol=config.balancers[listener.balancer].sendProxyProtocol,
                acceptProxyProtocol=listener.acceptProxyProtocol,
                sweeper=self.sweeper,
                sendTimeout=listener.sendTimeout,
                idleTimeout=listener.tunnelIdleTimeout,
                maxConnections=listener.maxConnections,
                bufferSize=listener.bufferSize,
            )
        front = HTTPFrontFactory(
            settings=frontSettingsOf(listener),
            routes=self.routesFor(listener, config, pools, balancers, policy),
            sweeper=self.sweeper,
            bufferSize=listener.bufferSize,
            trustedProxies=trustedProxiesOf(listener),
        )
        index = config.listeners.index(listener)
        front.accessLog = self.accessLog(
            listener.accessLog, f"listen[{index}].access_log", opened
        )
        return front

    def listenerService(self, listener, front):
        """
        The service that listens for C{front} on C{listener}'s endpoint
        (not started).
        """
        from twisted.protocols.haproxy import proxyEndpoint

        from playbalancer.site import GracefulService

        name = listenerName(listener.endpoint)
        tls = listenerContexts(listener, front)
        endpoint = self.endpoint(listener.endpoint, front, tls)
        if listener.acceptProxyProtocol and listener.mode == "http":
            # Behind another balancer: the PROXY line it sends (v1 or v2)
            # gives the real client address.
            endpoint = proxyEndpoint(endpoint)
        service = GracefulService(
            endpoint, front, self.reactor, grace=self.config.shutdownGrace, name=name
        )
        service.tls = tls
        return service

    def endpoint(self, description, factory, tls=None):
        """
        The server endpoint of C{description} (a string) for C{factory}:
        the listening socket handed over by an upgrade, if any, else a new
        one.

        @param tls: for an C{ssl:} endpoint, the TLS options to listen with
            instead of the ones the string makes (see L{listenerContexts}).
        """
        from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString

        from playbalancer._net.internals import setListenerTLSOptions
        from playbalancer._net.tlslisten import negotiateProtocols, protocolsOf

        made = negotiateProtocols(
            serverFromString(self.reactor, withBacklog(description)), protocolsOf(factory)
        )
        if tls is not None and isinstance(made, SSL4ServerEndpoint):
            setListenerTLSOptions(made, tls)
        return self.handover.endpointFor(self.reactor, description, made)

    def listenOther(self, description, factory, parent):
        """
        Listen (under C{parent}) on another endpoint than the fronts': the
        manager's.
        """
        from playbalancer.site import ListenerService

        service = ListenerService(self.endpoint(description, factory), factory, listenerName(description))
        service.setServiceParent(parent)
        self.others[description] = service
        return service

    def handingOver(self):
        """
        Another process takes over: when this one stops, idle keep-alive
        connections get their next request answered before they close.
        """
        for served in self.served.values():
            served.service.lingerIdle = True
        if self.supervisor is not None:
            self.supervisor.lingerIdle = True

    def listeningSockets(self):
        """
        C{{endpoint: [file descriptor]}} of every listener this process
        serves, for an upgrade.
        """
        services = {served.config.endpoint: served.service for served in self.served.values()}
        services.update(self.others)
        from playbalancer._net.internals import shareOnStop

        sockets = {}
        if self.supervisor is not None:
            sockets.update(self.supervisor.listeningSockets())
        for description, service in services.items():
            fd = service.listeningSocket()
            if fd is not None:
                sockets[description] = [fd]
                # Stopping here must not stop the new process's accepts.
                shareOnStop(service.port)
        return sockets

    def serve(self, parent):
        """
        Make the member pools and the listeners, and listen (under
        C{parent}) once it runs.

        @raise ConfigError: when a balancer's CA file cannot be used.
        """
        self.parent = parent
        self.buildPools()
        for listener in self.config.listeners:
            front = self.makeFront(listener, self.config)
            served = Served(listener, front, self.listenerService(listener, front))
            served.service.setServiceParent(parent)
            self.keep(served)

    def keep(self, served):
        self.served[served.config.endpoint] = served
        self.listeners.append((served.name, served.front))

    def forget(self, served):
        del self.served[served.config.endpoint]
        self.listeners[:] = [(n, f) for n, f in self.listeners if f is not served.front]

    @property
    def openConnections(self):
        return sum(served.front.openConnections for served in self.served.values())


def withBacklog(description):
    """
    A listening endpoint string with a listen backlog: the one it names,
    else L{playbalancer.workers.listening.DEFAULT_BACKLOG} (Twisted's own
    default, 50, leaves a burst of new connections waiting a second for a
    SYN to be sent again).
    """
    from playbalancer.workers.listening import DEFAULT_BACKLOG

    kind = description.split(":", 1)[0]
    if kind in ("tcp", "tcp6", "ssl", "unix") and "backlog=" not in description:
        return f"{description}:backlog={DEFAULT_BACKLOG}"
    return description
