"""
The routes of an HTTP listener (L{playbalancer.http.routing}) built from
its config: a proxy per balancer route with the route's settings, the
manager under its path, the answers of our own, and the C{allow} lists.
"""

from __future__ import annotations

import ipaddress

from playbalancer.assembly import makeProxy
from playbalancer.http.routing import AnswerTarget, BalancerTarget, ListenerRoutes, ManagerTarget
from playbalancer.http.trust import TrustedProxies


def trustedProxiesOf(listener):
    """
    The L{TrustedProxies} of a listener's config.
    """
    return TrustedProxies(
        ipaddress.ip_network(n, strict=False) for n in listener.trustedProxies
    )


def buildRoutes(
    listener,
    config,
    balancers,
    pools,
    reactor,
    manager=None,
    resolver=None,
    addresses=None,
    policy=None,
    managerSockets=None,
):
    """
    The L{ListenerRoutes} of C{listener} (a
    L{playbalancer.config.ListenConfig}).

    @param manager: the manager's root resource, for manager routes.
    @param resolver: a function of no arguments returning the DNS resolver
        for host-name C{allow} rules (made when first needed).
    @param addresses: a dict, by balancer name, of the
        L{playbalancer.http.memberaddresses.MemberAddresses} its proxies
        share (so that a thousand routes to one balancer look its members'
        names up once); filled in as needed.
    @param policy: the manager's access policy its routes start from (by
        default C{manager.policy}).
    @param managerSockets: in a worker process (no C{manager}), the
        parent's sockets for the manager routes (see
        L{playbalancer.workers.managerroutes}), by route key.
    """
    from playbalancer.http.memberaddresses import MemberAddresses

    trusted = trustedProxiesOf(listener)
    targets = []
    for route in listener.routes:
        access = None
        if route.allow is not None:
            access = makeAccess(route.allow, config.resolver, reactor, resolver)
        if route.balancer is not None:
            balancerConfig = config.balancers[route.balancer]
            if addresses is None:
                addresses = {}
            if route.balancer not in addresses:
                addresses[route.balancer] = MemberAddresses(reactor)
            proxy = makeProxy(
                balancers[route.balancer],
                pools[route.balancer],
                balancerConfig,
                reactor,
                listener,
                route,
                trusted,
                addresses[route.balancer],
            )
            target = BalancerTarget(
                route.name,
                route.host,
                route.path,
                proxy,
                stripPrefix=route.stripPrefix,
                maxBody=listener.maxBody if route.maxBody is None else route.maxBody,
                access=access,
            )
        elif route.manager:
            if manager is None:
                from playbalancer.workers.managerroutes import RemoteMount, routeKey

                key = routeKey(config.listeners.index(listener), route)
                mount = RemoteMount(managerSockets[key], reactor)
            else:
                mount = managerMount(route, listener, manager, policy, trusted)
            target = ManagerTarget(route.name, route.host, route.path, mount, access=access)
        else:
            redirect = route.redirect.encode("ascii") if route.redirect is not None else None
            target = AnswerTarget(
                route.name, route.host, route.path, route.status, redirect, access=access
            )
            target.maxBody = listener.maxBody
        targets.append(target)
    return ListenerRoutes(targets)


def managerMount(route, listener, manager, policy=None, trusted=None):
    """
    The L{ManagerMount} of a manager route: the manager under the route's
    path, with its policy for requests that come that way.

    @param policy: the manager's access policy it starts from (by default
        C{manager.policy}).
    """
    from playbalancer.manager.mount import ManagerMount

    if trusted is None:
        trusted = trustedProxiesOf(listener)
    base = manager.policy if policy is None else policy
    routePolicy = base.forRoute(route.host, addressChecked=route.allow is not None)
    return ManagerMount(route.path, manager, trusted.networks, policy=routePolicy)


def makeAccess(rules, resolverConfig, reactor, resolver=None):
    """
    The L{playbalancer.access.ClientAccess} of an C{allow} list.

    @param resolver: see L{buildRoutes}; without one, host-name rules ask
        a resolver of their own.
    """
    from playbalancer.access import ClientAccess, systemResolver

    dns = None
    if any(not _isAddressRule(rule) for rule in rules):
        dns = resolver() if resolver is not None else systemResolver(
            reactor, resolverConfig.servers
        )
    return ClientAccess(rules, dns, reactor, timeout=resolverConfig.timeout)


def _isAddressRule(rule):
    if rule == "unix:":
        return True
    try:
        ipaddress.ip_network(rule, strict=False)
    except ValueError:
        return False
    return True
