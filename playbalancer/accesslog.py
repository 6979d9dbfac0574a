"""
Moved to L{playbalancer.observe.accesslog}; the old name still imports it
(with the private names tests used to take from it).
"""

from playbalancer.observe.accesslog import _ATOMIC_BYTES, AccessLog, ReopenOnSignal, _wholeLines

__all__ = ["AccessLog", "ReopenOnSignal", "_ATOMIC_BYTES", "_wholeLines"]
