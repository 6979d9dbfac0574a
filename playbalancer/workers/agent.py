"""
The worker's side (see L{playbalancer.workers}): applies the parent's
state through its balancers' methods, reports its counters, reopens its
access logs when told.
"""

from __future__ import annotations

import math

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols import amp

from playbalancer import memberstate
from playbalancer.bigmessages import PieceReceiver, sendMessage
from playbalancer.workers.counters import memberCounts
from playbalancer.workers.protocol import REPORT_INTERVAL, Reopen, Retire

_log = Logger(namespace="playbalancer.workers")


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

    #: Set by L{Retire}: the stop that follows lets idle connections linger.
    lingerIdle = False
    #: The worker's listening ports (a list it shares with the worker).
    ports = ()

    @Retire.responder
    def retire(self):
        """
        Stop accepting at once (answered once stopped), and let idle
        connections linger on the stop that follows.
        """
        from twisted.internet.defer import DeferredList, maybeDeferred

        self.lingerIdle = True
        stopping = [maybeDeferred(port.stopListening) for port in self.ports]
        del self.ports[:]
        return DeferredList(stopping, consumeErrors=True).addCallback(lambda _: {})

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
        if state.get("format") != memberstate.FORMAT:
            # An older parent: one list of members per balancer (and a
            # balancer may well be called "balancers").
            state = _fromListState(state)
        added = memberstate.apply(
            state, self.balancers, "parent", complete=True, makeMember=self._makeMember, log=_log
        )
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

    def _makeMember(self, balancer, name, item):
        """
        The member the parent's ENTRY C{item} adds.  With active checks it
        is down until L{_health} shows the parent's verdict, already when
        added: C{addMember}'s "not checked yet" then logs nothing (only the
        first time down is), so a member the parent has up is not logged
        down here; the parent logs its members' health.
        """
        if self.makeMember is None:
            member = memberstate.newMember(balancer, name, item)
        else:
            member = self.makeMember(dict(item, name=name))
        if balancer.activeChecks:
            member.downSince = self.clock.seconds()
            member.downUntil = math.inf
            member.downReason = item.get("down") or "not checked yet"
        return member

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
        else:
            if member.downSince is None:
                member.downSince = self.clock.seconds()
                member.downUntil = math.inf
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
                members[key] = memberCounts(member, balancer.sticky)
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
                    "routes": factory.routeCounters() if hasattr(factory, "routeCounters") else [],
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
