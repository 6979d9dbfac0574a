"""
A reload in two steps: L{prepare} does everything that can fail (a new
config's balancers, schedulers, pools, health checks and routes built, new
listeners bound) and changes nothing; L{Reconfiguration.apply} then
changes the running balancer (a L{playbalancer.running.Running}) in
place and cannot fail.  A config that cannot be applied leaves the
running balancer as it was.

What a reload keeps: balancers and members that keep their names (a
member that keeps its URL too keeps its admin state, health, counters and
connections), listeners that keep their endpoints (their connections
stay; new requests take the new routes and settings).  A member's weight
and standby flag set at run time stay unless the new file changes that
setting; a member whose URL changes is a new member.  What it removes
finishes what it has in flight: a removed member or balancer gets no new
request and its connections close once idle; a removed listener stops
accepting and closes its connections gracefully.
"""

from __future__ import annotations

import math

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger

from playbalancer.assembly import buildBalancer, healthCheckerOf, memberRoutes
from playbalancer.balancer import Member
from playbalancer.config import ConfigError
from playbalancer.configdiff import diffConfigs
from playbalancer.running import Served
from playbalancer.sticky import affinityFor

_log = Logger()

#: Who the balancers' logs and the state file name as making a change.
WHO = "reload"


def _live(balancer, name):
    """
    The member called C{name} that is not on its way out, or L{None}.
    """
    member = balancer.member(name)
    return None if member is None or member.removing else member


def _member(config):
    return Member(
        config.name, config.url, weight=config.weight, standby=config.standby, aliases=config.aliases
    )


def prepare(running, config, keeper=None, schedulers=None):
    """
    Make ready the change of C{running} to C{config}.

    @param keeper: the L{playbalancer.statefile.StateKeeper}, if any.
    @param schedulers: the scheduler factories by name (by default the
        ones C{running} started with).
    @raise ConfigError: naming what cannot be applied; nothing changed.
    """
    plan = Reconfiguration(running, config, diffConfigs(running.config, config), keeper)
    if schedulers is not None:
        plan.schedulerFactories = schedulers
    try:
        plan.build()
    except BaseException:
        plan.cancel()
        raise
    return plan


