"""
Short, stable words for why talking to a member failed, for logs, the
manager and health checks: "connection refused", not a paragraph.
"""

from __future__ import annotations

from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    DNSLookupError,
    TimeoutError,
)
from twisted.web._newclient import (
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)

_REASONS = [
    (ConnectionRefusedError, "connection refused"),
    (TimeoutError, "connect timeout"),
    (DNSLookupError, "name lookup failed"),
    (ConnectionLost, "connection lost"),
    (ConnectionDone, "connection closed"),
]


def describe(failure):
    """
    A short text for C{failure} (a L{twisted.python.failure.Failure}).
    """
    value = failure.value
    if isinstance(value, (ResponseNeverReceived, RequestTransmissionFailed, ResponseFailed)):
        reasons = getattr(value, "reasons", None)
        if reasons:
            value = reasons[0].value
    for kind, text in _REASONS:
        if isinstance(value, kind):
            return text
    text = str(value).strip() or type(value).__name__
    return text.splitlines()[0][:200]
