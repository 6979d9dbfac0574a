"""
Several worker processes serving the same listeners (C{workers = N}).

The parent process opens the listening sockets and hands them to N worker
processes, which accept from them (the kernel spreads connections); it
keeps running the manager, the health checks and the admin state.  Parent
and workers talk AMP over each worker's standard input and output:

  - C{"state"}, parent to worker: the members of every balancer with their
    admin state, standby flag, weight and (with health checks) health, as
    one versioned snapshot (L{playbalancer.memberstate}'s format, complete),
    pushed within a tenth of a second of a change.  The worker applies it
    through its balancers' methods, as the state file and a cluster node
    do.
  - C{"report"}, worker to parent, twice a second: its counters, its
    requests in flight per member, the latencies of the requests that ended
    since its last report, and the state version it applied.
  - L{Reopen}, parent to worker, on the parent's C{SIGUSR1}: reopen the
    access logs (logrotate's C{postrotate}).

The first two go as L{playbalancer.bigmessages} (compressed, in pieces), so
they may be larger than an AMP value.  The loops that send them log what
goes wrong and go on.

The manager shows the sums.  A drained member counts as idle only once
every worker has applied the drain and has nothing in flight on it.  A
worker that dies is started again; the others keep serving.
"""

from __future__ import annotations

import json
import signal
import socket
import sys

from twisted.application.service import Service
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols import amp

from playbalancer import memberstate
from playbalancer.bigmessages import PieceReceiver, pieces, sendMessage, sendPieces
from playbalancer.memory import childEnvironment
from playbalancer.stats import BUCKETS, FAILURE_KINDS

_log = Logger()

#: Seconds between a worker's reports.
REPORT_INTERVAL = 0.5
#: Seconds between the parent's checks for state to push.
PUSH_INTERVAL = 0.1
#: Seconds before a worker that died is started again.
RESTART_DELAY = 0.5


class Reopen(amp.Command):
    """
    Reopen the access logs.
    """

    arguments = []
    response = []


# The parent's side


#: The listen backlog of a worker's socket when the endpoint names none.
DEFAULT_BACKLOG = 1024


def endpointAddress(endpoint):
    """
    C{(family, interface, port, backlog)} of a C{tcp:} or C{tcp6:} endpoint
    string, parsed by Twisted's own endpoint parser (so escaped colons in
    an IPv6 interface, C{interface=\\:\\:1}, are understood).

    @raise ValueError: for other kinds of endpoint.
    """
    from twisted.internet.endpoints import (
        TCP4ServerEndpoint,
        TCP6ServerEndpoint,
        _parse,
        serverFromString,
    )

    try:
        parsed = serverFromString(None, endpoint)
    except Exception as e:
        raise ValueError(f"{endpoint!r}: {e}")
    if isinstance(parsed, TCP6ServerEndpoint):
        family, interface = socket.AF_INET6, parsed._interface or "::"
    elif isinstance(parsed, TCP4ServerEndpoint):
        family, interface = socket.AF_INET, parsed._interface
    else:
        raise ValueError(f"{endpoint!r}: workers need tcp: or tcp6: listeners")
    # Twisted's default backlog (50) is small for several processes.
    backlog = parsed._backlog if "backlog" in _parse(endpoint)[1] else DEFAULT_BACKLOG
    return family, interface, parsed._port, backlog


