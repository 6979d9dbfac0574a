"""
What a scheduler simulation (L{playbalancer.testing.simulator}) found:
L{SimulationReport}, plain data with a readable L{SimulationReport.summary},
and the L{Tally} the simulation keeps while it runs.
"""

from __future__ import annotations

import math
from collections import Counter

__all__ = ["SimulationReport", "MemberReport", "PhaseReport", "RemapReport", "percentile"]


def percentile(values, p):
    """
    The C{p}th percentile (0 to 100, nearest rank) of C{values}, sorted
    already; L{None} if there are none.
    """
    if not values:
        return None
    rank = max(1, int(math.ceil(p / 100.0 * len(values))))
    return values[min(rank, len(values)) - 1]


class MemberReport:
    """
    One member over the whole run (members are told apart by name).

    @ivar picks: times the scheduler chose it (first attempts and retries).
    @ivar served: requests it answered.
    @ivar failed: attempts on it that failed (a refused connection, an
        answer in C{failOnStatus}).
    @ivar share: its part of all the requests members answered (0 to 1).
    @ivar maxInFlight: the most requests it had in flight at once.
    @ivar meanInFlight: its requests in flight, averaged over the run.
    """

    def __init__(self, name, weight, standby, picks, served, failed, share, maxInFlight, meanInFlight):
        self.name = name
        self.weight = weight
        self.standby = standby
        self.picks = picks
        self.served = served
        self.failed = failed
        self.share = share
        self.maxInFlight = maxInFlight
        self.meanInFlight = meanInFlight

    def __repr__(self):
        return f"<MemberReport {self.name} served={self.served} share={self.share:.3f}>"


class PhaseReport:
    """
    The requests placed between two events.

    @ivar served: C{{member name: requests}} answered by each member, of
        those first placed in this phase.
    @ivar shares: C{{member name: share}} of those (0 to 1).
    @ivar weightShares: C{{member name: share}} of the total weight of the
        candidates when the phase's first request was placed: the shares a
        scheduler that follows the weights would give.
    """

    def __init__(self, label, start, served, weightShares):
        self.label = label
        self.start = start
        self.served = dict(served)
        total = sum(self.served.values())
        self.shares = {name: n / total for name, n in self.served.items()} if total else {}
        self.weightShares = dict(weightShares)

    def __repr__(self):
        return f"<PhaseReport {self.label!r} at {self.start:g}s>"


class RemapReport:
    """
    How many keys changed member from one phase to the next.  A key's
    member in a phase is the one the scheduler chose most often for it
    (first attempts only); keys seen in only one of the phases are left
    out.

    @ivar keys: keys seen in both phases.
    @ivar moved: those whose member changed.
    @ivar movedFrom: C{{member name: keys}} moved off each member.
    @ivar movedTo: C{{member name: keys}} moved onto each member.
    @ivar share: C{moved / keys} (L{None} without keys).
    @ivar ideal: the least share of keys any scheduler that follows the
        weights must move: half the sum of the differences between the
        weight shares of the two phases (removing one of five equal
        members: 0.2; adding a fourth to three: 0.25).
    """

    def __init__(self, before, after, keys, movedFrom, movedTo, ideal):
        self.before = before
        self.after = after
        self.keys = keys
        self.movedFrom = dict(movedFrom)
        self.movedTo = dict(movedTo)
        moved = self.moved = sum(self.movedFrom.values())
        self.share = moved / keys if keys else None
        self.ideal = ideal

    def __repr__(self):
        return f"<RemapReport {self.before!r} -> {self.after!r}: {self.moved}/{self.keys}>"


