"""
Reloading the config file of a running balancer: on C{SIGHUP}, from the
manager's C{POST /api/reload} and so from C{playbalancer reload}.  A config
that does not check out, or that a reload cannot apply, changes nothing:
the error is logged on one line naming the key, and returned.  How a
reload changes the balancer: L{playbalancer.reconfigure}.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import succeed
from twisted.logger import Logger

from playbalancer.config import ConfigError
from playbalancer.reconfigure import prepare

_log = Logger()


@dataclass
class ReloadResult:
    """
    What one reload did: C{ok}, the config C{version} running after it
    (1 at start, one more per applied reload), and the C{changes} made
    (one line) or the C{error}.
    """

    ok: bool
    version: int
    changes: str = ""
    error: str = ""

    def asJSON(self):
        result = {"ok": self.ok, "version": self.version}
        result.update({"changes": self.changes} if self.ok else {"error": self.error})
        return result


class Reloader:
    """
    Reloads C{running} (a L{playbalancer.running.Running}) from its file,
    one reload at a time.

    @param load: gives C{(config, schedulers)} read from the file again,
        or raises L{ConfigError}; L{None} for a balancer started without
        a file.
    @param keeper: the L{playbalancer.statefile.StateKeeper}, if any.
    @param supervisor: the L{playbalancer.workers.WorkerSupervisor} when
        worker processes serve the listeners: a reload starts a new
        generation of them on the new config, and is done once all serve.
    """

    def __init__(self, running, load, keeper=None, supervisor=None):
        self.running = running
        self.load = load
        self.keeper = keeper
        self.supervisor = supervisor
        self.version = 1
        #: The last L{ReloadResult}, or L{None}.
        self.last = None
        self._current = None

    def reload(self, who="signal"):
        """
        Read the file and apply it, one reload at a time.

        @return: a L{Deferred} firing with a L{ReloadResult} (at once
            without worker processes).
        """
        if self._current is not None:
            return succeed(
                ReloadResult(False, self.version, error="a reload is already under way")
            )
        sockets = None
        try:
            if self.load is None:
                raise ConfigError("", "started without --config: there is no file to reload")
            config, schedulers = self.load()
            plan = prepare(self.running, config, self.keeper, schedulers)
            if self.supervisor is not None:
                try:
                    sockets = self._workerSockets(config)
                except ConfigError:
                    plan.cancel()
                    raise
        except ConfigError as e:
            return succeed(self._refused(str(e), who))
        except Exception:
            _log.failure("reload by {who}: could not read or check the file", who=who)
            return succeed(self._refused("internal error while checking; see the log", who))
        if sockets is not None:
            return self._throughWorkers(plan, config, sockets, schedulers, who)
        return succeed(self._apply(plan, schedulers, who))

    def _throughWorkers(self, plan, config, sockets, schedulers, who):
        """
        Start the new generation of workers; apply the plan only once all
        of them serve (else nothing changed).
        """
        from playbalancer.upgrade import READY_TIMEOUT

        self._current = self.supervisor.startGeneration(
            config, sockets, READY_TIMEOUT, policy=plan.policy
        )

        def serving(_):
            changes = self._change(plan, schedulers, who)
            if changes is None:
                self.supervisor.abandonIncoming()
                return self._refused("internal error while applying; see the log", who)
            # Done (logged, answered) once only the new workers accept.
            version = self.version + 1
            return self.supervisor.commit().addCallback(
                lambda _: self._applied(version, changes, who)
            )

        def failed(failure):
            plan.cancel()
            return self._refused(failure.getErrorMessage(), who)

        def done(result):
            self._current = None
            return result

        return self._current.addCallbacks(serving, failed).addBoth(done)

    def _apply(self, plan, schedulers, who):
        changes = self._change(plan, schedulers, who)
        if changes is None:
            return self._refused("internal error while applying; see the log", who)
        return self._applied(self.version + 1, changes, who)

    def _change(self, plan, schedulers, who):
        """
        Apply C{plan}: what changed, or L{None} after a bug (logged).
        """
        self.running.schedulers = schedulers
        try:
            return plan.apply()
        except Exception:
            # A bug: say so, and keep serving what there is.
            _log.failure("reload by {who}: could not apply it whole", who=who)
            return None

    def _workerSockets(self, config):
        supervisor = self.supervisor
        current = dict(zip((l.endpoint for l in supervisor.config.listeners), supervisor.sockets))
        from playbalancer.workers.supervisor import CannotListen

        try:
            return supervisor.socketsFor(config, reuse=current)
        except CannotListen as e:
            raise ConfigError(f"listen[{e.index}].endpoint", str(e))

    def _applied(self, version, changes, who):
        self.version = version
        _log.info(
            "configuration reloaded by {who} (version {version}): {changes}",
            who=who,
            version=self.version,
            changes=changes,
            playbalancer_event="config.reloaded",
        )
        self.last = ReloadResult(True, self.version, changes=changes)
        return self.last

    def _refused(self, error, who):
        _log.error(
            "reload by {who} refused, nothing changed: {error}",
            who=who,
            error=error,
            playbalancer_event="config.refused",
        )
        self.last = ReloadResult(False, self.version, error=error)
        return self.last