def listeningSocket(endpoint, port=None):
    """
    Open a listening socket of a C{tcp:} or C{tcp6:} endpoint string, with
    C{SO_REUSEPORT}: each worker gets its own socket on the same port, and
    the kernel spreads new connections evenly over them.

    @param port: the port to use instead of the endpoint's (the one the
        first socket got, for C{tcp:0}).
    @raise ValueError: for other kinds of endpoint.
    """
    family, interface, endpointPort, backlog = endpointAddress(endpoint)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((interface, endpointPort if port is None else port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


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
            _fold(self.retired, last)
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
        _fold(totals, {"members": self.retired.get("members", {})})
        for report in self.reports.values():
            _fold(totals, report)
        consistent = len(self.reports) == len(self.workers) and all(
            r["version"] >= self.version for r in self.reports.values()
        )
        for name, balancer in self.balancers.items():
            for member in list(balancer.members):
                counts = totals.get("members", {}).get(f"{name}/{member.name}")
                if counts is None:
                    continue
                _apply(member, counts)
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


_COUNTERS = ("requests", "failures", "bytesIn", "bytesOut", "retries")


def _fold(into, report):
    """
    Add a report's counters to C{into} (in place).
    """
    members = into.setdefault("members", {})
    for key, counts in report.get("members", {}).items():
        total = members.setdefault(key, _empty())
        for name in _COUNTERS + ("active",):
            total[name] += counts[name]
        for kind, value in counts["classes"].items():
            total["classes"][kind] = total["classes"].get(kind, 0) + value
        for kind, value in counts["kinds"].items():
            total["kinds"][kind] = total["kinds"].get(kind, 0) + value
        for histogram in ("firstByte", "total"):
            mine, theirs = total[histogram], counts[histogram]
            mine["counts"] = [a + b for a, b in zip(mine["counts"], theirs["counts"])]
            mine["sum"] += theirs["sum"]
            mine["count"] += theirs["count"]
    listeners = into.setdefault("listeners", [])
    for index, counts in enumerate(report.get("listeners", [])):
        if index >= len(listeners):
            listeners.append(dict.fromkeys(("open", "accepted", "rejected", "refused"), 0))
        for name, value in counts.items():
            listeners[index][name] += value


def _empty():
    histogram = {"counts": [0] * (len(BUCKETS) + 1), "sum": 0.0, "count": 0}
    return dict(
        dict.fromkeys(_COUNTERS + ("active",), 0),
        classes={},
        kinds={},
        firstByte=dict(histogram),
        total=dict(histogram, counts=list(histogram["counts"])),
    )


def _apply(member, counts):
    """
    Show the workers' summed counters on the parent's member.
    """
    member.active = counts["active"]
    member.requests = counts["requests"]
    member.failures = counts["failures"]
    member.bytesIn = counts["bytesIn"]
    member.bytesOut = counts["bytesOut"]
    stats = member.stats
    stats.retries = counts["retries"]
    stats.statusClasses.update(counts["classes"])
    stats.failures.update(counts["kinds"])
    for name in ("firstByte", "total"):
        histogram = getattr(stats, name)
        histogram.counts = list(counts[name]["counts"])
        histogram.sum = counts[name]["sum"]
        histogram.count = counts[name]["count"]


# The worker's side


def memberCounts(member):
    """
    One member's counters, for a L{Report}.
    """
    stats = member.stats
    return {
        "active": member.active,
        "requests": member.requests,
        "failures": member.failures,
        "bytesIn": member.bytesIn,
        "bytesOut": member.bytesOut,
        "retries": stats.retries,
        "classes": dict(stats.statusClasses),
        "kinds": {k: stats.failures[k] for k in FAILURE_KINDS},
        "firstByte": {
            "counts": list(stats.firstByte.counts),
            "sum": stats.firstByte.sum,
            "count": stats.firstByte.count,
        },
        "total": {"counts": list(stats.total.counts), "sum": stats.total.sum, "count": stats.total.count},
    }


class WorkerAgent(PieceReceiver, amp.AMP):
    """
    A worker's end of the control channel: applies the parent's state and
    reports counters.

    @param fronts: the worker's C{[(listener config, factory)]}.
    """

    def __init__(self, balancers, fronts, clock, makeMember=None):
        amp.AMP.__init__(self)
        self.balancers = balancers
        self.fronts = fronts
        self.clock = clock
        self.makeMember = makeMember
        self.version = 0
        self._loop = None
        # The newest latency sample reported, by member.
        self._latencyMarks = {}

    def connectionMade(self):
        amp.AMP.connectionMade(self)
        self._loop = LoopingCall(self.report)
        self._loop.clock = self.clock
        self._loop.start(REPORT_INTERVAL)

    def connectionLost(self, reason):
        amp.AMP.connectionLost(self, reason)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        # The parent is gone: so is this worker's reason to run.
        if self.clock.running:
            self.clock.stop()

    def messageReceived(self, kind, message):
        if kind == "state":
            self.setState(message["version"], message["state"])

    @Reopen.responder
    def reopen(self):
        """
        Reopen this worker's access logs.
        """
        failed = []
        for listener, front in self.fronts:
            log = getattr(front, "accessLog", None)
            if log is not None:
                try:
                    log.reopen()
                except Exception:
                    _log.failure("access log {path}: could not reopen it", path=log.path)
                    failed.append(log.path)
        if failed:
            raise OSError(f"could not reopen {', '.join(failed)}")
        return {}

    def setState(self, version, state):
        """
        Apply the parent's snapshot C{state}, and report at once.
        """
        self.apply(state)
        self.version = version
        self.report()

    def apply(self, state):
        """
        Make the balancers' members match the parent's complete snapshot
        (L{playbalancer.memberstate}'s format, each entry with C{"down"}):
        admin state through the balancers' methods, then health.
        """
        if "balancers" not in state:
            state = _fromListState(state)
        added = memberstate.apply(state, self.balancers, "parent", complete=True, makeMember=self._makeMember)
        added = set(map(id, added))
        for name, table in state["balancers"].items():
            balancer = self.balancers.get(name)
            if balancer is None or not balancer.activeChecks:
                continue
            for member in balancer.members:
                item = table["members"].get(member.name)
                if item is None or member.removing:
                    continue
                self._health(balancer, member, item.get("down"), id(member) in added)

    def _makeMember(self, name, item):
        if self.makeMember is None:
            return memberstate.newMember(name, item)
        return self.makeMember(dict(item, name=name))

    def _health(self, balancer, member, down, new):
        """
        Show the parent's health checks' verdict on C{member}: C{down} is
        why it is out of rotation, or L{None}.
        """
        if down is None:
            if member.downSince is not None and not new:
                # Back up: ramp up as the parent does.
                member.slowStart(self.clock, balancer.slowStart)
            member.downSince = member.downUntil = member.downReason = None
        elif member.downSince is None:
            member.downSince = self.clock.seconds()
            member.downUntil = float("inf")
            member.downReason = down

    def report(self):
        """
        Send the parent a report (and log it if that fails).
        """
        try:
            sendMessage(self, "report", self.counts())
        except Exception:
            _log.failure("could not report to the parent")

    def counts(self):
        """
        The report: counters, in flight, the state version applied.
        """
        members = {}
        latency = {}
        for name, balancer in self.balancers.items():
            for member in balancer.members:
                key = f"{name}/{member.name}"
                if key in members:
                    # One on its way out, after its namesake added again
                    # (see memberstate): its requests in flight count.
                    members[key]["active"] += member.active
                    continue
                members[key] = memberCounts(member)
                samples = self._newLatencies(key, member)
                if samples:
                    latency[key] = samples
        listeners = []
        for listener, factory in self.fronts:
            listeners.append(
                {
                    "open": factory.openConnections,
                    "accepted": factory.accepted,
                    "rejected": getattr(factory, "rejected", 0),
                    "refused": getattr(factory, "refused", 0),
                }
            )
        for gone in set(self._latencyMarks) - set(members):
            del self._latencyMarks[gone]
        return {
            "version": self.version,
            "members": members,
            "listeners": listeners,
            "latency": latency,
        }

    def _newLatencies(self, key, member):
        """
        C{[[at, seconds], ...]}: the member's latency samples newer than
        the last ones reported, oldest first.
        """
        mark = self._latencyMarks.get(key, float("-inf"))
        samples = []
        for at, seconds in reversed(member._latencies):
            if at <= mark:
                break
            samples.append([at, round(seconds, 6)])
        if samples:
            self._latencyMarks[key] = samples[0][0]
        samples.reverse()
        return samples



def _fromListState(state):
    """
    The state message of a parent older than this worker's code (one list
    of members per balancer), in L{playbalancer.memberstate}'s format.
    """
    return {
        "format": memberstate.FORMAT,
        "balancers": {
            name: {
                "members": {
                    spec["name"]: {k: spec[k] for k in ("url", "admin", "standby", "weight", "down") if k in spec}
                    for spec in members
                },
                "removed": [],
            }
            for name, members in state.items()
        },
    }


def share(total, index, count, least=1):
    """
    Worker C{index}'s part of a budget of C{total} divided among C{count}
    workers: C{total // count}, one more for the first C{total % count}
    workers, at least C{least}; C{0} (no limit) stays C{0}.
    """
    if total == 0:
        return 0
    return max(least, total // count + (1 if index < total % count else 0))
