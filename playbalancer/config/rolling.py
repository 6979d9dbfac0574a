"""
The C{[balancer.NAME.rolling_restart]} table: the command the manager runs
for each member when a rolling restart is started from its page or API
(C{POST api/rolling/NAME}).  The command lives in the config file, never
in a request: whoever can reach the manager can start it, not choose it.
"""

from __future__ import annotations

from dataclasses import dataclass

from playbalancer.config.values import ConfigError, _Table, _seconds, _string

#: Seconds a member may take to drain, and then to pass its health
#: checks, before the run stops (as C{rolling-restart --timeout}).
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class RollingRestartConfig:
    """
    @ivar command: run with C{/bin/sh -c} once per member, with
        C{PLAYBALANCER_BALANCER}, C{PLAYBALANCER_MEMBER} and
        C{PLAYBALANCER_URL} in its environment.
    @ivar timeout: seconds for each wait (draining, health); 0 waits
        forever.
    """

    command: str
    timeout: float = DEFAULT_TIMEOUT


def _command(value, path):
    _string(value, path)
    if not value.strip():
        raise ConfigError(path, "expected a shell command, got an empty string")
    if "\0" in value:
        raise ConfigError(path, "a command cannot hold a NUL character")
    return value


def parseRollingRestart(data, path, hasHealth):
    """
    The table at C{path}; a rolling restart needs health checks, or a
    restarted member could not be known to be back.
    """
    table = _Table(data, path)
    config = RollingRestartConfig(
        command=table.get("command", _command, required=True),
        timeout=table.get("timeout", _seconds, DEFAULT_TIMEOUT),
    )
    table.done()
    if not hasHealth:
        raise ConfigError(
            path, "a rolling restart needs health checks (a [balancer.NAME.health] table): "
                  "without them a restarted member cannot be known to be back"
        )
    return config
