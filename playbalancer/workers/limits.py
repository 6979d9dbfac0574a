"""
The limits that hold for the whole balancer, divided among the workers.
"""

from __future__ import annotations


def share(total, index, count, least=1):
    """
    Worker C{index}'s part of a budget of C{total} divided among C{count}
    workers: C{total // count}, one more for the first C{total % count}
    workers, at least C{least}; C{0} (no limit) stays C{0}.
    """
    if total == 0:
        return 0
    return max(least, total // count + (1 if index < total % count else 0))
