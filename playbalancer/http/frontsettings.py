"""
A listener's limits and timeouts, as the HTTP/1.1 front
(L{playbalancer.http.front}) keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass

from playbalancer.http.wire import Limits
from playbalancer.http2.budget import FloodLimits

#: What a listener speaks unless told: HTTP/1.1 (over TLS, HTTP/2 as well:
#: see the config's C{protocols}).
HTTP11 = ("http/1.1",)


@dataclass(frozen=True)
class FrontSettings:
    """
    A listener's limits and timeouts (seconds).

    @ivar headerTimeout: to receive a whole request head, from its first
        byte (or from the connection's start): slowloris.
    @ivar idleTimeout: a keep-alive connection may wait for its next
        request.
    @ivar bodyTimeout: the request body may pause.
    @ivar minBodyRate: bytes per second a request body must average once
        its first C{bodyTimeout} has passed (each byte buys C{1 /
        minBodyRate} seconds more, as Apache's mod_reqtimeout C{MinRate});
        0: no minimum.
    @ivar bodyDeadline: the longest a whole request body may take, from
        its first byte (the time we do not read does not count); 0: none.
    @ivar tunnelIdleTimeout: an upgrade tunnel with no bytes either way
        for this long is closed (HAProxy's C{timeout tunnel}); 0: never.
    @ivar sendTimeout: the client may take no bytes for this long while
        some wait for it (then the connection is aborted); 0: no limit.
    @ivar maxBody: the largest request body (0: no limit).
    @ivar maxConnections: client connections open at once (0: no limit).
    @ivar protocols: what clients may speak, in order of preference:
        C{"h2"} (HTTP/2 over TLS, by ALPN), C{"http/1.1"}, C{"h2c"}
        (cleartext HTTP/2 with prior knowledge).
    @ivar maxConcurrentStreams: HTTP/2 streams one client connection may
        have open at once.
    @ivar floods: the L{FloodLimits} of an HTTP/2 connection.
    """

    limits: Limits = Limits()
    headerTimeout: float = 10.0
    idleTimeout: float = 75.0
    bodyTimeout: float = 60.0
    minBodyRate: float = 500.0
    bodyDeadline: float = 0.0
    tunnelIdleTimeout: float = 3600.0
    sendTimeout: float = 60.0
    maxBody: int = 0
    maxConnections: int = 10000
    protocols: tuple = HTTP11
    maxConcurrentStreams: int = 100
    floods: FloodLimits = FloodLimits()

    @property
    def speaksHTTP2(self):
        return "h2" in self.protocols or "h2c" in self.protocols
