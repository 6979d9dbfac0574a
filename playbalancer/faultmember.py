"""
Moved to L{playbalancer.testing.faultmember}; the old name still imports it.
"""

from playbalancer.testing.faultmember import BEHAVIOURS, MALFORMED, MAX_HEAD, FaultMember

__all__ = ["MALFORMED", "BEHAVIOURS", "MAX_HEAD", "FaultMember"]
