"""
A request body as the HTTP/1.1 front reads it: its framing (a length, or
chunks), its size limit, and its clock (a pause of C{bodyTimeout}, a
minimum rate, a deadline for the whole), which stops while we do not read.
"""

from __future__ import annotations

from playbalancer.http.chunked import ChunkedDecoder, LengthCounter
from playbalancer.http.wire import HTTPError


class BodyClock:
    """
    When a request body times out: a pause of C{bodyTimeout}, a minimum
    rate, a deadline for the whole; its clock stops while we do not read.
    Count the bytes read in C{read}.

    @param settings: the listener's L{playbalancer.http.front.FrontSettings}.
    @param now: the time its reading starts.
    """

    __slots__ = ("settings", "read", "started", "pausedAt")

    def __init__(self, settings, now):
        self.settings = settings
        self.read = 0
        self.started = now
        self.pausedAt = None

    def deadline(self, now):
        """
        When the body times out if nothing more comes: after a pause of
        C{bodyTimeout}, or once it falls below C{minBodyRate} (each byte
        buys C{1 / minBodyRate} seconds more, as Apache's mod_reqtimeout
        C{MinRate}), or at C{bodyDeadline} from its start.
        """
        settings = self.settings
        deadline = now + settings.bodyTimeout
        if settings.minBodyRate:
            earned = self.started + settings.bodyTimeout + self.read / settings.minBodyRate
            deadline = min(deadline, earned)
        if settings.bodyDeadline:
            deadline = min(deadline, self.started + settings.bodyDeadline)
        return deadline

    def paused(self, now):
        """
        We stopped reading (the member is slow): the client is not slow,
        and its clock stops.
        """
        self.pausedAt = now

    def resumed(self, now):
        """
        We read again: the clock goes on where it stopped.
        """
        pausedAt, self.pausedAt = self.pausedAt, None
        if pausedAt is not None:
            self.started += now - pausedAt


class BodyReader(BodyClock):
    """
    Reads one request body and hands its bytes to C{onData}.

    @param length: its length, or L{None} for a chunked body.
    @param settings: the listener's L{playbalancer.http.front.FrontSettings}.
    @param now: the time its reading starts.
    @param maxBody: the largest body (0: no limit); the listener's when
        L{None}.
    """

    __slots__ = ("onData", "decoder", "size", "maxBody")

    def __init__(self, length, settings, onData, now, maxBody=None):
        BodyClock.__init__(self, settings, now)
        self.maxBody = settings.maxBody if maxBody is None else maxBody
        self.onData = onData
        self.size = 0
        self.decoder = (
            ChunkedDecoder(self._data, 400) if length is None else LengthCounter(self._data, length)
        )

    def _data(self, data):
        maxBody = self.maxBody
        if maxBody:
            self.size += len(data)
            if self.size > maxBody:
                raise HTTPError(413, "the body is too big")
        self.onData(data)

    def feed(self, data):
        """
        Bytes from the client.

        @return: what follows the body (the next request's bytes) once it
            is complete, else L{None}.
        @raise HTTPError: when the body is malformed or too big.
        """
        self.read += len(data)
        return self.decoder.feed(data)
