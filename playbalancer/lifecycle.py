"""
How a running C{twistd playbalancer} changes without a restart: C{SIGHUP}
reloads the config (L{playbalancer.reload}), C{SIGUSR2} hands over to a
new process (L{playbalancer.upgrade}); the manager offers both.  This
module wires them to the service C{makeService} builds.
"""

from __future__ import annotations

import signal

from twisted.application.service import Service

from playbalancer import memberstate


class OnSignal(Service):
    """
    While running, signal C{number} calls C{action(name)} in the reactor
    thread (C{name}: the signal's, e.g. C{"SIGHUP"}).
    """

    def __init__(self, number, action, reactor):
        self.number = number
        self.action = action
        self.reactor = reactor
        self._previous = None

    def startService(self):
        Service.startService(self)
        try:
            self._previous = signal.signal(self.number, self._signalled)
        except ValueError:  # not the main thread (tests)
            self._previous = None

    def _signalled(self, number, frame):
        self.reactor.callFromThread(self.action, signal.Signals(number).name)

    def stopService(self):
        Service.stopService(self)
        if self._previous is not None:
            # While the process stops (an upgrade's old one may take its
            # shutdown_grace), a stray signal must not end it at once.
            keep = self._previous
            if keep in (signal.SIG_DFL, None):
                keep = signal.SIG_IGN
            signal.signal(self.number, keep)
            self._previous = None


def handedState(balancers, configured):
    """
    The member state an upgrade hands over: admin state, weight, standby,
    members added and removed at run time, and why members are down.
    """
    return memberstate.snapshot(balancers, configured, health=True)


def applyHandedState(state, balancers, clock):
    """
    Put the state the old process handed over onto freshly built
    balancers: its run-time changes, and its members that are down stay
    down until their checks pass.
    """
    memberstate.apply(state, balancers, "upgrade")
    now = clock.seconds()
    for name, table in state.get("balancers", {}).items():
        balancer = balancers.get(name)
        if balancer is None or not balancer.activeChecks:
            continue
        for memberName, item in table.get("members", {}).items():
            member = balancer.member(memberName)
            if member is not None and item.get("down"):
                balancer.memberHealth.markDown(member, item["down"], now)


def addLifecycle(top, running, options, reactor, keeper=None, node=None, supervisor=None):
    """
    Give C{top} (made by C{makeService}) its reloader and upgrader, the
    signals that start them, and the service that says when it serves.
    """
    from playbalancer.handover import SayPid, Serving
    from playbalancer.reload import Reloader
    from playbalancer.upgrade import Upgrader

    loader = getattr(options, "loader", None)  # (Options made by hand have none)
    reloader = Reloader(running, loader() if loader is not None else None, keeper, supervisor)
    configured = lambda: {  # noqa: E731
        name: {m.name for m in b.members} for name, b in running.config.balancers.items()
    }
    upgrader = Upgrader(
        running,
        reactor,
        lambda: handedState(running.balancers, configured()),
        lambda: reactor.stop(),  # (looked up late: a test's clock has none)
        cwd=getattr(options, "startDirectory", None),
    )
    OnSignal(signal.SIGHUP, reloader.reload, reactor).setServiceParent(top)
    OnSignal(signal.SIGUSR2, upgrader.upgrade, reactor).setServiceParent(top)
    predecessor = None
    if running.handover.old is not None:
        from playbalancer.handover import Predecessor

        predecessor = Predecessor(running.handover.old)
        if node is not None:
            node.predecessor = predecessor
    if running.manager is not None:
        running.manager.reloader = reloader
        running.manager.upgrader = upgrader
        running.manager.predecessor = predecessor
    ready = [d for d in (node and node.ready, supervisor and supervisor.ready) if d is not None]
    if ready:
        from twisted.internet.defer import gatherResults

        ready = gatherResults(ready)
    Serving(running.handover, reactor, ready or None).setServiceParent(top)
    # First to start, once twistd has daemonized: the new process's own PID.
    sayPid = SayPid(running.handover)
    sayPid.setServiceParent(top)
    top.services.remove(sayPid)
    top.services.insert(0, sayPid)
    top.reloader = reloader
    top.upgrader = upgrader
