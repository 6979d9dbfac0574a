"""
A discrete-event simulator for scheduler authors: it runs any
L{playbalancer.interfaces.IScheduler} against synthetic members and a
synthetic request stream (L{playbalancer.testing.simulated}) on a
L{twisted.internet.task.Clock}, and reports how the requests were spread,
the keys that moved between phases, the latency clients saw and the time
each pick took (L{playbalancer.testing.simreport.SimulationReport}).

The balancer in the simulation is the real one
(L{playbalancer.balancer.Balancer} with real
L{playbalancer.balancer.Member}s): the candidates a scheduler is given
follow the same rules as in production (admin state, weight, members
resting after a failure, the standby rule), and a request's attempts begin
and end on it, so C{member.active} is live.  As the proxy does, a request
whose member refuses the connection goes on to another one, and one
answered with a status in C{failOnStatus} is tried once more elsewhere.

Response-time feedback: a scheduler that also provides
L{playbalancer.interfaces.IResponseTimeObserver} gets the simulation's
clock, and each attempt's time to its answer (or its failure), from the
balancer, exactly as in the proxy (see L{playbalancer.responsetimes}).
"""

from __future__ import annotations

import random
import time

from zope.interface import alsoProvides, implementer

from twisted.internet.task import Clock

from playbalancer import outcome
from playbalancer.balancer import Balancer, Member
from playbalancer.interfaces import IResponseTimeObserver, IScheduler
from playbalancer.testing.simreport import Tally

__all__ = ["Simulation", "simulate"]


@implementer(IScheduler)
class _TimedScheduler:
    """
    The scheduler under test, its picks timed and checked.
    """

    def __init__(self, scheduler, times):
        self.scheduler = scheduler
        self._times = times
        if IResponseTimeObserver.providedBy(scheduler):
            # (Told what the balancer tells the scheduler it stands for.)
            alsoProvides(self, IResponseTimeObserver)
            self.setClock = scheduler.setClock
            self.responseTime = scheduler.responseTime
            self.failed = scheduler.failed

    def pick(self, candidates, request):
        counter = time.perf_counter
        start = counter()
        chosen = self.scheduler.pick(candidates, request)
        self._times.append(counter() - start)
        for candidate in candidates:
            if candidate is chosen:
                return chosen
        raise AssertionError(f"{self.scheduler!r} picked {chosen!r}, not one of {candidates!r}")


class _Request:
    __slots__ = ("key", "view", "sent", "tried", "connectFailed", "retried", "phase")

    def __init__(self, key, view, sent, phase):
        self.key = key
        self.view = view
        self.sent = sent
        self.tried = []
        self.connectFailed = False
        self.retried = False
        self.phase = phase


