"""
What a scheduler simulation (L{playbalancer.testing.simulator}) is made
of: synthetic members (their weight, standby flag, latency and faults), the
stream of requests and the keys they carry, and the events that change the
balancer on the way (members added, removed, drained, reweighted).

Everything random is drawn from a C{random.Random} the simulation seeds,
so a run is the same every time for the same seed.
"""

from __future__ import annotations

import bisect
import math

from playbalancer.testing.views import requestView, tcpView

__all__ = [
    "Latency",
    "fixed",
    "uniform",
    "exponential",
    "lognormal",
    "Fault",
    "down",
    "refusing",
    "SimulatedMember",
    "Keys",
    "RequestStream",
    "Event",
    "addMember",
    "removeMember",
    "drainMember",
    "enableMember",
    "setWeight",
    "phase",
]


class Latency:
    """
    A distribution of a member's response times: called with a
    C{random.Random}, it draws one (seconds).

    @param describe: how L{SimulationReport.summary} names it.
    """

    def __init__(self, describe, draw):
        self.describe = describe
        self._draw = draw

    def __call__(self, rng):
        return self._draw(rng)

    def __repr__(self):
        return self.describe


def fixed(seconds):
    """Always C{seconds}."""
    return Latency(f"fixed({seconds:g})", lambda rng: seconds)


def uniform(low, high):
    """Uniform between C{low} and C{high} seconds."""
    return Latency(f"uniform({low:g}, {high:g})", lambda rng: rng.uniform(low, high))


def exponential(mean):
    """Exponential with C{mean} seconds (many short, a few long)."""
    return Latency(f"exponential({mean:g})", lambda rng: rng.expovariate(1.0 / mean))


def lognormal(median, sigma):
    """
    Log-normal with C{median} seconds: C{sigma} 0.5 gives a p99 about
    3.2 times the median, C{sigma} 1 about 10 times (a long tail).
    """
    mu = math.log(median)
    return Latency(f"lognormal({median:g}, {sigma:g})", lambda rng: rng.lognormvariate(mu, sigma))


class Fault:
    """
    A member misbehaving from C{start} to C{end} (simulated seconds).

    @ivar kind: C{"down"} (connections are refused) or C{"refusing"} (it
        answers every request with C{status}, after C{after} seconds).
    """

    def __init__(self, kind, start, end, status=None, after=0.0):
        if end <= start:
            raise ValueError(f"a fault must end after it starts ({start:g} to {end:g})")
        self.kind = kind
        self.start = start
        self.end = end
        self.status = status
        self.after = after

    def covers(self, now):
        return self.start <= now < self.end

    def __repr__(self):
        detail = f" {self.status} after {self.after:g}s" if self.kind == "refusing" else ""
        return f"{self.kind}{detail} from {self.start:g}s to {self.end:g}s"


def down(start, end):
    """
    The member cannot be reached from C{start} to C{end}: each attempt
    fails at once (as a refused connection), the balancer rests the member
    for its C{retry} seconds, and the request goes on to another member.
    """
    return Fault("down", start, end)


def refusing(start, end, status=503, after=0.0):
    """
    The member answers every request with C{status} after C{after}
    seconds, from C{start} to C{end}.  With C{status} in the simulation's
    C{failOnStatus} the balancer rests it and tries the request once more
    elsewhere (as for C{fail_on_status}); otherwise the client gets it.
    """
    return Fault("refusing", start, end, status, after)


class SimulatedMember:
    """
    A synthetic backend.

    @param weight: its weight (C{int} >= 0).
    @param standby: whether it is a hot standby.
    @param latency: its response time: seconds (a number), or a callable
        drawing seconds from a C{random.Random} (L{fixed}, L{uniform},
        L{exponential}, L{lognormal}, or your own).
    @param faults: L{Fault}s (L{down}, L{refusing}) in any order.
    """

    def __init__(self, name, weight=1, standby=False, latency=0.01, faults=()):
        self.name = name
        self.weight = weight
        self.standby = standby
        self.latency = latency
        self.faults = tuple(faults)

    def responseTime(self, rng):
        """
        Draw one response time (seconds, never negative).
        """
        latency = self.latency
        seconds = latency(rng) if callable(latency) else latency
        return max(0.0, float(seconds))

    def faultAt(self, now):
        """
        The L{Fault} in force at C{now}, or L{None}.
        """
        for fault in self.faults:
            if fault.covers(now):
                return fault
        return None

    def __repr__(self):
        return f"<SimulatedMember {self.name} weight={self.weight} latency={self.latency!r}>"


#: Where a key may be carried.
_PLACES = ("header", "cookie", "path", "client", "tcp")