class Reconfiguration:
    """
    A reload made ready by L{prepare}.

    @ivar diff: the L{playbalancer.configdiff.ConfigDiff}.
    """

    def __init__(self, running, config, diff, keeper=None):
        self.running = running
        self.config = config
        self.diff = diff
        self.keeper = keeper
        self.balancers = dict(running.balancers)
        self.pools = dict(running.pools)
        self.endpoints = dict(running.endpoints)
        #: New pools by balancer: C{(endpoints, pools, service)}.
        self.newPools = {}
        self.schedulers = {}
        #: New health checkers by balancer (L{None}: checks end).
        self.checkers = {}
        self.routes = {}
        self.added = []
        #: C{(path, service)} of the access logs opened for it.
        self.openedLogs = []
        self.policy = None
        self.schedulerFactories = running.schedulers
        #: C{(ListenerContexts, ContextSet)} of the kept TLS listeners
        #: whose certificates changed.
        self.contexts = []

    # Step 1: everything that can fail

    def build(self):
        running, config, diff = self.running, self.config, self.diff
        schedulers = self.schedulerFactories
        for name in diff.balancersRemoved:
            del self.balancers[name]
            self.pools.pop(name, None)
            self.endpoints.pop(name, None)
        for name in diff.balancersAdded:
            balancerConfig = config.balancers[name]
            self.balancers[name] = buildBalancer(
                balancerConfig, schedulers[balancerConfig.scheduler], running.reactor
            )
            self._makePools(name)
            if balancerConfig.health is not None:
                self.checkers[name] = healthCheckerOf(
                    self.balancers[name], balancerConfig, running.reactor
                )
        for change in diff.balancers:
            settings = change.settings
            if "scheduler" in settings or "schedulerOptions" in settings:
                factory = schedulers[change.new.scheduler]
                try:
                    self.schedulers[change.name] = factory.makeScheduler(
                        dict(change.new.schedulerOptions)
                    )
                except ValueError as e:
                    raise ConfigError(f"balancer.{change.name}.scheduler_options", str(e))
            if change.newPools:
                self._makePools(change.name)
            if "health" in settings or any(name.startswith("tls") for name in settings):
                self.checkers[change.name] = (
                    healthCheckerOf(self.balancers[change.name], change.new, running.reactor)
                    if change.new.health is not None
                    else None
                )
        self._prepareManager()
        if running.parent is None:
            # Worker processes serve the listeners: check here what would
            # stop them.
            checkAccessLogs(config)
            return
        for old, new in diff.listenersKept:
            self._prepareCertificates(old, new)
            if new.mode == "http":
                self.routes[new.endpoint] = running.routesFor(
                    new, config, self.pools, self.balancers, self.policy
                )
                index = config.listeners.index(new)
                running.accessLog(new.accessLog, f"listen[{index}].access_log", self.openedLogs)
        for index, listener in enumerate(config.listeners):
            if listener in diff.listenersAdded:
                self._listen(index, listener)

    def _prepareCertificates(self, old, new):
        """
        New TLS contexts for a kept listener whose certificate files
        changed (they were read again with the config).
        """
        tls = getattr(self.running.served[old.endpoint].service, "tls", None)
        if tls is not None and new.certificates != tls.certificates:
            try:
                self.contexts.append((tls, tls.prepare(new.certificates)))
            except Exception as e:
                index = self.config.listeners.index(new)
                raise ConfigError(f"listen[{index}].endpoint", f"cannot use its certificates: {e}")

    def _makePools(self, name):
        made = self.running.makePools(self.config.balancers[name])
        self.newPools[name] = made
        self.endpoints[name] = made[0]
        if made[1] is not None:
            self.pools[name] = made[1]

    def _prepareManager(self):
        manager = self.running.manager
        settings = self.config.manager
        if manager is None or settings is None:
            return
        from playbalancer.manager.guard import AccessPolicy
        from playbalancer.tokens import readTokenFile

        token = None
        if settings.tokenFile:
            try:
                token = readTokenFile(settings.tokenFile)
            except ValueError as e:
                raise ConfigError("manager.token_file", str(e))
        old = manager.policy
        self.policy = AccessPolicy(
            settings.allow, token, old.clock, secret=old._secret, hosts=settings.allowedHosts
        )

    def _listen(self, index, listener):
        running = self.running
        front = running.makeFront(
            listener,
            self.config,
            self.pools,
            self.endpoints,
            self.balancers,
            self.policy,
            self.openedLogs,
        )
        served = Served(listener, front, running.listenerService(listener, front))
        try:
            served.service.privilegedStartService()
        except Exception as e:
            raise ConfigError(f"listen[{index}].endpoint", f"cannot listen on {listener.endpoint}: {e}")
        self.added.append(served)

    def cancel(self):
        """
        Undo L{build}: close the listeners it opened.
        """
        for served in self.added:
            served.service.stopService()
        self.added = []
        for path, service in reversed(self.openedLogs):
            self.running.closeAccessLog(path, service)
        self.openedLogs = []

    # Step 2: the change

    def apply(self):
        """
        Change the running balancer; returns L{ConfigDiff.summary}.
        """
        running, diff = self.running, self.diff
        if self.policy is not None:
            policy = running.manager.policy
            policy.networks, policy.hosts, policy.token = (
                self.policy.networks,
                self.policy.hosts,
                self.policy.token,
            )
        for name in diff.balancersAdded:
            running.balancers[name] = self.balancers[name]
        for name, made in self.newPools.items():
            self._swapPools(name, made)
        for change in diff.balancers:
            self._changeBalancer(running.balancers[change.name], change)
        for name, checker in self.checkers.items():
            old = running.checkers.pop(name, None)
            if old is not None:
                old.disownServiceParent()
            if checker is not None:
                running.checkers[name] = checker
                checker.setServiceParent(running.top)
        if running.parent is not None:
            self._changeListeners()
        for name in diff.balancersRemoved:
            self._removeBalancer(name)
        running.config = self.config
        for served in running.served.values():
            served.service.grace = self.config.shutdownGrace
        if self.keeper is not None:
            self.keeper.reconfigured(self.config)
        return diff.summary()

    def _swapPools(self, name, made):
        running = self.running
        service = running.poolServices.pop(name, None)
        if service is not None:
            service.retire()
        running.pools.pop(name, None)
        running.keepPools(name, made)

    def _changeAffinity(self, balancer, change):
        """
        A new or changed C{sticky} table makes a new affinity, which keeps
        the sessions seen (drains under way are the members' own); routes
        follow the file.
        """
        new, older = change.new, balancer.sticky
        if "sticky" in change.settings:
            balancer.sticky = affinityFor(balancer, new.sticky, memberRoutes(new))
            if balancer.sticky is not None and older is not None:
                balancer.sticky.takeOver(older)
        elif older is not None:
            older.routes = memberRoutes(new)

    def _changeBalancer(self, balancer, change):
        new = change.new
        balancer.retry = new.retry
        balancer.failOnStatus = frozenset(new.failOnStatus)
        balancer.retryIdempotencyKey = new.retryIdempotencyKey
        balancer.rollingRestart = new.rollingRestart
        self._changeAffinity(balancer, change)
        if change.name in self.schedulers:
            balancer.scheduler = self.schedulers[change.name]
            balancer.schedulerName = new.scheduler
        if "health" in change.settings:
            balancer.activeChecks = new.health is not None
            balancer.healthSettings = new.health
            balancer.slowStart = new.health.slowstart if new.health is not None else 0.0
            if new.health is None:
                # Down until a check passes, with no checks left: rest
                # as after a failure instead.
                for member in balancer.members:
                    if member.downUntil == math.inf:
                        member.downUntil = balancer.seconds() + balancer.retry
        pools = self.running.pools.get(change.name)
        members = {m.name: m for m in new.members}
        for name in change.removed:
            member = balancer.member(name)
            if member is not None:
                balancer.removeMember(member, who=WHO)
                self._retire(pools, member, balancer)
        for memberChange in change.changed:
            member = _live(balancer, memberChange.name)
            if member is None or memberChange.replaced:
                self._replace(balancer, member, memberChange.new, pools)
                continue
            if "weight" in memberChange.changed:
                balancer.setWeight(member, memberChange.new.weight, who=WHO)
            if "standby" in memberChange.changed:
                balancer.setStandby(member, memberChange.new.standby, who=WHO)
            member.aliases = tuple(memberChange.new.aliases)
        for name in change.added:
            member = _live(balancer, name)
            if member is not None and member.url == members[name].url:
                # Added at run time already: the file adopts it.
                balancer.setWeight(member, members[name].weight, who=WHO)
                balancer.setStandby(member, members[name].standby, who=WHO)
            else:
                self._replace(balancer, member, members[name], pools)
        order = {m.name: i for i, m in enumerate(new.members)}
        balancer.members.sort(key=lambda m: order.get(m.name, len(order)))

    def _replace(self, balancer, old, config, pools):
        if old is not None:
            balancer.removeMember(old, who=WHO, detach=True)
            self._retire(pools, old, balancer)
        leaving = balancer.member(config.name)
        if leaving is not None:
            # Removed before and still finishing its requests: out of the
            # way of the new one (its requests still end).
            balancer.members.remove(leaving)
        balancer.addMember(_member(config), who=WHO)

    def _retire(self, pools, member, balancer):
        if pools is not None:
            pools.retireMember(member, [m for m in balancer.members if m is not member])

    def _changeListeners(self):
        running = self.running
        for old, new in self.diff.listenersKept:
            served = running.served[old.endpoint]
            served.config = new
            front = served.front
            if new.mode == "tcp":
                _changeTCPFront(front, new, self.config, running)
                continue
            from playbalancer.assembly import frontSettingsOf
            from playbalancer.listenerroutes import trustedProxiesOf

            routes = self.routes[new.endpoint]
            routes.carryCounters(front.routes)
            front.settings = frontSettingsOf(new)
            front.noRoute.maxBody = new.maxBody
            front.bufferSize = new.bufferSize
            front.trustedProxies = trustedProxiesOf(new)
            front.accessLog = running.accessLog(new.accessLog)
            front.routes = routes
        for tls, contexts in self.contexts:
            tls.install(contexts)
        for served in self.added:
            served.service.setServiceParent(running.parent)
            running.keep(served)
        for listener in self.diff.listenersRemoved:
            served = running.served[listener.endpoint]
            running.forget(served)
            served.service.lingerIdle = True
            served.stopped = maybeDeferred(served.service.disownServiceParent)
            served.stopped.addErrback(lambda f: _log.failure("stopping a removed listener", f))

    def _removeBalancer(self, name):
        running = self.running
        balancer = running.balancers.pop(name)
        checker = running.checkers.pop(name, None)
        if checker is not None:
            checker.disownServiceParent()
        service = running.poolServices.pop(name, None)
        if service is not None:
            service.retire()
        running.pools.pop(name, None)
        running.endpoints.pop(name, None)
        running.addresses.pop(name, None)
        _log.info(
            "balancer {balancer} removed by reload; its {active} request(s) in flight finish",
            balancer=name,
            active=sum(m.active for m in balancer.members),
        )


def _changeTCPFront(front, listener, config, running):
    front.balancer = running.balancers[listener.balancer]
    front.endpointFor = running.endpoints[listener.balancer].forMember
    front.sendProxyProtocol = config.balancers[listener.balancer].sendProxyProtocol
    front.acceptProxyProtocol = listener.acceptProxyProtocol
    front.sendTimeout = listener.sendTimeout
    front.idleTimeout = listener.tunnelIdleTimeout
    front.maxConnections = listener.maxConnections
    front.bufferSize = listener.bufferSize


def checkAccessLogs(config):
    """
    Check that every listener's access log can be opened for appending
    (what worker processes will do).

    @raise ConfigError: naming the first that cannot.
    """
    for index, listener in enumerate(config.listeners):
        if listener.accessLog and listener.accessLog != "-":
            try:
                with open(listener.accessLog, "ab"):
                    pass
            except OSError as e:
                raise ConfigError(
                    f"listen[{index}].access_log",
                    f"cannot open {listener.accessLog}: {e.strerror}",
                )
