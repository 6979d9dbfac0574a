"""
Admin state that survives a restart: admin, standby and weight of every
member, and the members added or removed at run time, kept in a JSON file
written atomically after every change.
"""

from __future__ import annotations

import json

from twisted.logger import Logger

from playbalancer.atomicfile import replaceFile
from playbalancer.balancer import ADMIN_STATES, Member
from playbalancer.config import NAME, ConfigError, memberURL

FORMAT = 1

_log = Logger()


class StateFileError(Exception):
    """
    The state file cannot be used; the message says why and what to do.
    """


def snapshot(balancers, configured):
    """
    The state to save, as a JSON-ready dict.

    @param configured: C{{balancer: set of member names}} from the config,
        to tell run-time additions and removals from configured members.
    """
    result = {}
    for name, balancer in balancers.items():
        members = {}
        present = set()
        for member in balancer.members:
            if member.removing:
                continue
            present.add(member.name)
            entry = {
                "admin": member.admin,
                "standby": member.standby,
                "weight": member.configuredWeight,
            }
            if member.name not in configured.get(name, ()):
                entry["url"] = member.url
            members[member.name] = entry
        removed = sorted(configured.get(name, set()) - present)
        result[name] = {"members": members, "removed": removed}
    return {"format": FORMAT, "balancers": result}


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
    problem = _check(state)
    if problem:
        raise StateFileError(
            f"state file {path} is not a playbalancer state file ({problem}); "
            "fix it or move it away to start from the config"
        )
    return state


def _check(state):
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return f"expected format {FORMAT}"
    balancers = state.get("balancers")
    if not isinstance(balancers, dict):
        return "no balancers"
    for bname, entry in balancers.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("members"), dict):
            return f"balancer {bname!r} has no members table"
        if not isinstance(entry.get("removed", []), list):
            return f"balancer {bname!r}: removed is not a list"
        for mname, m in entry["members"].items():
            if not isinstance(mname, str) or not NAME.match(mname) or not isinstance(m, dict):
                return f"bad member entry {mname!r}"
            if m.get("admin") not in ADMIN_STATES:
                return f"member {mname!r}: bad admin state"
            if not isinstance(m.get("standby"), bool):
                return f"member {mname!r}: bad standby"
            weight = m.get("weight")
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
                return f"member {mname!r}: bad weight"
            if "url" in m:
                try:
                    mode = "tcp" if str(m["url"]).startswith("tcp://") else "http"
                    memberURL(m["url"], "url", mode)
                except ConfigError as e:
                    return f"member {mname!r}: bad url: {e.message}"
    return None


def apply(state, balancers):
    """
    Put the saved state onto freshly configured balancers.  Balancers that
    no longer exist are skipped with a warning; so are saved members that
    are gone from the config and were not added at run time.
    """
    for bname, entry in state["balancers"].items():
        balancer = balancers.get(bname)
        if balancer is None:
            _log.warn("state file: balancer {name} is no longer configured", name=bname)
            continue
        for mname, saved in entry["members"].items():
            member = balancer.member(mname)
            if member is None:
                if "url" not in saved:
                    _log.warn("state file: member {b}/{m} is no longer configured", b=bname, m=mname)
                    continue
                # Through the balancer, like any member added at run time:
                # with health checks, no traffic before its first pass.
                member = Member(mname, saved["url"])
                balancer.addMember(member, "state file")
            member.admin = saved["admin"]
            member.standby = saved["standby"]
            member.weight = saved["weight"]
        for mname in entry.get("removed", []):
            member = balancer.member(mname)
            if member is not None:
                balancer.members.remove(member)


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
        for balancer in self.balancers.values():
            balancer.observe(self._changed)

    def _changed(self, balancer, member, change):
        if set(change) <= {"reset", "who"}:
            return  # a forgotten failure is not admin state
        self.save()

    def save(self):
        try:
            write(self.path, snapshot(self.balancers, self.configured))
        except OSError as e:
            _log.error("cannot write state file {path}: {error}", path=self.path, error=e)
