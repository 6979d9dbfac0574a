"""
Balancers and their members: configuration, live state and counters, and
the choice of usable candidates for a new request.

Nothing here knows HTTP: the proxy and the TCP relay ask
L{Balancer.pick} for a member, call L{Balancer.begin} when an attempt on it
starts, and report what happened once, when it ends, with
L{Balancer.attemptEnded} (an L{playbalancer.outcome.Outcome}): passive
health and the member's counters follow from that one call, kept by the
balancer's L{playbalancer.memberhealth.MemberHealth}.
"""

from __future__ import annotations

import math
from collections import deque

from hyperlink import URL
from zope.interface import implementer

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from playbalancer.interfaces import IMember, IResponseTimeObserver
from playbalancer.memberhealth import BAD_RESPONSES_DOWN  # noqa: F401 (its old home)
from playbalancer.memberhealth import MemberHealth
from playbalancer.observe.stats import MemberStats
from playbalancer.responsetimes import report as reportResponseTime

ADMIN_STATES = ("enabled", "drain", "disabled")

#: Latencies are kept for this many seconds, and at most this many.
LATENCY_WINDOW = 60.0
LATENCY_SAMPLES = 2048

_log = Logger()


@implementer(IMember)
class Member:
    """
    One backend: its address, admin settings, passive health and counters.

    @ivar admin: C{"enabled"}, C{"drain"} or C{"disabled"}: only enabled
        members get new requests.
    @ivar downUntil: when a member that failed may be tried again (clock
        seconds), or L{None} while it is healthy.
    """

    def __init__(self, name, url, weight=1, standby=False, aliases=()):
        parsed = URL.from_text(url)
        self.name = name
        self.url = url
        #: Other base URLs that name this member, for Location rewriting.
        self.aliases = tuple(aliases)
        self.scheme = parsed.scheme
        self.host = parsed.host
        self.port = parsed.port
        #: The weight as configured (or set by the manager).
        self.configuredWeight = weight
        self._rampStart = None
        self._rampSeconds = 0.0
        self._rampClock = None
        self.standby = standby
        self.admin = "enabled"
        #: When its current drain began (the balancer's clock, wall time in
        #: a running balancer), or L{None}; carried to workers, the state
        #: file and cluster peers (L{playbalancer.memberstate}), so that a
        #: sticky balancer's bound on a drain is the same everywhere.
        self.drainSince = None
        hostText = f"[{self.host}]" if ":" in self.host else self.host
        defaultPort = {"http": 80, "https": 443}.get(self.scheme)
        #: The I{Host} header value that names this member itself.
        self.hostHeader = (
            hostText if self.port == defaultPort else f"{hostText}:{self.port}"
        ).encode("ascii")
        #: C{scheme://host:port}, as bytes, to which request targets are added.
        self.origin = f"{self.scheme}://{hostText}:{self.port}".encode("ascii")
        #: The path prefix of the member's URL, without a trailing slash.
        self.basePath = "/".join(("",) + tuple(s for s in parsed.path if s)).encode(
            "ascii"
        )
        #: What identifies its connection pool.
        self.poolKey = (self.scheme, self.host, self.port)
        self.active = 0
        self.requests = 0
        self.failures = 0
        #: Malformed responses since its last good one.
        self.badResponses = 0
        self.bytesIn = 0
        self.bytesOut = 0
        self.downSince = None
        self.downUntil = None
        self.downReason = None
        self.removing = False
        #: The last active health check: C{(ok, detail, at, duration)}, or None.
        self.lastCheck = None
        self.checkPasses = 0
        self.checkFailures = 0
        self._latencies = deque(maxlen=LATENCY_SAMPLES)
        self._idleWaiters = []
        #: Counters by kind, and recent state changes.
        self.stats = MemberStats()

    @property
    def weight(self):
        """
        The weight schedulers see: the configured one, or during a slow
        start a share of it that grows with the time since the member came
        up (from 5%).
        """
        if self._rampStart is None:
            return self.configuredWeight
        elapsed = self._rampClock.seconds() - self._rampStart
        if elapsed >= self._rampSeconds:
            self._rampStart = None
            return self.configuredWeight
        return self.configuredWeight * max(0.05, elapsed / self._rampSeconds)

    @weight.setter
    def weight(self, value):
        self.configuredWeight = value

    def slowStart(self, clock, seconds):
        """
        Ramp up from a small share to the full weight over C{seconds}.
        """
        if seconds > 0:
            self._rampClock = clock
            self._rampStart = clock.seconds()
            self._rampSeconds = seconds

    @property
    def ramping(self):
        return self._rampStart is not None and self.weight != self.configuredWeight

    def recordLatency(self, now, seconds):
        """
        Remember how long one request took.
        """
        self._latencies.append((now, seconds))

    def latenciesAfter(self, mark):
        """
        C{(seconds, mark)}: the response times recorded since C{mark} was
        returned (all that are kept for L{None}), oldest first, and the mark
        to pass next time.  Marks follow the order samples arrived in, not
        their times: a worker's samples reach the parent a little late.
        """
        samples = []
        for entry in reversed(self._latencies):
            if entry is mark:
                break
            samples.append(entry[1])
        samples.reverse()
        return samples, (self._latencies[-1] if self._latencies else mark)

    def latency(self, now):
        """
        C{(mean, p95)} in seconds over the recent window, or C{(None, None)}
        with no request in it.
        """
        horizon = now - LATENCY_WINDOW
        recent = sorted(s for t, s in self._latencies if t >= horizon)
        if not recent:
            return None, None
        p95 = recent[min(len(recent) - 1, int(math.ceil(0.95 * len(recent))) - 1)]
        return sum(recent) / len(recent), p95

    def whenIdle(self):
        """
        A L{Deferred} that fires once nothing is in flight on this member.
        """
        if self.active == 0:
            return succeed(self)
        d = Deferred()
        self._idleWaiters.append(d)
        return d

    @property
    def healthy(self):
        """
        C{False} from a failure until the next success.
        """
        return self.downSince is None

    def __repr__(self):
        return f"<Member {self.name} {self.url}>"


