"""
The workers' counters: what a worker reports of each member
(L{memberCounts}), and how the parent sums the reports (L{fold}) and
shows the sums on its own members (L{show}).
"""

from __future__ import annotations

from playbalancer.observe.stats import BUCKETS, FAILURE_KINDS

_COUNTERS = ("requests", "failures", "bytesIn", "bytesOut", "retries")


def fold(into, report):
    """
    Add a report's counters to C{into} (in place).
    """
    members = into.setdefault("members", {})
    for key, counts in report.get("members", {}).items():
        total = members.setdefault(key, _empty())
        for name in _COUNTERS + ("active", "sessions"):
            total[name] += counts.get(name, 0)
        for kind, value in counts["classes"].items():
            total["classes"][kind] = total["classes"].get(kind, 0) + value
        for kind, value in counts["kinds"].items():
            total["kinds"][kind] = total["kinds"].get(kind, 0) + value
        for histogram in ("firstByte", "total"):
            mine, theirs = total[histogram], counts[histogram]
            mine["counts"] = [a + b for a, b in zip(mine["counts"], theirs["counts"])]
            mine["sum"] += theirs["sum"]
            mine["count"] += theirs["count"]
    listeners = into.setdefault("listeners", [])
    for index, counts in enumerate(report.get("listeners", [])):
        if index >= len(listeners):
            listeners.append(dict(dict.fromkeys(("open", "accepted", "rejected", "refused"), 0), routes=[]))
        for name, value in counts.items():
            if name == "routes":
                _addRoutes(listeners[index]["routes"], value)
            else:
                listeners[index][name] += value


def _addRoutes(into, routes):
    """
    Add one worker's route counters (C{[[name, counters]]}, every worker
    listing the same routes in the same order) to C{into}.
    """
    for index, (name, counts) in enumerate(routes):
        if index >= len(into):
            into.append([name, dict(counts, hits=0, denied=0, responses={})])
        total = into[index][1]
        total["hits"] += counts["hits"]
        total["denied"] += counts["denied"]
        for code, count in counts["responses"].items():
            total["responses"][code] = total["responses"].get(code, 0) + count


def _empty():
    histogram = {"counts": [0] * (len(BUCKETS) + 1), "sum": 0.0, "count": 0}
    return dict(
        dict.fromkeys(_COUNTERS + ("active", "sessions"), 0),
        classes={},
        kinds={},
        firstByte=dict(histogram),
        total=dict(histogram, counts=list(histogram["counts"])),
    )


def show(member, counts):
    """
    Show the workers' summed counters on the parent's member.
    """
    member.active = counts["active"]
    member.requests = counts["requests"]
    member.failures = counts["failures"]
    member.bytesIn = counts["bytesIn"]
    member.bytesOut = counts["bytesOut"]
    member.workerSessions = counts["sessions"]
    stats = member.stats
    stats.retries = counts["retries"]
    stats.statusClasses.update(counts["classes"])
    stats.failures.update(counts["kinds"])
    for name in ("firstByte", "total"):
        histogram = getattr(stats, name)
        histogram.counts = list(counts[name]["counts"])
        histogram.sum = counts[name]["sum"]
        histogram.count = counts[name]["count"]


def memberCounts(member, sticky=None):
    """
    One member's counters, for a L{Report}; with C{sticky} (its balancer's
    affinity), the sessions seen on it in the last minute.
    """
    stats = member.stats
    return {
        "active": member.active,
        "sessions": 0 if sticky is None else sticky.sessions.count(member, sticky.balancer.seconds()),
        "requests": member.requests,
        "failures": member.failures,
        "bytesIn": member.bytesIn,
        "bytesOut": member.bytesOut,
        "retries": stats.retries,
        "classes": dict(stats.statusClasses),
        "kinds": {k: stats.failures[k] for k in FAILURE_KINDS},
        "firstByte": {
            "counts": list(stats.firstByte.counts),
            "sum": stats.firstByte.sum,
            "count": stats.firstByte.count,
        },
        "total": {"counts": list(stats.total.counts), "sum": stats.total.sum, "count": stats.total.count},
    }
