"""
The C{peak-ewma} scheduler: the member whose recent response time, times
the requests in flight on it, relative to its weight, is lowest (the load
measure Finagle and Linkerd balance by), so that a slow member loses
traffic as soon as it answers slowly, without being marked down.

Per member it keeps a peak-sensitive moving average of response times
(the time to the response head, see L{playbalancer.responsetimes}):

  - a sample above the average replaces it at once (the "peak");
  - a sample below pulls it down: the old average keeps the weight
    C{exp(-elapsed / decay)}, C{elapsed} being the seconds since the
    member's last sample, so the average follows a member that became fast
    over about C{decay} seconds, however many requests it gets;
  - a failure counts as a sample of C{failure_penalty} seconds, so that a
    member that fails fast does not look fast.

Choosing: each candidate costs C{average * (active + 1) / weight}; the
cheapest wins, ties in turn.  A member with no news decays, with the same
time constant, toward half the lowest average among the candidates: one
that was slow is tried again once it looks faster than the best member
(when that one is idle: after C{decay * ln(2 * its average / best - 1)}
seconds without requests), and if it is fast again the next samples show
it.  A member never heard
of (new, or not yet answered) counts as one with no news for ever: half
the best average, so it is tried soon, and not flooded before its first
answer since its requests in flight count as for any other.  With no
sample at all, every member costs C{(active + 1) / weight}: least-conn.
"""

from __future__ import annotations

import math
import time

from zope.interface import implementer

from twisted.plugin import IPlugin

from playbalancer.interfaces import IResponseTimeObserver, IScheduler, ISchedulerFactory

#: Seconds: the time constant of the averages (Finagle's default too).
DEFAULT_DECAY = 10.0

#: Seconds: the response time a failure counts as.
DEFAULT_FAILURE_PENALTY = 1.0

#: Where a member with no news decays to, as a share of the lowest average.
UNHEARD_SHARE = 0.5

#: Seconds: the least a sample counts as, so that in-flight requests
#: always weigh, even for a member that answers in no measurable time.
MINIMUM_SAMPLE = 1e-6


class _MonotonicClock:
    """
    C{time.monotonic} as a clock: what a scheduler keeps time by until a
    balancer gives it its own.
    """

    def seconds(self):
        return time.monotonic()


@implementer(IScheduler, IResponseTimeObserver)
class PeakEwmaScheduler:
    """
    Picks the member with the lowest peak-sensitive moving average of
    response times times requests in flight, relative to its weight (see
    the module's description).

    @param decay: seconds: the time constant of the averages.
    @param failurePenalty: seconds: the response time a failure counts as.
    @param clock: what to keep time by (its C{seconds()}); a balancer sets
        its own (L{setClock}).
    """

    def __init__(self, decay=DEFAULT_DECAY, failurePenalty=DEFAULT_FAILURE_PENALTY, clock=None):
        self.decay = decay
        self.failurePenalty = failurePenalty
        self._clock = clock if clock is not None else _MonotonicClock()
        #: For each member heard of: C{[average, when]}, in seconds.
        self._averages = {}
        self._turn = 0

    def setClock(self, clock):
        self._clock = clock

    def responseTime(self, member, seconds):
        self._sample(member, max(seconds, MINIMUM_SAMPLE))

    def failed(self, member):
        self._sample(member, max(self.failurePenalty, MINIMUM_SAMPLE))

    def _sample(self, member, seconds):
        now = self._clock.seconds()
        known = self._averages.get(member)
        if known is None or seconds >= known[0]:
            self._averages[member] = [seconds, now]
            return
        average, when = known
        keep = math.exp(-max(0.0, now - when) / self.decay)
        known[0] = seconds + (average - seconds) * keep
        known[1] = now

    def average(self, member, now, floor):
        """
        C{member}'s average response time at C{now}, in seconds: the last
        one, decayed toward C{floor} for the time since, or C{floor} if it
        was never heard of.
        """
        known = self._averages.get(member)
        if known is None:
            return floor
        average, when = known
        if average <= floor:
            return average
        return floor + (average - floor) * math.exp(-max(0.0, now - when) / self.decay)

    def pick(self, candidates, request):
        if len(candidates) == 1:
            return candidates[0]
        averages = self._averages
        heard = [averages[m][0] for m in candidates if m in averages]
        floor = min(heard) * UNHEARD_SHARE if heard else 1.0
        now = self._clock.seconds()
        tied = []
        lowest = math.inf
        for member in candidates:
            weight = member.weight
            if weight > 0:
                cost = self.average(member, now, floor) * (member.active + 1) / weight
            else:
                cost = math.inf
            if cost < lowest or not tied:
                tied = [member]
                lowest = cost
            elif cost == lowest:
                tied.append(member)
        if len(averages) > 4 * len(candidates) + 16:
            # Forget members that left long ago.
            self._averages = {m: averages[m] for m in candidates if m in averages}
        if len(tied) == 1:
            return tied[0]
        self._turn += 1
        return tied[self._turn % len(tied)]


#: The options and their defaults.
_OPTIONS = {"decay": DEFAULT_DECAY, "failure_penalty": DEFAULT_FAILURE_PENALTY}


def _seconds(name, option, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"scheduler {name!r}: option {option} must be a number of seconds, got {value!r}"
        )
    if not (0 < value < math.inf):
        raise ValueError(
            f"scheduler {name!r}: option {option} must be a number of seconds > 0, got {value!r}"
        )
    return float(value)


@implementer(IPlugin, ISchedulerFactory)
class PeakEwmaSchedulerFactory:
    """
    Makes L{PeakEwmaScheduler}s.  Options (seconds, numbers above 0):
    C{decay}, the averages' time constant (default 10), and
    C{failure_penalty}, the response time a failure counts as (default 1).
    """

    name = "peak-ewma"
    description = (
        "Lowest recent response time (peak-sensitive moving average) times "
        "requests in flight, relative to weight."
    )

    def makeScheduler(self, options):
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ValueError(
                f"scheduler {self.name!r}: unknown option(s) {', '.join(unknown)}"
                f" (known: {', '.join(sorted(_OPTIONS))})"
            )
        values = {
            option: _seconds(self.name, option, options.get(option, default))
            for option, default in _OPTIONS.items()
        }
        return PeakEwmaScheduler(values["decay"], values["failure_penalty"])

    def __repr__(self):
        return f"<PeakEwmaSchedulerFactory {self.name!r}>"


peakEwma = PeakEwmaSchedulerFactory()
