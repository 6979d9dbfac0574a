"""
The built-in playbalancer schedulers, published as Twisted plugins exactly
the way a third-party scheduler is.
"""

from playbalancer.schedulers import leastConn, roundRobin, standby

__all__ = ["standby", "roundRobin", "leastConn"]