class Balancer:
    """
    A named group of members and the scheduler that spreads requests over
    them.

    @param clock: an L{twisted.internet.interfaces.IReactorTime}; the down
        state is kept in its seconds.
    @param retry: seconds a member rests after a failure before it gets
        requests again (Apache's C{retry}).
    """

    def __init__(self, name, scheduler, members, clock, retry=60.0, schedulerName=""):
        self.name = name
        self._clock = clock
        self.scheduler = scheduler
        self.schedulerName = schedulerName
        self.members = list(members)
        self.retry = retry
        self._observers = []
        #: Statuses that count as a member failure (Apache's C{failonstatus}).
        self.failOnStatus = frozenset()
        #: Whether a request with an C{Idempotency-Key} header may be sent
        #: again, whatever its method, after a member failed before answering.
        self.retryIdempotencyKey = False
        #: With active health checks, a member that failed is brought back
        #: by its checks, not by the end of C{retry} or by live traffic.
        self.activeChecks = False
        #: The active checks' settings (L{playbalancer.config.HealthConfig}),
        #: shown by the manager; L{None} without checks.
        self.healthSettings = None
        #: Seconds over which a member that came back up ramps to its weight.
        self.slowStart = 0.0
        #: C{"http"} or C{"tcp"}: what its members speak.
        self.mode = "http"
        #: Requests answered 503 because no member was usable.
        self.unavailable = 0
        #: Its members' health: what attempts and checks make of it.
        self.memberHealth = MemberHealth(self, clock)
        #: Session affinity (L{playbalancer.sticky}), asked before the
        #: scheduler; L{None} without.
        self.sticky = None
        #: What a rolling restart started by the manager runs
        #: (L{playbalancer.config.rolling.RollingRestartConfig}), or L{None}.
        self.rollingRestart = None

    @property
    def scheduler(self):
        """
        The L{IScheduler} that picks members.  One that is also an
        L{IResponseTimeObserver} gets this balancer's clock when it is set,
        and every attempt's response time or failure after.
        """
        return self._scheduler

    @scheduler.setter
    def scheduler(self, scheduler):
        self._scheduler = scheduler
        self._responseTimes = None
        if IResponseTimeObserver.providedBy(scheduler):
            scheduler.setClock(self._clock)
            self._responseTimes = scheduler

    def observe(self, observer):
        """
        Call C{observer(balancer, member, change)} after every admin change
        (C{change} is a C{dict} of what changed, C{"who"} included).
        """
        self._observers.append(observer)

    def _changed(self, member, change, who):
        change = dict(change, who=who)
        what = ", ".join(f"{k}={v}" for k, v in sorted(change.items()) if k != "who")
        _log.info(
            "member {balancer}/{member} changed by {who}: {what}",
            balancer=self.name,
            member=member.name,
            who=who or "config",
            what=what,
            playbalancer_event="member.admin",
            change={k: v for k, v in change.items() if k != "who"},
        )
        member.stats.note(self._clock.seconds(), f"{what} by {who or 'config'}")
        for observer in list(self._observers):
            observer(self, member, change)

    def seconds(self):
        """
        Now, on the clock this balancer keeps its time by.
        """
        return self._clock.seconds()

    def member(self, name):
        """
        The member called C{name}, or L{None}.
        """
        for member in self.members:
            if member.name == name:
                return member
        return None

    def candidates(self, exclude=()):
        """
        The members that may take a new request, in configured order.

        Members must be admin-enabled, have a weight above zero and not be
        resting after a failure.  Standby members are returned only when no
        primary qualifies.  When every member that qualifies otherwise is
        resting, they are all returned (primaries first), since a balancer
        with nothing to try would refuse traffic for the whole C{retry} time
        after, say, a single restart (Apache's C{forcerecovery}).

        @param exclude: members already tried for this request.
        """
        now = self._clock.seconds()
        primaries = []
        standbys = []
        resting = []
        for member in self.members:
            if member.admin != "enabled" or member.weight <= 0 or member in exclude:
                continue
            if member.downUntil is not None and member.downUntil > now:
                resting.append(member)
            elif member.standby:
                standbys.append(member)
            else:
                primaries.append(member)
        if primaries:
            return primaries
        if standbys:
            return standbys
        return [m for m in resting if not m.standby] + [m for m in resting if m.standby]

    def pick(self, request, exclude=()):
        """
        Choose the member for a new request, or L{None} when none is usable:
        the member of the request's session if it holds (see
        L{playbalancer.sticky}), else the scheduler's pick.
        """
        sticky = self.sticky
        if sticky is not None:
            member = sticky.memberFor(request, exclude)
            if member is not None:
                return member
        candidates = self.candidates(exclude)
        if not candidates:
            return None
        return self.scheduler.pick(candidates, request)

    def secondsUntilRetry(self):
        """
        Seconds until the first resting member may be tried again (at least
        1): what a C{Retry-After} header should say.
        """
        now = self._clock.seconds()
        waits = [
            m.downUntil - now
            for m in self.members
            if m.downUntil is not None and now < m.downUntil < math.inf
        ]
        return max(1, math.ceil(min(waits))) if waits else 1

    def begin(self, member):
        """
        A request (or connection) starts on C{member}.
        """
        member.active += 1
        member.requests += 1

    def memberResponded(self, member, status=None):
        """
        C{member} answered an attempt (a response head with C{status}; in
        TCP mode, a connection): see L{MemberHealth.responded}.
        """
        self.memberHealth.responded(member, status)

    def attemptEnded(self, member, outcome):
        """
        An attempt on C{member} (begun with L{begin}) is over: its counters
        and passive health take its outcome (L{MemberHealth.record}), so
        does a scheduler that learns response times
        (L{playbalancer.responsetimes.report}), and it ends.

        @param outcome: an L{playbalancer.outcome.Outcome}.
        """
        self.memberHealth.record(member, outcome)
        if self._responseTimes is not None:
            reportResponseTime(self._responseTimes, member, outcome)
        self.end(member, outcome.bytesIn, outcome.bytesOut, outcome.total)

    def noUsableMember(self):
        """
        A request found no usable member: count it.

        @return: seconds after which one may be usable again (for
            I{Retry-After}).
        """
        self.unavailable += 1
        return self.secondsUntilRetry()

    def end(self, member, bytesIn=0, bytesOut=0, latency=None):
        """
        A request (or connection) on C{member} is over.

        @param latency: how long it took, in seconds, if it got an answer.
        """
        member.active -= 1
        member.bytesIn += bytesIn
        member.bytesOut += bytesOut
        if latency is not None:
            member.recordLatency(self._clock.seconds(), latency)
        if member.active == 0:
            waiters, member._idleWaiters = member._idleWaiters, []
            for d in waiters:
                d.callback(member)
            if member.removing and member in self.members:
                self.members.remove(member)

    def checkResult(self, member, ok, detail, duration, rise, fall):
        """See L{MemberHealth.checkResult}."""
        self.memberHealth.checkResult(member, ok, detail, duration, rise, fall)

    def setAdmin(self, member, state, who=None):
        """
        Set C{member}'s admin state: C{"enabled"}, C{"drain"} (no new
        requests, those in flight finish) or C{"disabled"} (the same, meant
        for a member that is off for longer; its health checks go on, so the
        manager shows whether it is ready to come back).
        """
        if state not in ADMIN_STATES:
            raise ValueError(f"admin must be one of {', '.join(ADMIN_STATES)}, got {state!r}")
        if member.admin != state:
            member.admin = state
            member.drainSince = self._clock.seconds() if state == "drain" else None
            self._changed(member, {"admin": state}, who)

    def setStandby(self, member, standby, who=None):
        """
        Make C{member} a hot standby, or a primary.
        """
        if not isinstance(standby, bool):
            raise ValueError(f"standby must be true or false, got {standby!r}")
        if member.standby != standby:
            member.standby = standby
            self._changed(member, {"standby": standby}, who)

    def setWeight(self, member, weight, who=None):
        """
        Set C{member}'s share of new requests (0: none).
        """
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise ValueError(f"weight must be a whole number >= 0, got {weight!r}")
        if member.configuredWeight != weight:
            member.configuredWeight = weight
            self._changed(member, {"weight": weight}, who)

    def reset(self, member, who=None):
        """
        Forget C{member}'s failure now rather than after C{retry} (Apache's
        force recovery).
        """
        if member.downSince is not None:
            member.downSince = member.downUntil = member.downReason = None
            self._changed(member, {"reset": True}, who)

    def addMember(self, member, who=None):
        """
        Add C{member} at run time.  Without active health checks it gets
        requests at once; with them it is down ("not checked yet") and
        gets no requests before its first passing check.

        @raise ValueError: if a member of that name exists.
        """
        if self.member(member.name) is not None:
            raise ValueError(f"member {member.name!r} exists")
        if self.activeChecks:
            # Traffic only after its first checks pass.
            self.memberHealth.markDown(member, "not checked yet", self._clock.seconds())
        self.members.append(member)
        self._changed(
            member,
            {"added": member.url, "standby": member.standby, "weight": member.weight},
            who,
        )

    def removeMember(self, member, who=None, detach=False):
        """
        Take C{member} out: no new requests at once, gone from the balancer
        once those in flight end (with C{detach}, at once: its name is free
        for a new member, and its requests in flight still end).

        @return: a L{Deferred} that fires when it is idle.
        """
        member.removing = True
        member.admin = "disabled"
        self._changed(member, {"removed": True}, who)
        if (detach or member.active == 0) and member in self.members:
            self.members.remove(member)
        return member.whenIdle()

    def countFailure(self, member):
        """See L{MemberHealth.countFailure}."""
        self.memberHealth.countFailure(member)

    def badResponse(self, member, reason):
        """See L{MemberHealth.badResponse}."""
        self.memberHealth.badResponse(member, reason)

    def memberFailed(self, member, reason):
        """See L{MemberHealth.memberFailed}."""
        self.memberHealth.memberFailed(member, reason)

    def memberSucceeded(self, member):
        """See L{MemberHealth.memberSucceeded}."""
        self.memberHealth.memberSucceeded(member)
