"""
Rolling restarts the manager runs itself, started from its page or API
(C{POST api/rolling/BALANCER}) with the command in the balancer's
C{[balancer.NAME.rolling_restart]} table.  The steps are those of
C{playbalancer rolling-restart} (L{playbalancer.ctl.rolling}), run in this
process against the manager's own state instead of over HTTP; they are
reported to L{playbalancer.manager.restarts} as the command line's are,
and logged, with the command's output, in the balancer's log.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

from twisted.internet.defer import ensureDeferred, succeed
from twisted.logger import Logger

from playbalancer.ctl.client import CommandError, ManagerError
from playbalancer.ctl.rolling import restartOrder, rollingRestart
from playbalancer.manager.model import ChangeError

__all__ = ["LocalClient", "LocalReport", "LogLines", "Rollouts"]

log = Logger()


class LocalClient:
    """
    What L{rollingRestart} asks of a manager client (C{status},
    C{change}), answered by this manager's API in-process: the same
    answers, guards and cluster writes as over HTTP.
    """

    def __init__(self, api, who):
        self.api = api
        self.who = who

    def status(self):
        return succeed(self.api.statusAnswer())

    async def change(self, balancer, member, **fields):
        try:
            code, answer = await self.api.changeMember(balancer, member, fields, self.who)
        except ChangeError as e:
            raise ManagerError(e.code, e.message)
        if code >= 400:
            raise ManagerError(code, answer.get("error", f"HTTP {code}"))
        return answer


class LocalReport:
    """
    Reports one run's steps to the manager's L{RollingRestarts} directly,
    as C{rolling-restart}'s L{RollingReport} does over HTTP.  The run was
    started (and refused if another was under way) before it begins.
    """

    def __init__(self, restarts, balancerName, runID, who):
        self.restarts = restarts
        self.balancerName = balancerName
        self.id = runID
        self.who = who

    def _send(self, fields):
        self.restarts.report(self.balancerName, dict(fields, id=self.id), self.who, origin="page")

    async def start(self, members):
        """
        (Started already, by L{Rollouts.start}.)
        """

    async def step(self, member, step, detail=""):
        self._send({"event": "step", "member": member, "step": step, "detail": detail})

    async def finish(self, state, reason=None):
        self._send({"event": "finish", "state": state, "reason": reason})


class LogLines:
    """
    A file whose lines (a run's steps, its command's output) go to the
    log, each saying which balancer's rolling restart it belongs to.
    """

    def __init__(self, balancerName):
        self.balancerName = balancerName
        self._partial = ""

    def isatty(self):
        return False

    def write(self, text):
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                log.info(
                    "rolling restart of {balancer}: {line}", balancer=self.balancerName, line=line
                )

    def flush(self):
        if self._partial:
            self.write("\n")


class Rollouts:
    """
    Starts the rolling restarts the manager runs, one per balancer at a
    time, and keeps each run's L{Deferred} while it goes.

    @param root: the L{playbalancer.manager.ManagerRoot}.
    @param reactor: runs the commands and the waits.
    """

    def __init__(self, root, reactor):
        self.root = root
        self.reactor = reactor
        self.running = {}

    def configured(self, balancerName):
        """
        Whether C{balancerName} has a command to run.
        """
        balancer = self.root.balancers.get(balancerName)
        return getattr(balancer, "rollingRestart", None) is not None

    def check(self, balancerName):
        """
        Whether a run of the balancer could start now: its settings, or
        L{ChangeError} 404 for a balancer without a command, 409 when a
        run of it (from here or the command line) is under way.
        """
        settings = self.root.balancers[balancerName].rollingRestart
        if settings is None:
            raise ChangeError(
                404,
                f"{balancerName} has no rolling restart command: set one in its "
                f"[balancer.{balancerName}.rolling_restart] table",
            )
        run = self.root.restarts.runs.get(balancerName)
        if run is not None and run.state == "running" and self.root.restarts.fresh(run):
            raise ChangeError(
                409, f"a rolling restart of {balancerName} is under way (from the {run.origin}, "
                     f"by {run.who}): one at a time"
            )
        if balancerName in self.running:
            raise ChangeError(409, f"a rolling restart of {balancerName} is under way: one at a time")
        return settings

    def start(self, balancerName, who):
        """
        Start a rolling restart of the balancer; its L{RollingRun}.  A run
        that cannot go on (one member, say) fails in its first step, as
        the command line's does.

        @raise ChangeError: as L{check}.
        """
        settings = self.check(balancerName)
        status = self.root.api.statusAnswer()
        order = restartOrder(status["balancers"][balancerName])
        runID = f"page-{os.getpid()}-{int(self.reactor.seconds() * 1000)}"
        run = self.root.restarts.report(
            balancerName, {"id": runID, "event": "start", "members": order}, who, origin="page"
        )
        out = LogLines(balancerName)
        options = SimpleNamespace(
            balancer=balancerName, members=None, exec=settings.command, timeout=settings.timeout
        )
        client = LocalClient(self.root.api, f"{who} (rolling restart)")
        report = LocalReport(self.root.restarts, balancerName, runID, who)
        log.info("rolling restart of {balancer} started by {who}", balancer=balancerName, who=who)
        d = ensureDeferred(rollingRestart(client, options, out, self.reactor, report=report))
        self.running[balancerName] = d
        d.addErrback(self._failed, balancerName, report)
        d.addBoth(self._ended, balancerName, out)
        return run

    def _failed(self, failure, balancerName, report):
        if failure.check(CommandError):
            log.warn(
                "rolling restart of {balancer} stopped: {reason}",
                balancer=balancerName, reason=str(failure.value),
            )
            return None
        log.failure("rolling restart of {balancer} failed", failure, balancer=balancerName)
        run = self.root.restarts.runs.get(balancerName)
        if run is not None and run.id == report.id and run.state == "running":
            return ensureDeferred(report.finish("failed", f"internal error: {failure.value}"))
        return None

    def _ended(self, result, balancerName, out):
        out.flush()
        self.running.pop(balancerName, None)
        return result
