"""
A request head as the HTTP/1.1 front reads it: found in what the client
sent so far, within the listener's limits, and parsed.
"""

from __future__ import annotations

from playbalancer.http.wire import HTTPError, parseRequestHead, scanHead


class HeadReader:
    """
    Finds and parses request heads, one after another, on one connection.

    @param limits: the listener's L{playbalancer.http.wire.Limits}.
    @param maxBody: the largest request body announced by a
        I{Content-Length} that is let through (0: no limit).
    @ivar started: whether some bytes of the next head arrived.
    """

    __slots__ = ("limits", "maxBody", "started", "_scanned")

    def __init__(self, limits, maxBody):
        self.limits = limits
        self.maxBody = maxBody
        self.started = False
        #: Bytes of an incomplete head already scanned for its end.
        self._scanned = 0

    def read(self, buffer):
        """
        Look for a whole head at the start of C{buffer} (not empty, and not
        starting with a blank line).

        @return: L{None} while the head is incomplete (C{started} is then
            true), else C{(request, raw, rest)}: the parsed
            L{playbalancer.http.wire.RequestHead}, the head's bytes and
            what follows it.
        @raise HTTPError: when the head breaks a rule or a limit (414 for
            the request line, 431 for the head, 413 for a body announced
            too big, 400 for a malformed head).
        """
        limits = self.limits
        end, bareLF = scanHead(buffer, self._scanned)
        if end == -1:
            self._scanned = len(buffer)
            self.started = True
            if buffer.find(b"\r\n", 0, limits.maxRequestLine + 2) == -1 and (
                len(buffer) > limits.maxRequestLine
            ):
                raise HTTPError(414, "the request line is too long")
            if len(buffer) > limits.maxHeaderBytes + limits.maxRequestLine:
                raise HTTPError(431, "the request head is too large")
            if bareLF:
                raise HTTPError(400, "a bare LF line ending")
            return None
        self._scanned = 0
        self.started = False
        if end > limits.maxHeaderBytes + limits.maxRequestLine:
            raise HTTPError(431, "the request head is too large")
        request = parseRequestHead(buffer[:end], limits)
        maxBody = self.maxBody
        if maxBody and request.length and request.length > maxBody:
            raise HTTPError(413, "the body is too big")
        return request, buffer[: end + 4], buffer[end + 4 :]
