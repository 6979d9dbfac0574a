"""
The manager's recent history, kept on the server so that the page's charts
are full the moment it is opened.

Every L{INTERVAL} seconds L{History} samples each balancer and each of its
members: requests and errors per second since the last sample, the median
and 95th percentile of the response times that ended in that interval, and
the requests in flight.  It keeps the last L{SPAN} seconds in fixed-size
rings of doubles: 6 series x 180 samples x 8 bytes, about 8.6 KiB per
member and per balancer, however busy.  With workers it samples the
parent's members, which show the sums of every worker's counters (and their
response times).
"""

from __future__ import annotations

import math
from array import array

from twisted.application.service import Service
from twisted.internet.task import LoopingCall

__all__ = ["INTERVAL", "SPAN", "FIELDS", "Ring", "Series", "History"]

#: Seconds between samples.
INTERVAL = 5.0

#: Seconds of history kept.
SPAN = 900.0

#: What each sample holds, besides its time.
FIELDS = ("requests", "errors", "p50", "p95", "inflight")

_NAN = float("nan")


class Ring:
    """
    The last C{size} values appended, oldest first, in a fixed C{array}.
    """

    __slots__ = ("_values", "_next", "count")

    def __init__(self, size):
        self._values = array("d", [_NAN]) * size
        self._next = 0
        self.count = 0

    def append(self, value):
        values = self._values
        values[self._next] = value
        self._next = (self._next + 1) % len(values)
        self.count = min(self.count + 1, len(values))

    def last(self):
        """
        The value appended last (NaN for none).
        """
        return self._values[self._next - 1] if self.count else _NAN

    def values(self):
        """
        The values kept, oldest first.
        """
        values = self._values
        start = (self._next - self.count) % len(values)
        return [values[(start + i) % len(values)] for i in range(self.count)]


def _percentiles(samples):
    """
    C{(p50, p95)} of C{samples} (seconds), or NaNs for none.
    """
    if not samples:
        return _NAN, _NAN
    ordered = sorted(samples)
    last = len(ordered) - 1

    def at(share):
        return ordered[min(last, max(0, int(math.ceil(share * len(ordered))) - 1))]

    return at(0.50), at(0.95)


class Series:
    """
    One member's or balancer's samples: a L{Ring} for the times and one
    for each of L{FIELDS}.
    """

    def __init__(self, size):
        self.times = Ring(size)
        self.rings = {name: Ring(size) for name in FIELDS}

    def add(self, at, **values):
        self.times.append(at)
        for name, ring in self.rings.items():
            ring.append(values[name])

    def latest(self):
        """
        The last sample as C{{field: value}} (seconds for latencies, NaN
        as L{None}), or L{None} before the first.
        """
        if not self.times.count:
            return None
        values = {name: ring.last() for name, ring in self.rings.items()}
        return {name: None if math.isnan(v) else v for name, v in values.items()}

    def asJSON(self):
        """
        C{{"t": [...], "requests": [...], ...}}, oldest first: rates per
        second, latencies in milliseconds, L{None} where an interval had no
        response to measure.
        """
        answer = {"t": [round(t, 1) for t in self.times.values()]}
        for name, ring in self.rings.items():
            scale = 1000.0 if name in ("p50", "p95") else 1.0
            answer[name] = [
                None if math.isnan(v) else round(v * scale, 3) for v in ring.values()
            ]
        return answer


class _Marks:
    """
    A member's counters at the last sample, to take differences from.
    """

    __slots__ = ("member", "requests", "errors", "latencies")

    def __init__(self, member, requests, errors, latencies):
        self.member = member
        self.requests = requests
        self.errors = errors
        self.latencies = latencies


def _errors(member):
    """
    A member's errors so far: failed attempts and 5xx answers.
    """
    return member.failures + member.stats.statusClasses["5xx"]


