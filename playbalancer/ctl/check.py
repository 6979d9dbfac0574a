"""
C{playbalancer check CONFIG}: check a configuration file as start-up does
(as C{nginx -t}, C{haproxy -c} and C{apachectl configtest} do), without
binding a port or starting anything, and print what it would run.
"""

from __future__ import annotations

from twisted.application.service import MultiService

from playbalancer.assembly import buildBalancers, buildPools
from playbalancer.config import ConfigError, loadConfig
from playbalancer.ctl.client import CommandError
from playbalancer.routes import Route, RouteTable
from playbalancer.schedulers import availableSchedulers
from playbalancer.sweeper import Sweeper
from playbalancer.tokens import readTokenFile


def checkConfig(path, reactor, out):
    """
    Check the config file at C{path} as start-up does: every key and value,
    the endpoints (certificate files included), the schedulers and their
    options, the members' TLS settings, the manager's token file.  Print
    the listeners and balancers to C{out}.

    @raise CommandError: the first problem, in start-up's words (naming the
        key).
    """
    schedulers = availableSchedulers()
    try:
        config = loadConfig(path, schedulers)
        unstarted = MultiService()
        buildBalancers(config, schedulers, reactor, unstarted)
        buildPools(config, reactor, unstarted, Sweeper(reactor))
    except ConfigError as e:
        raise CommandError(str(e))
    manager = config.manager
    if manager is not None and manager.tokenFile:
        try:
            readTokenFile(manager.tokenFile)
        except ValueError as e:
            raise CommandError(f"manager.token_file: {e}")
    out.write(describe(config, path))


def describe(config, path):
    """
    What C{config} runs, as text: its listeners in order, then its
    balancers and their members.
    """
    lines = [f"{path}: OK ({config.workers} worker(s))"]
    for index, listener in enumerate(config.listeners):
        head = f"listen[{index}] {listener.endpoint} ({listener.mode})"
        if listener.mode == "tcp":
            lines.append(f"{head} -> balancer {listener.balancer}")
            continue
        lines.append(f"{head}, routes in the order they match:")
        lines.extend(f"  {line}" for line in routeLines(listener.routes))
    if config.manager is not None:
        lines.append(f"manager {config.manager.endpoint}")
    for name, balancer in config.balancers.items():
        lines.append(f"balancer {name} ({balancer.mode}, {balancer.scheduler})")
        if balancer.sticky is not None:
            lines.append(f"  sessions: {stickyLine(balancer.sticky)}")
        for member in balancer.members:
            role = ", standby" if member.standby else ""
            lines.append(f"  {member.name} {member.url} weight {member.weight}{role}")
    return "\n".join(lines) + "\n"


def stickyLine(sticky):
    """
    How a balancer keeps sessions on a member (a
    L{playbalancer.config.sticky.StickyConfig}), in one line.
    """
    if sticky.insertsCookie:
        how = f"cookie {sticky.cookie} inserted"
        if sticky.maxAge is not None:
            how += f" (max age {sticky.maxAge}s)"
    else:
        kinds = [f"cookie {sticky.sessionCookie}" if sticky.sessionCookie else None,
                 f"URL parameter {sticky.sessionParam}" if sticky.sessionParam else None]
        how = "the route suffix of " + " or ".join(k for k in kinds if k)
    return f"{how}; a draining member keeps them {sticky.drainSeconds:g}s"


def routeLines(routes):
    """
    A listener's routes (L{playbalancer.config.RouteConfig}s), one line
    each, in the order they are matched: C{NAME HOST PATH -> TARGET}.
    """
    table = RouteTable(Route(r.name, r.host, r.path, r) for r in routes)
    lines = []
    for entry in table.inOrder():
        route = entry.target
        lines.append(
            f"{route.name}: {route.host or '(any host)'} {route.path} -> {targetText(route)}"
        )
    return lines


def targetText(route):
    """
    What a route (a L{playbalancer.config.RouteConfig}) does, in words.
    """
    if route.kind == "balancer":
        text = f"balancer {route.balancer}"
        if route.stripPrefix and route.path != "/":
            text += f" (without {route.path})"
    elif route.kind == "manager":
        text = "the manager"
    elif route.kind == "redirect":
        text = f"redirect {route.status} to {route.redirect}"
    else:
        text = f"answer {route.status}"
    if route.allow is not None:
        text += f"; allow {', '.join(route.allow)}"
    return text
