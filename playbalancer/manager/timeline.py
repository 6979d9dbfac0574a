"""
The manager's event timeline: the recent state changes of every member of
every balancer in one list, newest first (each member keeps its last few,
see L{playbalancer.observe.stats.HISTORY}); admin changes name who made
them.
"""

from __future__ import annotations

__all__ = ["LENGTH", "timeline"]

#: Events listed at most.
LENGTH = 60


def timeline(infos, length=LENGTH):
    """
    C{[{"at", "balancer", "member", "text"}]}, newest first.

    @param infos: the balancers' L{playbalancer.manager.model.balancerStatus}
        by name.
    """
    events = [
        {"at": event["at"], "balancer": balancerName, "member": memberName, "text": event["text"]}
        for balancerName, info in infos.items()
        for memberName, member in info["members"].items()
        for event in member["events"]
    ]
    events.sort(key=lambda event: -event["at"])
    return events[:length]
