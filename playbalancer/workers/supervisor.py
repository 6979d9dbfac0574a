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
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols import amp

from playbalancer import memberstate
from playbalancer.bigmessages import PieceReceiver, pieces, sendPieces
from playbalancer.memory import childEnvironment
from playbalancer.workers.counters import fold, show
from playbalancer.workers.listening import listeningSocket
from playbalancer.workers.protocol import PUSH_INTERVAL, RESTART_DELAY, Reopen

_log = Logger(namespace="playbalancer.workers")


class _WorkerControl(PieceReceiver, amp.AMP):
    def __init__(self, supervisor, index):
        amp.AMP.__init__(self)
        self.supervisor = supervisor
        self.index = index

    def messageReceived(self, kind, message):
        if kind == "report":
            self.supervisor.gotReport(self.index, message)


class _ProcessAddress:
    def __init__(self, pid):
        self.pid = pid

    def __repr__(self):
        return f"<worker process {self.pid}>"


class _ToWorker:
    """
    The transport AMP writes to: a worker's standard input.
    """

    def __init__(self, process):
        self.process = process

    def write(self, data):
        self.process.write(data)

    def writeSequence(self, data):
        self.process.writeSequence(data)

    def loseConnection(self):
        self.process.closeStdin()

    def getPeer(self):
        return _ProcessAddress(self.process.pid)

    getHost = getPeer


class _WorkerProcess(ProcessProtocol):
    """
    One worker process: AMP on its standard input and output, its
    standard error into our log.
    """

    def __init__(self, supervisor, index):
        self.supervisor = supervisor
        self.index = index
        self.control = _WorkerControl(supervisor, index)
        self.pid = None

    def connectionMade(self):
        self.pid = self.transport.pid
        self.control.makeConnection(_ToWorker(self.transport))
        self.supervisor.workerStarted(self)

    def outReceived(self, data):
        self.control.dataReceived(data)

    def errReceived(self, data):
        for line in data.decode("utf-8", "replace").splitlines():
            _log.info("worker {index}: {line}", index=self.index, line=line)

    def processEnded(self, reason):
        self.control.connectionLost(reason)
        self.supervisor.workerEnded(self, reason)


class _SummedListener:
    """
    A listener's counters summed over the workers, for the metrics.
    """

    def __init__(self):
        self.openConnections = 0
        self.accepted = self.rejected = self.refused = 0
        self.routes = []

    def routeCounters(self):
        return self.routes


class WorkerSupervisor(Service):
    """
    Runs the workers and keeps them and the parent's view in step.

    @param config: the L{playbalancer.config.Config} (with its C{raw} data).
    @param balancers: the parent's balancers (admin state, health, manager).
    @param listeners: filled with C{(name, summed counters)} for metrics.
    """

    def __init__(self, config, balancers, reactor, listeners, names):
        self.config = config
        self.balancers = balancers
        self.reactor = reactor
        self.count = config.workers
        # sockets[listener][worker]: the parent keeps them all open, so a
        # worker started again finds its own, with the connections queued
        # on it meanwhile.
        self.sockets = []
        for listener in config.listeners:
            first = listeningSocket(listener.endpoint)
            port = first.getsockname()[1]
            others = [listeningSocket(listener.endpoint, port) for _ in range(self.count - 1)]
            self.sockets.append([first] + others)
        self.ports = [group[0].getsockname()[1] for group in self.sockets]
        self.summed = [_SummedListener() for _ in config.listeners]
        listeners.extend(zip(names, self.summed))
        self.workers = {}
        self.reports = {}
        self.retired = {}
        self.version = 0
        self._state = None
        self._pieces = None
        self._previousUSR1 = None
        self._push = None
        self._stopping = False

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

    def _spawn(self, index):
        if self._stopping:
            return
        childFDs = {0: "w", 1: "r", 2: "r"}
        fds = []
        for offset, group in enumerate(self.sockets):
            sock = group[index]
            childFDs[3 + offset] = sock.fileno()
            fds.append([3 + offset, sock.family])
        # Our standard output, for access_log = "-" (the worker's own is
        # the control channel).
        stdout = 3 + len(self.sockets)
        childFDs[stdout] = sys.__stdout__.fileno()
        env = childEnvironment()
        env["PLAYBALANCER_WORKER"] = json.dumps(
            {"config": self.config.raw, "fds": fds, "index": index, "stdout": stdout}
        )
        self.reactor.spawnProcess(
            _WorkerProcess(self, index),
            sys.executable,
            [sys.executable, "-m", "playbalancer.worker"],
            env=env,
            childFDs=childFDs,
        )

    def workerStarted(self, process):
        self.workers[process.index] = process
        _log.info(
            "worker {index} started (pid {pid})",
            index=process.index,
            pid=process.pid,
            playbalancer_event="worker.started",
        )
        self._send(process)

    def workerEnded(self, process, reason):
        if self.workers.get(process.index) is process:
            del self.workers[process.index]
        last = self.reports.pop(process.index, None)
        if last is not None:
            fold(self.retired, last)
        self._sum()
        if not self._stopping:
            _log.warn(
                "worker {index} (pid {pid}) ended: {reason}; starting it again",
                index=process.index,
                pid=process.pid,
                reason=reason.getErrorMessage(),
                playbalancer_event="worker.ended",
            )
            self.reactor.callLater(RESTART_DELAY, self._spawn, process.index)

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
        for process in list(self.workers.values()):
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

    def gotReport(self, index, report):
        self.reports[index] = report
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
        for summed, counts in zip(self.summed, totals.get("listeners", [])):
            summed.openConnections = counts["open"]
            summed.accepted = counts["accepted"]
            summed.rejected = counts["rejected"]
            summed.refused = counts["refused"]
            summed.routes = counts.get("routes", [])

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
        from twisted.internet.defer import Deferred, DeferredList

        waits = []
        for process in list(self.workers.values()):
            d = Deferred()
            original = process.processEnded

            def ended(reason, original=original, d=d):
                original(reason)
                d.callback(None)

            process.processEnded = ended
            try:
                process.transport.signalProcess("TERM")
            except Exception:
                d.callback(None)
            waits.append(d)
        for group in self.sockets:
            for sock in group:
                sock.close()
        return DeferredList(waits)
