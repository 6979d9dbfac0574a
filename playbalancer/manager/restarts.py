"""
The rolling restarts the manager knows of, for the page's progress panel:
per balancer the current or last run, with each member's step.  A
C{playbalancer rolling-restart} reports its steps here as it goes
(C{POST api/rolling/BALANCER/report}), and so does a run the manager
started itself (L{playbalancer.manager.rollout}); C{GET api/rolling}
answers what is known.
"""

from __future__ import annotations

import re

from playbalancer.manager.model import ChangeError

__all__ = ["STEPS", "EVENTS", "STALE", "RollingRun", "RollingRestarts"]

#: A member's steps, in the order a restart takes them (C{skipped} and
#: C{failed} end it early).
STEPS = ("waiting", "draining", "running", "health", "enabled", "skipped", "failed")

#: What a report says: a run starts, a member takes a step, the run ends.
EVENTS = ("start", "step", "finish")

#: Seconds without a report after which a running run no longer keeps
#: another from starting (its command line died without saying so).
STALE = 600.0

_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_DETAIL = 300


class RollingRun:
    """
    One rolling restart of a balancer, as reported.
    """

    def __init__(self, runID, balancer, members, origin, who, now):
        self.id = runID
        self.balancer = balancer
        self.origin = origin
        self.who = who
        self.started = now
        self.finished = None
        self.state = "running"
        self.reason = None
        self.lastReport = now
        self.members = [{"name": name, "step": "waiting", "detail": "", "since": None} for name in members]

    def member(self, name):
        for member in self.members:
            if member["name"] == name:
                return member
        return None

    def asJSON(self):
        return {
            "id": self.id,
            "origin": self.origin,
            "who": self.who,
            "state": self.state,
            "reason": self.reason,
            "started": self.started,
            "finished": self.finished,
            "done": sum(1 for m in self.members if m["step"] in ("enabled", "skipped")),
            "total": len(self.members),
            "members": [dict(m) for m in self.members],
        }


def _text(value, what, limit=_DETAIL):
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ChangeError(400, f"{what} must be a string")
    return value[:limit]


class RollingRestarts:
    """
    The current or last rolling restart of each balancer.

    @param clock: provides C{seconds()}.
    """

    def __init__(self, clock, stale=STALE):
        self.clock = clock
        self.stale = stale
        self.runs = {}

    def status(self, balancerNames, configured=lambda name: False):
        """
        What C{GET api/rolling} answers: per balancer whether the manager
        can start one itself (C{configured(name)}: a command is set for
        it) and its run, or L{None}.
        """
        return {
            "time": self.clock.seconds(),
            "balancers": {
                name: {
                    "configured": configured(name),
                    "run": self.runs[name].asJSON() if name in self.runs else None,
                }
                for name in balancerNames
            },
        }

    def fresh(self, run):
        """
        Whether C{run} reported within the last C{stale} seconds.
        """
        return self.clock.seconds() - run.lastReport < self.stale

    def report(self, balancerName, body, who, origin="cli"):
        """
        Take one report; L{ChangeError} (400, 404 or 409) for one that does
        not fit.
        """
        if not isinstance(body, dict):
            raise ChangeError(400, "expected a JSON object")
        runID, event = body.get("id"), body.get("event")
        if not isinstance(runID, str) or not _ID.match(runID):
            raise ChangeError(400, "id must be 1-64 of A-Z a-z 0-9 . _ -")
        if event not in EVENTS:
            raise ChangeError(400, f"event must be one of {', '.join(EVENTS)}")
        now = self.clock.seconds()
        run = self.runs.get(balancerName)
        if event == "start":
            members = body.get("members")
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                raise ChangeError(400, "members must be a list of names")
            if run is not None and run.id != runID and run.state == "running" and self.fresh(run):
                raise ChangeError(
                    409, f"a rolling restart of {balancerName} is under way (from the {run.origin}, "
                         f"by {run.who}): one at a time"
                )
            self.runs[balancerName] = RollingRun(runID, balancerName, members, origin, who, now)
            return self.runs[balancerName]
        if run is None or run.id != runID:
            raise ChangeError(404, f"no rolling restart {runID} of {balancerName}")
        run.lastReport = now
        if event == "step":
            member = run.member(body.get("member"))
            if member is None:
                raise ChangeError(404, f"no member {body.get('member')!r} in this rolling restart")
            step = body.get("step")
            if step not in STEPS:
                raise ChangeError(400, f"step must be one of {', '.join(STEPS)}")
            if member["step"] != step:
                member["since"] = now
            member["step"], member["detail"] = step, _text(body.get("detail"), "detail")
        else:
            state = body.get("state")
            if state not in ("done", "failed"):
                raise ChangeError(400, "state must be done or failed")
            run.state, run.finished = state, now
            run.reason = _text(body.get("reason"), "reason") or None
        return run
