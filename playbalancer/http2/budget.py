"""
How many of a kind of frame a client may send: a token bucket per kind,
for the floods HTTP/2 makes cheap (streams reset at once, SETTINGS, PING,
PRIORITY and empty frames), whose cost falls on the server.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FloodLimits:
    """
    Per client connection: each C{(burst, perSecond)} pair lets a client
    send C{burst} frames of a kind at once, and C{perSecond} more each
    second after that; beyond it the connection ends with GOAWAY
    C{ENHANCE_YOUR_CALM}.

    @ivar resets: streams the client opens and resets before their
        response is complete (the "rapid reset" attack, CVE-2023-44487),
        and streams we refuse or reset for the client's fault (malformed
        requests: CVE-2019-9514; stalled windows or bodies).
    @ivar settings: SETTINGS frames (each asks for an acknowledgement).
    @ivar pings: PING frames (each asks for an answer).
    @ivar idle: frames that do no work for the client: PRIORITY, empty
        DATA without END_STREAM, WINDOW_UPDATE frames that open less than
        1 KiB (CVE-2019-9511, "data dribble"), unknown frame types.
    """

    resets: tuple = (200, 50.0)
    settings: tuple = (100, 10.0)
    pings: tuple = (100, 10.0)
    idle: tuple = (1000, 100.0)


class Budget:
    """
    A token bucket: L{spend} takes one token, if there is one.

    @param burst: tokens when full.
    @param perSecond: tokens added back each second.
    @param clock: an L{IReactorTime}.
    """

    __slots__ = ("burst", "perSecond", "clock", "tokens", "_at")

    def __init__(self, burst, perSecond, clock):
        self.burst = burst
        self.perSecond = perSecond
        self.clock = clock
        self.tokens = float(burst)
        self._at = clock.seconds()

    def spend(self, count=1):
        """
        Take C{count} tokens.

        @return: whether there were enough (if not, none are taken).
        """
        now = self.clock.seconds()
        tokens = min(self.burst, self.tokens + (now - self._at) * self.perSecond)
        self._at = now
        if tokens < count:
            self.tokens = tokens
            return False
        self.tokens = tokens - count
        return True
