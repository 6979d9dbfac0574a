"""
The built-in schedulers, and the lookup of schedulers by name among the
Twisted plugins (built-in ones ship as plugins too, so a third-party
scheduler is found the same way).
"""

from __future__ import annotations

from zope.interface import implementer

from twisted.plugin import IPlugin, getPlugins

from playbalancer.interfaces import IScheduler, ISchedulerFactory
from playbalancer.plugincache import dropStaleCaches


def _rejectOptions(name, options):
    if options:
        unknown = ", ".join(sorted(options))
        raise ValueError(f"scheduler {name!r} takes no options (got {unknown})")


@implementer(IScheduler)
class StandbyScheduler:
    """
    Every request to the first usable member in configured order; the next
    one takes over only while it is unusable.
    """

    def pick(self, candidates, request):
        return candidates[0]


@implementer(IScheduler)
class RoundRobinScheduler:
    """
    Smooth weighted round robin (the algorithm nginx uses): over any window
    the shares follow the weights, and picks of one member are spread out
    rather than bunched.
    """

    def __init__(self):
        self._current = {}

    def pick(self, candidates, request):
        if len(candidates) == 1:
            return candidates[0]
        current = self._current
        total = 0
        best = None
        bestScore = 0
        for member in candidates:
            weight = member.weight
            total += weight
            score = current.get(member, 0) + weight
            current[member] = score
            if best is None or score > bestScore:
                best, bestScore = member, score
        current[best] = bestScore - total
        if len(current) > 4 * len(candidates) + 16:
            # Forget members that left long ago.
            self._current = {m: current[m] for m in candidates}
        return best


@implementer(IScheduler)
class LeastConnScheduler:
    """
    The member with the fewest requests in flight relative to its weight;
    ties are broken round robin.
    """

    def __init__(self):
        self._turn = 0

    def pick(self, candidates, request):
        tied = []
        for member in candidates:
            if not tied:
                tied.append(member)
                continue
            # Compare active/weight without division: a/wa < b/wb.
            best = tied[0]
            left = member.active * best.weight
            right = best.active * member.weight
            if left < right:
                tied = [member]
            elif left == right:
                tied.append(member)
        if len(tied) == 1:
            return tied[0]
        self._turn += 1
        return tied[self._turn % len(tied)]


@implementer(IPlugin, ISchedulerFactory)
class SchedulerFactory:
    """
    An L{ISchedulerFactory} for a scheduler class that takes no options.
    """

    def __init__(self, name, description, schedulerClass):
        self.name = name
        self.description = description
        self._schedulerClass = schedulerClass

    def makeScheduler(self, options):
        _rejectOptions(self.name, options)
        return self._schedulerClass()

    def __repr__(self):
        return f"<SchedulerFactory {self.name!r}>"


standby = SchedulerFactory(
    "standby",
    "All traffic to the first usable member; the next takes over while it is down.",
    StandbyScheduler,
)
roundRobin = SchedulerFactory(
    "round-robin",
    "Smooth weighted round robin: shares follow the weights, interleaved.",
    RoundRobinScheduler,
)
leastConn = SchedulerFactory(
    "least-conn",
    "Fewest requests in flight relative to weight; ties round robin.",
    LeastConnScheduler,
)


def availableSchedulers():
    """
    Every scheduler factory found among the Twisted plugins, by name.

    When two plugins claim one name the first found wins.

    @rtype: L{dict} of L{str} to L{ISchedulerFactory}
    """
    dropStaleCaches()
    found = {}
    for factory in getPlugins(ISchedulerFactory):
        found.setdefault(factory.name, factory)
    return found