class History(Service):
    """
    Samples C{balancers} every C{interval} seconds while running.

    @param balancers: the balancers by name (the running dict: a reload
        that adds or removes a balancer is seen at the next sample).
    @param clock: provides C{seconds()} and C{callLater}.
    """

    def __init__(self, balancers, clock, interval=INTERVAL, span=SPAN):
        self.balancers = balancers
        self.clock = clock
        self.interval = interval
        self.span = span
        self.size = int(round(span / interval))
        #: C{{balancer name: Series}} and C{{(balancer, member): Series}}.
        self.balancerSeries = {}
        self.memberSeries = {}
        self._marks = {}
        self._unavailable = {}
        self._last = None
        self._loop = None

    def startService(self):
        Service.startService(self)
        self._loop = LoopingCall(self.sample)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True)

    def stopService(self):
        Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def sample(self):
        """
        Take one sample of every balancer and member (the first sample of
        a member only sets its marks).
        """
        now = self.clock.seconds()
        since, self._last = self._last, now
        seen = set()
        for name, balancer in list(self.balancers.items()):
            seen.add(name)
            self._sampleBalancer(name, balancer, since, now)
        for name in set(self.balancerSeries) - seen:
            del self.balancerSeries[name]
            self._unavailable.pop(name, None)
        for key in [k for k in self._marks if k[0] not in seen]:
            self._forget(key)

    def _sampleBalancer(self, name, balancer, since, now):
        requests = errors = inflight = 0.0
        latencies = []
        current = set()
        for member in list(balancer.members):
            key = (name, member.name)
            current.add(key)
            rates = self._rates(key, member, since, now)
            if rates is None:
                continue
            memberRequests, memberErrors, memberLatencies = rates
            p50, p95 = _percentiles(memberLatencies)
            series = self.memberSeries.get(key)
            if series is None:
                series = self.memberSeries[key] = Series(self.size)
            series.add(
                now,
                requests=memberRequests,
                errors=memberErrors,
                p50=p50,
                p95=p95,
                inflight=member.active,
            )
            requests += memberRequests
            errors += memberErrors
            inflight += member.active
            latencies.extend(memberLatencies)
        for key in [k for k in self._marks if k[0] == name and k not in current]:
            self._forget(key)
        unavailable = balancer.unavailable
        before = self._unavailable.get(name)
        self._unavailable[name] = unavailable
        if since is None or before is None:
            return
        errors += max(0, unavailable - before) / (now - since)
        p50, p95 = _percentiles(latencies)
        series = self.balancerSeries.get(name)
        if series is None:
            series = self.balancerSeries[name] = Series(self.size)
        series.add(now, requests=requests, errors=errors, p50=p50, p95=p95, inflight=inflight)

    def _rates(self, key, member, since, now):
        """
        C{(requests/s, errors/s, response times)} of C{member} since the
        last sample, or L{None} for its first sample (or the first of a new
        member by the same name).
        """
        marks = self._marks.get(key)
        if marks is not None and marks.member is not member:
            marks = None
        latencies, latencyMark = member.latenciesAfter(marks.latencies if marks else None)
        requests, errors = member.requests, _errors(member)
        self._marks[key] = _Marks(member, requests, errors, latencyMark)
        if marks is None or since is None or now <= since:
            return None
        elapsed = now - since
        # Counters never go back, but a worker's may be summed anew.
        return (
            max(0, requests - marks.requests) / elapsed,
            max(0, errors - marks.errors) / elapsed,
            latencies,
        )

    def _forget(self, key):
        self._marks.pop(key, None)
        self.memberSeries.pop(key, None)

    def latest(self, balancerName):
        """
        The balancer's last sample (L{Series.latest}), or L{None}.
        """
        series = self.balancerSeries.get(balancerName)
        return series.latest() if series is not None else None

    def asJSON(self, balancerName=None):
        """
        What C{GET /api/history} answers: C{interval}, C{span}, and per
        balancer its own series and its members'.
        """
        balancers = {}
        for name in self.balancers:
            if balancerName is not None and name != balancerName:
                continue
            series = self.balancerSeries.get(name)
            members = {}
            for member in self.balancers[name].members:
                memberSeries = self.memberSeries.get((name, member.name))
                if memberSeries is not None:
                    members[member.name] = memberSeries.asJSON()
            balancers[name] = {
                "series": series.asJSON() if series is not None else _empty(),
                "members": members,
            }
        return {"interval": self.interval, "span": self.span, "balancers": balancers}


def _empty():
    return dict({"t": []}, **{name: [] for name in FIELDS})
