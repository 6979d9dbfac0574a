"""
The parent's side (see L{playbalancer.workers}): starts the workers,
pushes the state to them, sums their reports and starts again a worker
that died.
"""

from __future__ import annotations

import json
import signal
import sys

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from playbalancer import memberstate
from playbalancer.bigmessages import pieces, sendPieces
from playbalancer.memory import childEnvironment
from playbalancer.workers.counters import fold, show
from playbalancer.workers.listening import listeningSocket
from playbalancer.workers.generation import Generation
from playbalancer.workers.managerroutes import ManagerSockets
from playbalancer.workers.process import SummedListener, WorkerProcess
from playbalancer.workers.protocol import PUSH_INTERVAL, RESTART_DELAY, Reopen, Retire

_log = Logger(namespace="playbalancer.workers")

#: A listener's counters that only grow.
_COUNTED = ("accepted", "rejected", "refused")


class CannotListen(Exception):
    """
    The listener at C{index} (its C{endpoint}) cannot be listened on.
    """

    def __init__(self, index, endpoint, error):
        Exception.__init__(self, f"cannot listen on {endpoint}: {error}")
        self.index = index
        self.endpoint = endpoint


class WorkerSupervisor(Service):
    """
    Runs the workers and keeps them and the parent's view in step.

    @param config: the L{playbalancer.config.Config} (with its C{raw} data).
    @param balancers: the parent's balancers (admin state, health, manager).
    @param listeners: filled with C{(name, summed counters)} for metrics.
    """

    def __init__(
        self, config, balancers, reactor, listeners, names, handover=None, manager=None
    ):
        self.config = config
        self.manager = manager
        self.balancers = balancers
        self.reactor = reactor
        self.count = config.workers
        self.handover = handover
        # sockets[listener][worker]: the parent keeps them all open, so a
        # worker started again finds its own, with the connections queued
        # on it meanwhile.
        self.sockets = self.socketsFor(config)
        self.managerSockets = ManagerSockets(config, manager, reactor).open()
        self.previousManagerSockets = []
        self.ports = [group[0].getsockname()[1] for group in self.sockets]
        self.listeners = listeners
        self.summed = [SummedListener() for _ in config.listeners]
        listeners.extend(zip(names, self.summed))
        #: The workers of the current generation, by index.
        self.workers = {}
        self.generation = 0
        #: A reload's generation on its way in (L{Incoming}), or L{None}.
        self.incoming = None
        #: Listener counters of workers gone, by endpoint (they go on
        #: counting from there).
        self.base = {}
        #: Set when another process takes over (see L{Running.handingOver}).
        self.lingerIdle = False
        #: Workers of earlier generations, finishing their requests.
        self.leaving = {}
        #: Fires once every worker of the first generation has reported.
        self.ready = Deferred()
        self.reports = {}
        self.retired = {}
        self.version = 0
        self._state = None
        self._pieces = None
        self._previousUSR1 = None
        self._push = None
        self._stopping = False

    def socketsFor(self, config, reuse=None):
        """
        The listening sockets of C{config}'s listeners, one per worker:
        the groups in C{reuse} (C{{endpoint: group}}) or handed over by an
        upgrade where they exist, new ones otherwise.

        @raise CannotListen: when one cannot be opened (those opened here
            are closed again), or for an endpoint workers cannot serve.
        """
        reuse = reuse or {}
        groups, opened = [], []
        try:
            for index, listener in enumerate(config.listeners):
                group = list(reuse.get(listener.endpoint) or self._handedOver(listener.endpoint))
                while len(group) < self.count:
                    port = group[0].getsockname()[1] if group else None
                    try:
                        sock = listeningSocket(listener.endpoint, port)
                    except (OSError, ValueError) as e:
                        raise CannotListen(index, listener.endpoint, e)
                    opened.append(sock)
                    group.append(sock)
                groups.append(group)
        except BaseException:
            for sock in opened:
                sock.close()
            raise
        return groups

    def _handedOver(self, endpoint):
        if self.handover is None:
            return []
        from playbalancer._net.adopt import socketOf

        group = [socketOf(fd) for fd in self.handover.takeSockets(endpoint)]
        for extra in group[self.count:]:
            extra.close()
        return group[: self.count]

    def listeningSockets(self):
        """
        C{{endpoint: [file descriptor, ...]}} of the workers' sockets, for
        an upgrade.
        """
        return {
            listener.endpoint: [sock.fileno() for sock in group]
            for listener, group in zip(self.config.listeners, self.sockets)
        }

    def startService(self):
        Service.startService(self)
        self._stopping = False
        for index in range(self.count):
            self._spawn(index)
        self._push = LoopingCall(self._pushState)
        self._push.clock = self.reactor
        self._push.start(PUSH_INTERVAL)
        try:
            self._previousUSR1 = signal.signal(signal.SIGUSR1, self._signalled)
        except ValueError:  # not the main thread (tests)
            self._previousUSR1 = None

    def _signalled(self, number, frame):
        self.reactor.callFromThread(self.reopenLogs)
        if callable(self._previousUSR1):
            self._previousUSR1(number, frame)

    def reopenLogs(self):
        """
        Tell every worker to reopen its access logs (and log each answer).
        """
        for process in list(self.workers.values()):
            d = process.control.callRemote(Reopen)
            d.addCallback(
                lambda _, index=process.index: _log.info(
                    "worker {index} reopened its access logs", index=index
                )
            )
            d.addErrback(
                lambda f, index=process.index: _log.failure(
                    "worker {index} could not reopen its access logs", f, index=index
                )
            )

    def _spawnAgain(self, index, generation):
        if generation == self.generation:
            self._spawn(index)

    def _current(self):
        return Generation(self.generation, self.config, self.sockets, self.managerSockets)

    def _spawn(self, index, generation=None):
        if generation is None:
            generation = self._current()
        incoming = self.incoming
        if self._stopping or (
            generation.number != self.generation
            and (incoming is None or incoming.generation.number != generation.number)
        ):
            return
        childFDs = {0: "w", 1: "r", 2: "r"}
        fds = []
        for offset, group in enumerate(generation.sockets):
            sock = group[index]
            childFDs[3 + offset] = sock.fileno()
            fds.append([3 + offset, sock.family])
        # Our standard output, for access_log = "-" (the worker's own is
        # the control channel).
        stdout = 3 + len(generation.sockets)
        childFDs[stdout] = sys.__stdout__.fileno()
        env = childEnvironment()
        env["PLAYBALANCER_WORKER"] = json.dumps(
            {
                "config": generation.config.raw,
                "fds": fds,
                "index": index,
                "stdout": stdout,
                "managerSockets": generation.managerSockets.paths,
            }
        )
        self.reactor.spawnProcess(
            WorkerProcess(self, index, generation.number),
            sys.executable,
            [sys.executable, "-m", "playbalancer.worker"],
            env=env,
            childFDs=childFDs,
        )

    def workerStarted(self, process):
        incoming = self.incoming
        if incoming is not None and incoming.owns(process):
            incoming.workers[process.index] = process
            self._send(process)
            return
        if process.generation != self.generation:
            # Started just before a reload: it serves the old config.
            self.leaving[process] = None
            self._retire(process)
            return
        self.workers[process.index] = process
        _log.info(
            "worker {index} started (pid {pid})",
            index=process.index,
            pid=process.pid,
            playbalancer_event="worker.started",
        )
        self._send(process)

    def workerEnded(self, process, reason):
        incoming = self.incoming
        if incoming is not None and incoming.workers.get(process.index) is process:
            del incoming.workers[process.index]
            incoming.failed(
                f"worker {process.index} on the new config ended before it served"
                + (f": {process.lastLine}" if process.lastLine else "")
            )
            return
        if process in self.leaving:
            last = self.leaving.pop(process)
            if last is not None:
                fold(self.retired, {"members": last.get("members", {})})
            self._sum()
            if not self.leaving:
                self._closeUnused()
            return
        if self.workers.get(process.index) is process:
            del self.workers[process.index]
        last = self.reports.pop(process.index, None)
        if last is not None:
            fold(self.retired, {"members": last.get("members", {})})
            self._keepListenerCounts(self.config.listeners, last)
        self._sum()
        if not self._stopping and process.generation == self.generation:
            _log.warn(
                "worker {index} (pid {pid}) ended: {reason}; starting it again",
                index=process.index,
                pid=process.pid,
                reason=reason.getErrorMessage(),
                playbalancer_event="worker.ended",
            )
            self.reactor.callLater(RESTART_DELAY, self._spawnAgain, process.index, process.generation)

    # Reloads: a new generation of workers

    def startGeneration(self, config, sockets, timeout, policy=None):
        """
        Start a new generation of workers on C{config} (from a reload) and
        C{sockets} (from L{socketsFor}, reusing the current ones), beside
        the ones that serve.

        @return: a L{Deferred} that fires once every new worker has
            reported (then call L{commit}), or fails with
            L{WorkersFailed} if one ends first or C{timeout} seconds pass
            (then the new generation is gone again).
        @param policy: the manager's access policy the new config's manager
            routes start from (see L{ManagerSockets}).
        """
        from playbalancer.workers.generation import Incoming

        managerSockets = ManagerSockets(config, self.manager, self.reactor, policy).open()
        generation = Generation(self.generation + 1, config, sockets, managerSockets)
        incoming = self.incoming = Incoming(generation, self.count)
        incoming.timer = self.reactor.callLater(
            timeout, incoming.failed, f"the new workers did not serve within {timeout:g} s"
        )
        incoming.ready.addErrback(self._abandon, incoming)
        for index in range(self.count):
            self._spawn(index, generation)
        return incoming.ready

    def _abandon(self, failure, incoming):
        """
        The new generation failed: stop its workers, close what only it
        used; the current one serves on.
        """
        self.incoming = None
        for process in list(incoming.workers.values()):
            self.leaving[process] = None
            self._retire(process)
        current = {id(sock) for group in self.sockets for sock in group}
        for group in incoming.generation.sockets:
            for sock in group:
                if id(sock) not in current:
                    sock.close()
        incoming.generation.managerSockets.close()
        return failure

    def abandonIncoming(self):
        """
        Give the new generation up (its config could not be applied).
        """
        incoming = self.incoming
        if incoming is not None:
            self._abandon(None, incoming)

    def commit(self):
        """
        The new generation serves: it is the current one; the old workers
        stop accepting, finish their requests and exit.

        @return: a L{Deferred} that fires once no old worker accepts.
        """
        incoming, self.incoming = self.incoming, None
        generation = incoming.generation
        for process in self.workers.values():
            self.leaving[process] = self.reports.get(process.index)
        self.previousSockets = getattr(self, "previousSockets", []) + self.sockets
        self.previousManagerSockets.append(self.managerSockets)
        old = self.config
        for report in self.reports.values():
            self._keepListenerCounts(old.listeners, report)
        self.generation = generation.number
        self.config = generation.config
        self.sockets = generation.sockets
        self.managerSockets = generation.managerSockets
        self.workers, self.reports = incoming.workers, incoming.reports
        self.ports = [group[0].getsockname()[1] for group in self.sockets]
        self.summed = [SummedListener() for _ in self.config.listeners]
        from playbalancer.running import listenerName

        self.listeners[:] = [
            (listenerName(listener.endpoint), summed)
            for listener, summed in zip(self.config.listeners, self.summed)
        ]
        retired = [self._retire(process) for process in list(self.leaving)]
        self._sum()
        return DeferredList(retired)

    def _keepListenerCounts(self, listeners, report):
        """
        Keep what a worker counted (one going away) for its listeners.
        """
        for listener, counts in zip(listeners, report.get("listeners", [])):
            kept = self.base.setdefault(listener.endpoint, dict.fromkeys(_COUNTED, 0))
            for name in _COUNTED:
                kept[name] += counts.get(name, 0)

    def _retire(self, process, linger=True):
        """
        Stop C{process}: with C{linger} (others take over), after it has
        stopped accepting and knows to let idle connections have their next
        request answered.

        @return: a L{Deferred} that fires once it no longer accepts.
        """

        def stop(_=None):
            try:
                process.transport.signalProcess("TERM")
            except Exception:
                pass

        if not linger:
            stop()
            return succeed(None)
        try:
            return process.control.callRemote(Retire).addBoth(stop)
        except Exception:
            stop()
            return succeed(None)

    def _closeUnused(self):
        """
        Close the sockets of listeners no generation serves any more.
        """
        inUse = {id(sock) for group in self.sockets for sock in group}
        for group in getattr(self, "previousSockets", []):
            for sock in group:
                if id(sock) not in inUse:
                    sock.close()
        self.previousSockets = []
        for sockets in self.previousManagerSockets:
            sockets.close()
        self.previousManagerSockets = []

    # State, parent to workers

    def snapshot(self):
        """
        The state for the workers, as JSON text: a complete
        L{playbalancer.memberstate} snapshot, with the health by the
        parent's checks.
        """
        return json.dumps(memberstate.snapshot(self.balancers, health=True))

    def _pushState(self):
        try:
            state = self.snapshot()
        except Exception:
            _log.failure("could not take a snapshot of the state for the workers")
            return
        if state == self._state:
            return
        self.version += 1
        self._state = state
        try:
            self._pieces = pieces({"version": self.version, "state": json.loads(state)})
        except Exception:
            _log.failure("could not encode state {version}", version=self.version)
            self._pieces = None
            return
        incoming = self.incoming
        for process in list(self.workers.values()) + (
            list(incoming.workers.values()) if incoming is not None else []
        ):
            self._send(process)

    def _send(self, process):
        if self._pieces is None:
            return
        try:
            sendPieces(process.control, "state", self._pieces)
        except Exception:
            _log.failure(
                "could not send state {version} to worker {index}",
                version=self.version,
                index=process.index,
            )

    # Reports, workers to parent

    def gotReport(self, process, report):
        incoming = self.incoming
        if process in self.leaving:
            self.leaving[process] = report
        elif incoming is not None and incoming.owns(process):
            incoming.reported(process, report)
        elif self.workers.get(process.index) is process:
            self.reports[process.index] = report
            if len(self.reports) == self.count and not self.ready.called:
                self.ready.callback(None)
        for key, samples in report.pop("latency", {}).items():
            balancerName, memberName = key.split("/", 1)
            balancer = self.balancers.get(balancerName)
            member = balancer.member(memberName) if balancer is not None else None
            if member is not None:
                for at, seconds in samples:
                    member.recordLatency(at, seconds)
        self._sum()

    def _sum(self):
        totals = {}
        fold(totals, {"members": self.retired.get("members", {})})
        for report in self.reports.values():
            fold(totals, report)
        for report in self.leaving.values():
            if report is not None:
                fold(totals, {"members": report.get("members", {})})
        consistent = len(self.reports) == len(self.workers) and all(
            r["version"] >= self.version for r in self.reports.values()
        )
        for name, balancer in self.balancers.items():
            for member in list(balancer.members):
                counts = totals.get("members", {}).get(f"{name}/{member.name}")
                if counts is None:
                    continue
                show(member, counts)
                if member.active == 0 and consistent:
                    waiters, member._idleWaiters = member._idleWaiters, []
                    for d in waiters:
                        d.callback(member)
                    if member.removing and member in balancer.members:
                        balancer.members.remove(member)
        for listener, summed, counts in zip(
            self.config.listeners, self.summed, totals.get("listeners", [])
        ):
            kept = self.base.get(listener.endpoint, {})
            summed.openConnections = counts["open"]
            for name in _COUNTED:
                setattr(summed, name, counts[name] + kept.get(name, 0))
            summed.routes = counts.get("routes", [])

    def caughtUp(self):
        """
        Whether every worker has applied the balancers' state as it is now
        (sent now if it changed).
        """
        self._pushState()
        return len(self.reports) == len(self.workers) == self.count and all(
            r["version"] >= self.version for r in self.reports.values()
        )

    def sync(self):
        """
        Send the workers any change not sent yet, now (so that what
        L{tierState} counts as behind includes it).
        """
        self._pushState()

    def tierState(self, balancerName, memberName):
        """
        What a drain of one member waits for across the workers (as
        L{playbalancer.cluster.node.ClusterNode.tierState} does across
        nodes): its requests in flight in every worker, and the workers
        that have not reported since applying the latest state.
        """
        balancer = self.balancers.get(balancerName)
        member = balancer.member(memberName) if balancer is not None else None
        behind = [
            str(index)
            for index in sorted(self.workers)
            if (self.reports.get(index, {}).get("version") or 0) < self.version
        ]
        inflight = member.active if member is not None else 0
        return {"inflight": inflight, "behind": behind, "idle": not behind and inflight == 0}

    def status(self):
        """
        The workers as the manager shows them.
        """
        return [
            {
                "index": index,
                "pid": process.pid,
                "version": self.reports.get(index, {}).get("version"),
            }
            for index, process in sorted(self.workers.items())
        ]

    def stopService(self):
        Service.stopService(self)
        self._stopping = True
        if self._push is not None and self._push.running:
            self._push.stop()
        if self._previousUSR1 is not None:
            signal.signal(signal.SIGUSR1, self._previousUSR1)
            self._previousUSR1 = None
        waits = []
        incoming = list(self.incoming.workers.values()) if self.incoming is not None else []
        for process in list(self.workers.values()) + list(self.leaving) + incoming:
            d = Deferred()
            original = process.processEnded

            def ended(reason, original=original, d=d):
                original(reason)
                d.callback(None)

            process.processEnded = ended

            def term(_=None, process=process, d=d):
                try:
                    process.transport.signalProcess("TERM")
                except Exception:
                    if not d.called:
                        d.callback(None)

            if self.lingerIdle and process not in self.leaving:
                # (An upgrade: the new parent's workers take over.)
                process.control.callRemote(Retire).addBoth(term)
            else:
                term()
            waits.append(d)
        for group in self.sockets + getattr(self, "previousSockets", []):
            for sock in group:
                sock.close()
        for sockets in [self.managerSockets] + self.previousManagerSockets:
            sockets.close()
        return DeferredList(waits)
