"""
Admin state that survives a restart: admin, standby and weight of every
member, and the members added or removed at run time, kept in a JSON file
written atomically after every change.  The format, and how it is taken
and applied, is L{playbalancer.memberstate}'s.
"""

from __future__ import annotations

import json

from twisted.logger import Logger

from playbalancer import memberstate
from playbalancer.atomicfile import replaceFile

FORMAT = memberstate.FORMAT

_log = Logger()


class StateFileError(Exception):
    """
    The state file cannot be used; the message says why and what to do.
    """


def snapshot(balancers, configured):
    """
    The state to save, as a JSON-ready dict (L{playbalancer.memberstate}'s
    format).

    @param configured: C{{balancer: set of member names}} from the config,
        to tell run-time additions and removals from configured members.
    """
    return memberstate.snapshot(balancers, configured)


def write(path, state):
    """
    Replace the file at C{path} with C{state}, atomically: a crash leaves
    the old file or the new one, never half of one.
    """
    text = json.dumps(state, indent=1, sort_keys=True) + "\n"
    replaceFile(path, text.encode("utf-8"), prefix=".playbalancer-state-")


def read(path):
    """
    The saved state, or L{None} when there is no file yet.

    @raise StateFileError: when the file exists but cannot be used.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StateFileError(f"state file {path}: cannot read: {e.strerror}")
    try:
        state = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise StateFileError(
            f"state file {path} is corrupt ({e}); fix it or move it away to start from the config"
        )
    problem = memberstate.check(state)
    if problem:
        raise StateFileError(
            f"state file {path} is not a playbalancer state file ({problem}); "
            "fix it or move it away to start from the config"
        )
    return state


def apply(state, balancers):
    """
    Put the saved state onto freshly configured balancers, through their
    methods (each change logged as made by the state file; a member added
    at run time waits for its first passing check, as when it was added).
    Balancers that no longer exist are skipped with a warning; so are
    saved members that are gone from the config and were not added at run
    time.
    """
    memberstate.apply(state, balancers, "state file", log=_log)


class StateKeeper:
    """
    Saves the state after every admin change of the balancers it watches.
    """

    def __init__(self, path, balancers):
        self.path = path
        self.balancers = balancers
        self.configured = {name: {m.name for m in b.members} for name, b in balancers.items()}

    def load(self):
        """
        Apply the saved state, if any.  Call before L{watch}.

        @raise StateFileError: for a file that cannot be used.
        """
        state = read(self.path)
        if state is not None:
            apply(state, self.balancers)
            _log.info("state restored from {path}", path=self.path)

    def watch(self):
        self._watched = []
        self._follow()

    def _follow(self):
        for balancer in self.balancers.values():
            if not any(balancer is seen for seen in self._watched):
                self._watched.append(balancer)
                balancer.observe(self._changed)
        self._watched = [b for b in self._watched if b in self.balancers.values()]

    def reconfigured(self, config):
        """
        A reload changed the balancers to C{config}'s: watch the new ones,
        take its members as the configured ones, and save.
        """
        self.configured = {
            name: {m.name for m in b.members} for name, b in config.balancers.items()
        }
        self._follow()
        self.save()

    def _changed(self, balancer, member, change):
        if set(change) <= {"reset", "who"}:
            return  # a forgotten failure is not admin state
        self.save()

    def save(self):
        try:
            write(self.path, snapshot(self.balancers, self.configured))
        except OSError as e:
            _log.error("cannot write state file {path}: {error}", path=self.path, error=e)