class Simulation:
    """
    One run of a scheduler against synthetic members and requests.

    @param scheduler: the L{IScheduler} provider under test (a new one: it
        keeps its state across the run).
    @param members: the L{playbalancer.testing.simulated.SimulatedMember}s
        at the start, in configured order.
    @param stream: the L{playbalancer.testing.simulated.RequestStream}.
    @param events: L{playbalancer.testing.simulated.Event}s; each begins a
        phase of the report.
    @param seed: seeds the draws of arrivals, keys and latencies (not the
        scheduler's own: give it a seed of its own if it is random).
    @param retry: seconds a member rests after a failure (the balancer's
        C{retry}).
    @param failOnStatus: statuses that count as a member failure (the
        balancer's C{fail_on_status}).
    @param slowStart: seconds over which a member that came back ramps up
        to its weight (the balancer's C{slow_start}).

    @ivar clock: the L{Clock} the simulation runs on.
    @ivar balancer: the real L{Balancer} it drives.
    """

    def __init__(self, scheduler, members, stream, events=(), seed=0, retry=60.0, failOnStatus=(), slowStart=0.0):
        self.scheduler = scheduler
        self.stream = stream
        self.seed = seed
        self.clock = Clock()
        self._rng = random.Random(seed)
        self._tally = Tally(self.clock)
        self._simulated = {}
        self._memberRandom = {}
        self.balancer = Balancer(
            "simulated", _TimedScheduler(scheduler, self._tally.pickTimes), [], self.clock, retry=retry
        )
        self.balancer.failOnStatus = frozenset(failOnStatus)
        self.balancer.slowStart = slowStart
        self.balancer.members = [self._member(simulated) for simulated in members]
        self._events = sorted(events, key=lambda event: event.at)
        self._sent = self._finished = 0
        self._ran = False

    def _member(self, simulated):
        name = simulated.name
        self._simulated[name] = simulated
        self._memberRandom[name] = random.Random(f"{self.seed}/{name}")
        member = Member(
            name, f"http://member-{len(self._simulated)}.invalid:8080/", simulated.weight, simulated.standby
        )
        self._tally.member(member)
        return member

    def run(self):
        """
        Send every request, let every answer come, and report.

        @rtype: L{playbalancer.testing.simreport.SimulationReport}
        """
        if self._ran:
            raise RuntimeError("a Simulation runs once; make another")
        self._ran = True
        clock = self.clock
        pending = [clock.callLater(event.at, self._apply, event) for event in self._events]
        stream = self.stream
        if stream.rate is not None:
            clock.callLater(0, self._arrive)
        else:
            for _ in range(min(stream.concurrency, stream.count)):
                clock.callLater(0, self._send)
        while self._finished < stream.count:
            calls = clock.getDelayedCalls()
            if not calls:
                raise AssertionError("the simulation stalled")
            # The clock keeps its calls in time order.
            clock.advance(max(0.0, calls[0].getTime() - clock.seconds()))
        notes = []
        for call, event in zip(pending, self._events):
            if call.active():
                call.cancel()
                notes.append(f"{event.label!r} at {event.at:g} s did not happen: the stream had ended")
        return self._tally.report(requests=stream.count, seed=self.seed, stream=repr(stream), notes=notes)

    # The client

    def _arrive(self):
        self._send()
        stream = self.stream
        if self._sent < stream.count:
            if stream.arrivals == "even":
                # From the count, not by adding up gaps: no drift.
                wait = self._sent / stream.rate - self.clock.seconds()
            else:
                wait = stream.gap(self._rng)
            self.clock.callLater(max(0.0, wait), self._arrive)

    def _send(self):
        self._sent += 1
        keys = self.stream.keys
        key = keys.draw(self._rng)
        request = _Request(key, keys.view(key), self.clock.seconds(), self._tally.phase)
        self._attempt(request)

    def _done(self, request, status, answered):
        tally = self._tally
        tally.statuses[status] += 1
        if answered:
            tally.latencies.append(self.clock.seconds() - request.sent)
        else:
            tally.unanswered[status] += 1
        self._finished += 1
        stream = self.stream
        if stream.concurrency is not None and self._sent < stream.count:
            self.clock.callLater(stream.think, self._send)

    # The balancer's side, as the proxy plays it

    def _attempt(self, request):
        balancer = self.balancer
        tally = self._tally
        while True:
            member = balancer.pick(request.view, request.tried)
            if member is None:
                if request.tried and not request.connectFailed:
                    self._done(request, 502, False)
                else:
                    balancer.noUsableMember()
                    self._done(request, 503, False)
                return
            tally.picked(request.phase, request.key, member, not request.tried, self._weightShares)
            request.tried.append(member)
            tally.inFlightChanging(member)
            balancer.begin(member)
            tally.inFlightChanging(member)
            simulated = self._simulated[member.name]
            fault = simulated.faultAt(self.clock.seconds())
            if fault is None:
                seconds = simulated.responseTime(self._memberRandom[member.name])
                self.clock.callLater(seconds, self._answered, request, member, 200, seconds)
                return
            if fault.kind == "refusing":
                self.clock.callLater(fault.after, self._answered, request, member, fault.status, fault.after)
                return
            # Down: the connection is refused at once; try another member.
            tally.failed[member.name] += 1
            request.connectFailed = True
            self._end(member, outcome.Outcome(outcome.CONNECT, reason="connection refused (simulated)"))

    def _answered(self, request, member, status, seconds):
        balancer = self.balancer
        tally = self._tally
        balancer.memberResponded(member, status)
        if status in balancer.failOnStatus:
            tally.failed[member.name] += 1
            if not request.retried and balancer.candidates(request.tried):
                request.retried = True
                self._end(member, outcome.Outcome(outcome.REFUSED, status, firstByte=seconds, total=seconds, retried=True))
                self._attempt(request)
                return
        tally.served[member.name] += 1
        request.phase.served[member.name] += 1
        self._end(member, outcome.Outcome(outcome.ANSWERED, status, firstByte=seconds, total=seconds))
        self._done(request, status, True)

    def _end(self, member, result):
        self._tally.inFlightChanging(member)
        self.balancer.attemptEnded(member, result)

    def _weightShares(self):
        candidates = self.balancer.candidates()
        total = sum(member.weight for member in candidates)
        return {member.name: member.weight / total for member in candidates} if total else {}

    # Events

    def _apply(self, event):
        balancer = self.balancer
        if event.action == "add":
            balancer.addMember(self._member(event.value), who="simulation")
        elif event.action != "phase":
            member = balancer.member(event.name)
            if member is None:
                raise ValueError(f"event {event.label!r}: no member {event.name!r}")
            if event.action == "remove":
                # Detached at once: its name is free for a member added later.
                balancer.removeMember(member, who="simulation", detach=True)
            elif event.action == "admin":
                balancer.setAdmin(member, event.value, who="simulation")
            else:
                balancer.setWeight(member, event.value, who="simulation")
        self._tally.newPhase(event.label)


def simulate(scheduler, members, stream, events=(), **options):
    """
    Run a L{Simulation} and return its report; C{options} are those of
    L{Simulation}.

    @rtype: L{playbalancer.testing.simreport.SimulationReport}
    """
    return Simulation(scheduler, members, stream, events, **options).run()