class Keys:
    """
    What distinguishes requests: C{count} keys, numbered from 0, drawn
    uniformly or following Zipf's law, and carried in one place of the
    request.

    @param where: C{"header:<Name>"} or C{"cookie:<name>"} (the value is
        C{b"key-<n>"}), C{"path"} (C{/key/<n>}), C{"client"} (the client
        address C{10.x.y.z} of an HTTP request) or C{"tcp"} (the same, in a
        TCP-mode view).
    @param zipf: the Zipf exponent C{s} (key C{n} is drawn in proportion to
        C{1 / (n + 1) ** s}; 1.0 is typical of web traffic), or L{None}
        for uniform keys.
    @param missing: the share (0 to 1) of requests that carry no key: no
        such header or cookie, the path C{/}, no client address.
    """

    def __init__(self, count=1000, where="header:X-User", zipf=None, missing=0.0):
        place, _, name = where.partition(":")
        if place not in _PLACES or bool(name) != (place in ("header", "cookie")):
            raise ValueError(
                f'where must be "header:<Name>", "cookie:<name>", "path", "client" or "tcp", got {where!r}'
            )
        if count < 1 or not 0 <= missing <= 1:
            raise ValueError("count must be at least 1 and missing between 0 and 1")
        self.count = count
        self.where = where
        self.zipf = zipf
        self.missing = missing
        self._place = place
        self._name = name
        self._views = {}
        self._cumulative = None
        if zipf is not None:
            total = 0.0
            self._cumulative = []
            for n in range(count):
                total += 1.0 / (n + 1) ** zipf
                self._cumulative.append(total)

    def draw(self, rng):
        """
        The key of one request (C{int}), or L{None} for one without.
        """
        if self.missing and rng.random() < self.missing:
            return None
        if self._cumulative is None:
            return rng.randrange(self.count)
        at = rng.random() * self._cumulative[-1]
        return min(bisect.bisect_right(self._cumulative, at), self.count - 1)

    def view(self, key):
        """
        The L{playbalancer.interfaces.IRequestView} of a request with
        C{key} (or none, for L{None}).
        """
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = self._makeView(key)
        return view

    def _makeView(self, key):
        place, name = self._place, self._name
        if place == "tcp":
            return tcpView(None if key is None else _address(key))
        if key is None:
            return requestView(clientAddress=None if place == "client" else "192.0.2.1")
        value = b"key-%d" % (key,)
        if place == "header":
            return requestView(headers=[(name, value)])
        if place == "cookie":
            return requestView(cookies=[(name, value)])
        if place == "path":
            return requestView(path=b"/key/%d" % (key,))
        return requestView(clientAddress=_address(key))

    def __repr__(self):
        shape = "uniform" if self.zipf is None else f"zipf({self.zipf:g})"
        return f"{self.count} keys in {self.where}, {shape}"


def _address(key):
    return f"10.{key >> 16 & 255}.{key >> 8 & 255}.{key & 255}"


class RequestStream:
    """
    The synthetic client: C{count} requests, sent either at a C{rate}
    (open loop: they arrive whatever the balancer does) or by
    C{concurrency} clients that each send the next one C{think} seconds
    after the last was answered (closed loop).

    @param arrivals: with a C{rate}, C{"poisson"} (random gaps, as many
        independent users make) or C{"even"} (one every C{1/rate} s).
    @param keys: the L{Keys} requests carry (default: 1000 uniform keys in
        an I{X-User} header).
    """

    def __init__(self, count=10000, rate=None, concurrency=None, think=0.0, arrivals="poisson", keys=None):
        if (rate is None) == (concurrency is None):
            raise ValueError("give either rate (requests per second) or concurrency (clients)")
        if arrivals not in ("poisson", "even"):
            raise ValueError(f'arrivals must be "poisson" or "even", got {arrivals!r}')
        self.count = count
        self.rate = rate
        self.concurrency = concurrency
        self.think = think
        self.arrivals = arrivals
        self.keys = keys if keys is not None else Keys()

    def gap(self, rng):
        """
        Seconds to the next arrival (open loop, Poisson).
        """
        return rng.expovariate(self.rate)

    def __repr__(self):
        if self.rate is not None:
            how = f"{self.rate:g}/s ({self.arrivals})"
        else:
            how = f"{self.concurrency} clients, think {self.think:g}s"
        return f"{self.count} requests, {how}, {self.keys!r}"


class Event:
    """
    A change to the balancer at C{at} seconds; each begins a new phase of
    the report (events at the same time begin one).

    @ivar action: C{"add"}, C{"remove"}, C{"admin"}, C{"weight"} or
        C{"phase"} (nothing changes: only a new phase).
    """

    def __init__(self, at, action, name, value=None, label=None):
        self.at = at
        self.action = action
        self.name = name
        self.value = value
        self.label = label or f"{action} {name}"

    def __repr__(self):
        return f"<Event {self.label!r} at {self.at:g}s>"


def addMember(at, member, label=None):
    """Add L{SimulatedMember} C{member} at C{at} seconds."""
    return Event(at, "add", member.name, member, label or f"add {member.name}")


def removeMember(at, name, label=None):
    """Remove member C{name} (its requests in flight finish)."""
    return Event(at, "remove", name, None, label or f"remove {name}")


def drainMember(at, name, label=None):
    """Drain member C{name}: no new requests, those in flight finish."""
    return Event(at, "admin", name, "drain", label or f"drain {name}")


def enableMember(at, name, label=None):
    """Enable member C{name} again after L{drainMember}."""
    return Event(at, "admin", name, "enabled", label or f"enable {name}")


def setWeight(at, name, weight, label=None):
    """Give member C{name} a new weight."""
    return Event(at, "weight", name, weight, label or f"weight {name}={weight}")


def phase(at, label):
    """
    Only begin a new phase, e.g. just after a member goes L{down}, to see
    the keys it moved.
    """
    return Event(at, "phase", None, None, label)
