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


def handedState(balancers, config):
    """
    The member state an upgrade hands over: admin state, weight, standby,
    members added and removed at run time, and why members are down; and
    (as C{"config"}) what the old process's file said of each member, so
    that the new one knows which settings its file changed.
    """
    configured = {name: {m.name for m in b.members} for name, b in config.balancers.items()}
    state = memberstate.snapshot(balancers, configured, health=True)
    state["config"] = {
        name: {m.name: {"url": m.url, "weight": m.weight, "standby": m.standby} for m in b.members}
        for name, b in config.balancers.items()
    }
    return state


def _fileWins(state, config):
    """
    Drop from C{state} what the new file changed, as a reload does: a
    member whose URL changed starts afresh; a weight or standby flag the
    file changed is the file's.
    """
    before = state.pop("config", {})
    for name, table in state.get("balancers", {}).items():
        balancerConfig = config.balancers.get(name)
        if balancerConfig is None:
            continue
        now = {m.name: m for m in balancerConfig.members}
        for memberName in list(table.get("members", {})):
            old, new = before.get(name, {}).get(memberName), now.get(memberName)
            if old is None or new is None:
                continue
            if old["url"] != new.url:
                del table["members"][memberName]
                continue
            for key in ("weight", "standby"):
                if old[key] != getattr(new, key):
                    table["members"][memberName].pop(key, None)


def applyHandedState(state, balancers, clock, config=None):
    """
    Put the state the old process handed over onto freshly built
    balancers (from C{config}): its run-time changes, except what the file
    changed since (see L{_fileWins}); its members that are down stay down
    until their checks pass.
    """
    if config is not None:
        _fileWins(state, config)
    else:
        state.pop("config", None)
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
    upgrader = Upgrader(
        running,
        reactor,
        lambda: handedState(running.balancers, running.config),
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
