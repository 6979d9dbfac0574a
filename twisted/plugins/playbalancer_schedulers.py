"""
The built-in playbalancer schedulers, published as Twisted plugins exactly
the way a third-party scheduler is.
"""

from playbalancer.schedulers import leastConn, roundRobin, standby
from playbalancer.schedulers.ewma import peakEwma
from playbalancer.schedulers.hashing import consistentHash

__all__ = ["standby", "roundRobin", "leastConn", "peakEwma", "consistentHash"]
