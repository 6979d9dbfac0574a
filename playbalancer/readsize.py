"""
Moved to L{playbalancer._net.readsize}; the old name still imports it.
"""

from playbalancer._net.readsize import FIRST, LARGE, SMALL, followReads, startSmall

__all__ = ["SMALL", "LARGE", "FIRST", "followReads", "startSmall"]
