"""
What the top of the manager page (and its browser tab) says: per balancer,
its traffic over the history's last sample and its members by state, and
the state of the whole balancer: all serving, degraded, or a balancer with
no usable member.
"""

from __future__ import annotations

from playbalancer.manager.model import usable

__all__ = ["ERROR_SHARE", "STATES", "balancerOverview", "overview", "overallState"]

#: The share of failed requests over the last sample from which a balancer
#: counts as degraded.
ERROR_SHARE = 0.05

#: The member states counted, in the order the page lists them.
STATES = ("serving", "standby", "draining", "disabled", "down", "idle", "removing")

#: Each overall state's sign and words (the words alone say it: colour and
#: sign only repeat them).
_WORDS = {
    "serving": ("\u2714", "serving"),
    "degraded": ("\u26a0", "degraded"),
    "down": ("\u2716", "no usable member"),
}


def balancerOverview(balancer, info, latest):
    """
    One balancer's tile: C{state} (C{serving}, C{degraded} or C{down}),
    C{text}, C{sign}, the last sample's C{requests_per_second},
    C{error_share} and C{p95_ms} (L{None} before the first sample), and
    C{members} by state.

    @param info: its L{playbalancer.manager.model.balancerStatus}.
    @param latest: the history's last sample of it (a dict of
        L{playbalancer.manager.history.FIELDS}), or L{None}.
    """
    counts = dict.fromkeys(STATES, 0)
    for member in info["members"].values():
        counts[member["state"]] = counts.get(member["state"], 0) + 1
    requests = errors = p95 = None
    share = None
    if latest is not None:
        requests, errors, p95 = latest["requests"], latest["errors"], latest["p95"]
        share = min(1.0, errors / requests) if requests else (1.0 if errors else 0.0)
    problems = []
    if not any(usable(m) for m in balancer.members):
        state = "down"
    else:
        if counts["down"]:
            problems.append(f"{counts['down']} down")
        if share is not None and share >= ERROR_SHARE:
            problems.append(f"{share:.0%} of requests failing")
        state = "degraded" if problems else "serving"
    sign, words = _WORDS[state]
    text = f"{words}: {', '.join(problems)}" if problems else words
    return {
        "state": state,
        "sign": sign,
        "text": text,
        "requests_per_second": None if requests is None else round(requests, 2),
        "error_share": None if share is None else round(share, 4),
        "p95_ms": None if p95 is None else round(p95 * 1000.0, 2),
        "members": counts,
    }


def overallState(tiles):
    """
    C{(state, sign, text)} of the whole balancer from its balancers' tiles:
    the worst of them, naming the balancers it is about.
    """
    for state in ("down", "degraded"):
        names = sorted(name for name, tile in tiles.items() if tile["state"] == state)
        if names:
            sign, words = _WORDS[state]
            return state, sign, f"{words}: {', '.join(names)}"
    sign, words = _WORDS["serving"]
    return "serving", sign, "all serving" if tiles else "no balancer"


def overview(balancers, infos, history=None):
    """
    C{{"state", "sign", "text", "balancers": {name: tile}}}.

    @param infos: the balancers' L{playbalancer.manager.model.balancerStatus}
        by name.
    @param history: the manager's L{playbalancer.manager.history.History},
        or L{None}.
    """
    tiles = {}
    for name, balancer in balancers.items():
        latest = history.latest(name) if history is not None else None
        tiles[name] = balancerOverview(balancer, infos[name], latest)
    state, sign, text = overallState(tiles)
    return {"state": state, "sign": sign, "text": text, "balancers": tiles}
