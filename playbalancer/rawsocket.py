"""
Moved to L{playbalancer._net.rawsocket}; the old name still imports it.
"""

from playbalancer._net.rawsocket import (
    canHalfClose,
    closeWhenSent,
    closeWriting,
    forgetPause,
    holdProducerUntilDrained,
    kernelNotSent,
    setSendLimit,
    socketTransport,
    unsentBytes,
)

__all__ = [
    "socketTransport",
    "setSendLimit",
    "canHalfClose",
    "closeWhenSent",
    "closeWriting",
    "holdProducerUntilDrained",
    "kernelNotSent",
    "forgetPause",
    "unsentBytes",
]