class SimulationReport:
    """
    The outcome of a simulation, as plain data.

    @ivar requests: requests sent.
    @ivar answered: requests a member answered (any status).
    @ivar statuses: C{Counter} of the final status of every request
        (C{502}/C{503} of the balancer's own when no member answered are in
        C{unanswered} too).
    @ivar unanswered: C{Counter} of the balancer's own error statuses.
    @ivar duration: simulated seconds from the first request to the last
        answer.
    @ivar latency: C{{"p50", "p90", "p99", "max"}}: seconds from sending to
        the answer, over the requests a member answered (retries included).
    @ivar pickMicroseconds: C{{"median", "p99", "picks"}}: wall-clock time
        the scheduler's C{pick} took (C{time.perf_counter}).
    @ivar members: L{MemberReport}s in configured order, then those added.
    @ivar phases: L{PhaseReport}s, the first from the start.
    @ivar remaps: a L{RemapReport} for each phase after the first.
    @ivar notes: what else to know (events the stream ended before).
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def member(self, name):
        """
        The L{MemberReport} of member C{name}.
        """
        for member in self.members:
            if member.name == name:
                return member
        raise KeyError(name)

    def asDict(self):
        """
        Everything as C{dict}s, C{list}s and numbers (for C{json.dumps}).
        """
        data = dict(self.__dict__)
        data["statuses"] = {str(k): v for k, v in sorted(self.statuses.items())}
        data["unanswered"] = {str(k): v for k, v in sorted(self.unanswered.items())}
        for name in ("members", "phases", "remaps"):
            data[name] = [dict(item.__dict__) for item in data[name]]
        return data

    def summary(self):
        """
        The report as text for people.
        """
        lines = [f"{self.stream}: {self.duration:.1f} s simulated, seed {self.seed}"]
        unanswered = sum(self.unanswered.values())
        others = ", ".join(
            f"{n} x {status}" for status, n in sorted(self.statuses.items()) if status != 200
        )
        lines.append(
            f"answered by a member: {self.answered}"
            + (f"; not 200: {others}" if others else "")
            + (f" ({unanswered} of them the balancer's own)" if unanswered else "")
        )
        latency = self.latency
        if latency["p50"] is not None:
            lines.append(
                "client latency: "
                + ", ".join(f"{k} {latency[k] * 1000:.1f} ms" for k in ("p50", "p90", "p99", "max"))
            )
        pick = self.pickMicroseconds
        if pick["picks"]:
            lines.append(
                f"time per pick: median {pick['median']:.1f} \N{MICRO SIGN}s, "
                f"p99 {pick['p99']:.1f} \N{MICRO SIGN}s ({pick['picks']} picks)"
            )
        lines.append("")
        rows = [("member", "weight", "picks", "served", "share", "failed", "in flight max", "mean")]
        for m in self.members:
            weight = f"{m.weight:g}" + (" standby" if m.standby else "")
            rows.append(
                (m.name, weight, str(m.picks), str(m.served), f"{m.share:.1%}", str(m.failed),
                 str(m.maxInFlight), f"{m.meanInFlight:.2f}")
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
            lines.append("  ".join(cells).rstrip())
        lines.append("")
        lines.append("phases (share served, and share of the weight):")
        for p in self.phases:
            shares = ", ".join(
                f"{name} {p.shares.get(name, 0):.1%} ({p.weightShares.get(name, 0):.1%})"
                for name in _names(p)
            )
            lines.append(f"  {p.start:7.1f} s  {p.label}: {sum(p.served.values())} served; {shares}")
        if self.remaps:
            lines.append("keys remapped (ideal: the least any weight-following scheduler must move):")
            for r in self.remaps:
                share = "-" if r.share is None else f"{r.share:.1%}"
                lines.append(
                    f"  {r.before} -> {r.after}: {r.moved} of {r.keys} keys ({share}); ideal {r.ideal:.1%}"
                )
                if r.moved:
                    lines.append(
                        "    from " + _counts(r.movedFrom) + "; to " + _counts(r.movedTo)
                    )
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def _counts(counts):
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda item: -item[1]))


def _names(phase):
    names = list(phase.weightShares)
    return names + [name for name in phase.served if name not in phase.weightShares]


class _Phase:
    def __init__(self, label, start):
        self.label = label
        self.start = start
        self.weightShares = None
        self.served = Counter()
        #: C{{key: Counter of member names}} of first picks.
        self.placed = {}


class Tally:
    """
    What a simulation counts as it runs; L{report} turns it into a
    L{SimulationReport}.
    """

    def __init__(self, clock):
        self._clock = clock
        self.picks = Counter()
        self.served = Counter()
        self.failed = Counter()
        self.maxInFlight = Counter()
        self._area = Counter()
        self._since = {}
        self.order = {}
        self.latencies = []
        self.statuses = Counter()
        self.unanswered = Counter()
        self.pickTimes = []
        self.phases = [_Phase("start", 0.0)]

    @property
    def phase(self):
        return self.phases[-1]

    def newPhase(self, label):
        """
        Begin a phase now, or add C{label} to one begun at this time.
        """
        now = self._clock.seconds()
        current = self.phases[-1]
        if current.start == now and current.weightShares is None:
            # Nothing placed in it yet: the same phase.
            current.label = label if len(self.phases) == 1 else f"{current.label}, {label}"
        else:
            self.phases.append(_Phase(label, now))

    def member(self, member):
        """
        Report on C{member} (in the order members are given), under its
        name.
        """
        self.order[member.name] = member

    def picked(self, phase, key, member, first, weightShares):
        """
        The scheduler chose C{member} for a request with C{key} (first
        attempt or not) placed in C{phase}.
        """
        self.picks[member.name] += 1
        if phase.weightShares is None:
            phase.weightShares = weightShares()
        if first and key is not None:
            phase.placed.setdefault(key, Counter())[member.name] += 1

    def inFlightChanging(self, member):
        """
        Call before C{member.active} changes (and after: the maximum).
        """
        name = member.name
        now = self._clock.seconds()
        self._area[name] += member.active * (now - self._since.get(name, now))
        self._since[name] = now
        if member.active > self.maxInFlight[name]:
            self.maxInFlight[name] = member.active

    def report(self, **fields):
        """
        The L{SimulationReport}; C{fields} are those it takes from the
        simulation itself (C{requests}, C{seed}, C{stream}, C{notes}).
        """
        now = self._clock.seconds()
        for member in self.order.values():
            self.inFlightChanging(member)
        self.latencies.sort()
        self.pickTimes.sort()
        total = sum(self.served.values())
        members = [
            MemberReport(
                name, member.configuredWeight, member.standby, self.picks[name], self.served[name],
                self.failed[name], self.served[name] / total if total else 0.0,
                self.maxInFlight[name], self._area[name] / now if now else 0.0,
            )
            for name, member in self.order.items()
        ]
        phases = [PhaseReport(p.label, p.start, p.served, p.weightShares or {}) for p in self.phases]
        remaps = [
            RemapReport(a.label, b.label, *_moved(a.placed, b.placed), _ideal(pa, pb))
            for a, b, pa, pb in zip(self.phases, self.phases[1:], phases, phases[1:])
        ]
        return SimulationReport(
            answered=len(self.latencies),
            statuses=self.statuses,
            unanswered=self.unanswered,
            duration=now,
            latency={
                "p50": percentile(self.latencies, 50),
                "p90": percentile(self.latencies, 90),
                "p99": percentile(self.latencies, 99),
                "max": self.latencies[-1] if self.latencies else None,
            },
            pickMicroseconds={
                "median": (percentile(self.pickTimes, 50) or 0.0) * 1e6,
                "p99": (percentile(self.pickTimes, 99) or 0.0) * 1e6,
                "picks": len(self.pickTimes),
            },
            members=members,
            phases=phases,
            remaps=remaps,
            **fields,
        )


def _moved(before, after):
    """
    C{(keys, movedFrom, movedTo)} from the first picks of two phases.
    """
    keys = 0
    movedFrom = Counter()
    movedTo = Counter()
    for key, counts in before.items():
        later = after.get(key)
        if later is not None:
            keys += 1
            old, new = _mostOften(counts), _mostOften(later)
            if old != new:
                movedFrom[old] += 1
                movedTo[new] += 1
    return keys, movedFrom, movedTo


def _mostOften(counts):
    return counts.most_common(1)[0][0]


def _ideal(before, after):
    names = set(before.weightShares) | set(after.weightShares)
    return sum(abs(before.weightShares.get(n, 0) - after.weightShares.get(n, 0)) for n in names) / 2
