"""
Moved to L{playbalancer._net.sendnow}; the old name still imports it.
"""

from playbalancer._net.sendnow import sendNow, sendSequenceNow

__all__ = ["sendNow", "sendSequenceNow"]
