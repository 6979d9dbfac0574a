"""
A worker process (see L{playbalancer.workers}): started by the parent with
the configuration and the listening sockets, it serves them until the
parent goes away or tells it to stop.

Run as C{python -m playbalancer.worker} by the parent only.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def divideLimits(config, index):
    """
    Give this worker its share of the limits that hold for the whole
    balancer: C{max_connections}, C{max_connections_per_member} and
    C{queue} (see L{playbalancer.workers.limits.share}).
    """
    from playbalancer.workers.limits import share

    count = config.workers
    for listener in config.listeners:
        listener.maxConnections = share(listener.maxConnections, index, count)
    for balancer in config.balancers.values():
        balancer.maxConnections = share(balancer.maxConnections, index, count)
        balancer.queue = share(balancer.queue, index, count, least=0)


def withTLS(listener, front):
    """
    The factory to listen with for C{front}: for an C{ssl:} listener, one
    that does TLS with the listener's certificates (read from their files
    when this worker read the config), else C{front} itself.
    """
    from playbalancer.running import listenerContexts

    tls = listenerContexts(listener, front)
    if tls is None:
        return front
    from twisted.protocols.tls import TLSMemoryBIOFactory

    return TLSMemoryBIOFactory(tls, False, front)


def main():
    from twisted.internet import reactor
    from twisted.internet.stdio import StandardIO
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from playbalancer.config import parseConfig
    from playbalancer.memory import settleHeap, tuneAllocator
    from playbalancer.schedulers import availableSchedulers
    from playbalancer._net.adopt import adoptListening
    from playbalancer.running import Running
    from playbalancer.workers.agent import WorkerAgent

    tuneAllocator()
    setup = json.loads(os.environ.pop("PLAYBALANCER_WORKER"))
    # Our standard output is the parent's control channel: what is printed
    # (access_log = "-") goes to the parent's standard output instead.
    sys.stdout = os.fdopen(setup["stdout"], "w")
    # The parent passes SIGUSR1 on (as Reopen); sent to the process group,
    # it must not end a worker that has no access log to reopen.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stderr, timeFormat=None)], redirectStandardIO=False
    )
    schedulers = availableSchedulers()
    config = parseConfig(setup["config"], schedulers)
    divideLimits(config, setup["index"])
    from twisted.application.service import MultiService

    top = MultiService()
    running = Running(config, schedulers, reactor, top, checks=False)
    running.managerSockets = setup.get("managerSockets", {})
    balancers = running.balancers
    running.buildPools()
    fronts = [(listener, running.makeFront(listener, config)) for listener in config.listeners]
    ports = []
    for (listener, front), (fd, family) in zip(fronts, setup["fds"]):
        ports.append(adoptListening(reactor, fd, withTLS(listener, front), family))
        os.close(fd)

    agent = WorkerAgent(balancers, fronts, reactor)
    agent.ports = ports
    StandardIO(agent)

    def stopping():
        from twisted.internet.defer import DeferredList, maybeDeferred

        waits = [maybeDeferred(port.stopListening) for port in ports]
        for listener, front in fronts:
            if hasattr(front, "closeGracefully"):
                waits.append(
                    front.closeGracefully(reactor, config.shutdownGrace, agent.lingerIdle)
                )
        waits.append(maybeDeferred(top.stopService))
        return DeferredList(waits)

    top.startService()
    settleHeap()
    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    reactor.run()


if __name__ == "__main__":
    main()
