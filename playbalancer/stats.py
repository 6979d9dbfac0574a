"""
Moved to L{playbalancer.observe.stats}; the old name still imports it.
"""

from playbalancer.observe.stats import BUCKETS, FAILURE_KINDS, HISTORY, Histogram, MemberStats

__all__ = ["BUCKETS", "FAILURE_KINDS", "HISTORY", "Histogram", "MemberStats"]
