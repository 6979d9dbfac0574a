"""
Member admin state in one format, taken from balancers and put back onto
them: by the state file (L{playbalancer.statefile}), by the parent's sync
of its workers (L{playbalancer.workers}) and by a cluster node
(L{playbalancer.cluster.mirror}).

The format, a JSON-ready C{dict} (the state file's format 1)::

    {"format": 1,
     "balancers": {
         "<balancer>": {
             "members": {"<member>": ENTRY, ...},
             "removed": ["<member>", ...]}}}

    ENTRY = {"admin": "enabled" | "drain" | "disabled",
             "drain_since": SECONDS (while draining: when it began),
             "standby": true | false,
             "weight": 0, 1, ...,
             "url": "..."}

C{members} are in the balancer's order; C{url} is there for a member added
at run time (for every member in a I{complete} snapshot, as the workers
get); C{removed} names configured members taken out at run time.  The
workers' copy adds C{"down"} to each entry (see L{snapshot}).  A cluster
record (L{playbalancer.cluster.records}) is one ENTRY whose fields are all
optional, plus C{"who"} and C{"removed": true}; L{applyEntry} takes it as
it is.

Everything is applied through the L{Balancer}'s own methods
(C{setAdmin}, C{setStandby}, C{setWeight}, C{addMember},
C{removeMember}): each change is logged and observed like one from the
manager, and a member added with active health checks gets no traffic
before its first passing check.
"""

from __future__ import annotations

from twisted.logger import Logger

from playbalancer.balancer import ADMIN_STATES, Member
from playbalancer.config import NAME, ConfigError, memberURL

FORMAT = 1

_log = Logger()


def entry(member, url=False):
    """
    One member's ENTRY.

    @param url: whether to include its URL (a member added at run time).
    """
    result = {"admin": member.admin, "standby": member.standby, "weight": member.configuredWeight}
    # (getattr: an old process upgrading to this version may load this
    # module from disk beside members of its own older class.)
    since = getattr(member, "drainSince", None)
    if since is not None:
        result["drain_since"] = since
    if url:
        result["url"] = member.url
    return result


def snapshot(balancers, configured=None, health=False):
    """
    The admin state of C{balancers}, in the format above.

    @param configured: C{{balancer: set of member names}} from the config,
        to tell run-time additions (with their URL) and removals from
        configured members; L{None} for a complete snapshot, every member
        with its URL (to apply with C{complete=True}).
    @param health: add C{"down"} to every entry: why the member is out of
        rotation by its active checks, or L{None} (for the workers, which
        run no checks of their own).
    """
    result = {}
    for name, balancer in balancers.items():
        mine = None if configured is None else configured.get(name, set())
        members = {}
        for member in balancer.members:
            if member.removing:
                continue
            members[member.name] = item = entry(member, url=mine is None or member.name not in mine)
            if health:
                item["down"] = member.downReason if balancer.activeChecks and not member.healthy else None
        removed = [] if mine is None else sorted(mine - set(members))
        result[name] = {"members": members, "removed": removed}
    return {"format": FORMAT, "balancers": result}


def check(state):
    """
    What is wrong with C{state} (as read from a file), or L{None}.
    """
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return f"expected format {FORMAT}"
    balancers = state.get("balancers")
    if not isinstance(balancers, dict):
        return "no balancers"
    for bname, table in balancers.items():
        if not isinstance(table, dict) or not isinstance(table.get("members"), dict):
            return f"balancer {bname!r} has no members table"
        if not isinstance(table.get("removed", []), list):
            return f"balancer {bname!r}: removed is not a list"
        for mname, m in table["members"].items():
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


def live(balancer, name):
    """
    The member called C{name} that is not on its way out, or L{None}.
    """
    for member in balancer.members:
        if member.name == name and not member.removing:
            return member
    return None


def newMember(balancer, name, item):
    """
    The L{Member} an ENTRY with a URL describes, to add to C{balancer}.
    """
    return Member(name, item["url"], weight=item.get("weight", 1), standby=item.get("standby", False))


def _add(balancer, member, who):
    """
    C{balancer.addMember(member, who)}, also when a member of that name is
    still on its way out (requests in flight), which C{addMember} would
    refuse as existing: those are set aside meanwhile and put back after
    the new one, so that C{Balancer.member} finds the new one and
    C{Balancer.end} still drops the old one once idle.
    """
    leaving = [m for m in balancer.members if m.name == member.name and m.removing]
    for m in leaving:
        balancer.members.remove(m)
    try:
        balancer.addMember(member, who)
    finally:
        balancer.members.extend(leaving)


def applyEntry(balancer, name, item, who, replace=False, makeMember=newMember):
    """
    Make member C{name} match one ENTRY (or cluster record): C{removed}
    takes it out; a member that is not there is added when the entry has
    a URL; then C{admin}, C{standby} and C{weight}, those present.

    @param replace: whether a member whose URL differs from the entry's is
        taken out and added again with the entry's URL (otherwise only a
        missing member is added; the config's URL wins).
    @param makeMember: C{(balancer, name, entry)} to the new L{Member}.
    @return: C{(member, added)}: the member now (L{None} when there is
        none) and whether it was added.
    """
    member = live(balancer, name)
    if item.get("removed"):
        if member is not None:
            balancer.removeMember(member, who)
        return None, False
    url = item.get("url")
    added = False
    if member is not None and replace and url and member.url != url:
        balancer.removeMember(member, who)
        member = None
    if member is None:
        if not url:
            return None, False
        member = makeMember(balancer, name, item)
        _add(balancer, member, who)
        added = True
    if "admin" in item:
        balancer.setAdmin(member, item["admin"], who)
        since = item.get("drain_since")
        if member.admin == "drain" and isinstance(since, (int, float)) and not isinstance(since, bool):
            member.drainSince = float(since)  # (when it began, wherever that was)
    if "standby" in item:
        balancer.setStandby(member, item["standby"], who)
    if "weight" in item:
        balancer.setWeight(member, item["weight"], who)
    return member, added


def apply(state, balancers, who, complete=False, makeMember=newMember, log=None):
    """
    Put C{state} (the format above) onto C{balancers}.  Balancers that are
    not there are skipped with a warning; so are entries of members that
    are not there, without a URL to add them.

    @param who: who the changes are logged as made by.
    @param complete: whether C{state} is a complete snapshot: members not
        in it are taken out, and those whose URL differs are replaced.
    @param log: the caller's L{Logger}, for the warnings to come from its
        namespace; this module's by default.
    @return: the members added.
    """
    log = _log if log is None else log
    added = []
    for bname, table in state["balancers"].items():
        balancer = balancers.get(bname)
        if balancer is None:
            log.warn("{who}: balancer {name} is no longer configured", who=who, name=bname)
            continue
        wanted = table["members"]
        if complete:
            for member in list(balancer.members):
                if not member.removing and member.name not in wanted:
                    balancer.removeMember(member, who)
        for mname, item in wanted.items():
            member, new = applyEntry(balancer, mname, item, who, replace=complete, makeMember=makeMember)
            if member is None:
                log.warn("{who}: member {b}/{m} is no longer configured", who=who, b=bname, m=mname)
            elif new:
                added.append(member)
        for mname in table.get("removed", []):
            applyEntry(balancer, mname, {"removed": True}, who)
    return added
