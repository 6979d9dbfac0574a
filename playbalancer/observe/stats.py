"""
Plain counters the data path keeps per member and per listener, cheap to
update on every request; L{playbalancer.observe.metrics} turns them into
Prometheus metrics when scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque

__all__ = ["BUCKETS", "FAILURE_KINDS", "HISTORY", "Histogram", "MemberStats"]

#: Upper bounds (seconds) of the response time histogram buckets.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: The kinds of member failure counted.
FAILURE_KINDS = ("connect", "timeout", "reset", "bad_response", "queue_full")

#: State changes kept per member for the manager page.
HISTORY = 12


class Histogram:
    """
    Counts of observations per bucket (non-cumulative), their sum and count.
    """

    __slots__ = ("counts", "sum", "count")

    def __init__(self):
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds):
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self):
        """
        C{[(upper bound as text, cumulative count)]}, ending with C{+Inf}.
        """
        total = 0
        result = []
        for bound, count in zip(BUCKETS + (float("inf"),), self.counts):
            total += count
            result.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return result


class MemberStats:
    """
    What happened on one member, by kind.
    """

    def __init__(self):
        self.statusClasses = {"1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
        self.failures = dict.fromkeys(FAILURE_KINDS, 0)
        self.retries = 0
        self.firstByte = Histogram()
        self.total = Histogram()
        self.history = deque(maxlen=HISTORY)

    def answered(self, status):
        key = _STATUS_CLASS.get(status // 100)
        if key is not None:
            self.statusClasses[key] += 1

    def note(self, at, text):
        """
        Remember a state change for the manager page.
        """
        self.history.append((at, text))


_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
