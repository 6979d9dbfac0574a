"""
Reloading the config file of a running balancer: on C{SIGHUP}, from the
manager's C{POST /api/reload} and so from C{playbalancer reload}.  A config
that does not check out, or that a reload cannot apply, changes nothing:
the error is logged on one line naming the key, and returned.  How a
reload changes the balancer: L{playbalancer.reconfigure}.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """

    def __init__(self, running, load, keeper=None):
        self.running = running
        self.load = load
        self.keeper = keeper
        self.version = 1
        #: The last L{ReloadResult}, or L{None}.
        self.last = None

    def reload(self, who="signal"):
        """
        Read the file and apply it.

        @return: a L{ReloadResult}.
        """
        try:
            if self.load is None:
                raise ConfigError("", "started without --config: there is no file to reload")
            config, schedulers = self.load()
            if config.workers > 1:
                raise ConfigError("workers", "a reload with workers > 1 is not supported yet")
            self.running.schedulers = schedulers
            plan = prepare(self.running, config, self.keeper)
        except ConfigError as e:
            return self._refused(str(e), who)
        try:
            changes = plan.apply()
        except Exception:
            # A bug: say so, and keep serving what there is.
            _log.failure("reload by {who}: could not apply it whole", who=who)
            return self._refused("internal error while applying; see the log", who)
        self.version += 1
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
