"""
Short, stable words for why talking to a member failed, for logs, the
manager and health checks: "connection refused", not a paragraph.
"""

from __future__ import annotations

from OpenSSL import SSL
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

from playbalancer._net.tlsclient import CertificateRejected

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
    if isinstance(value, CertificateRejected):
        return f"TLS: {value}"
    if isinstance(value, SSL.Error):
        return "TLS: " + _openSSLText(value)
    text = str(value).strip() or type(value).__name__
    return text.splitlines()[0][:200]


def _openSSLText(error):
    """
    The reasons in an L{OpenSSL.SSL.Error} (a list of C{(library,
    function, reason)}), e.g. "tlsv13 alert certificate required".
    """
    try:
        reasons = [entry[2] for entry in error.args[0] if entry[2]]
    except (IndexError, TypeError):
        reasons = []
    return "; ".join(reasons) or str(error) or "handshake failed"
