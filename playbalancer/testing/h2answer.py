"""
The server's side of an HTTP/2 probe: L{ServerView} follows the frames a
server sends (answering its SETTINGS and PINGs as a client must) and
L{Outcome} says what the server did about the probe, in terms a case's
acceptable set can name.

Acceptable outcomes are written as tokens:

  - C{"GOAWAY"} any GOAWAY, C{"GOAWAY:PROTOCOL_ERROR"} one with that code;
  - C{"RST"} any RST_STREAM on the probe stream, C{"RST:REFUSED_STREAM"}
    one with that code;
  - C{"200"} (any three digits) that status, the response ended by
    END_STREAM and not reset; C{"4xx"} any status of that class;
  - C{"closed"}: the connection closed without a GOAWAY;
  - C{"PING_ACK"}, C{"SETTINGS_ACK"}: the acknowledgement the probe waits
    for;
  - C{"blocked"}: the server stopped reading what the client sent;
  - C{"timeout"}: nothing decisive before the case's deadline.

DATA sent beyond the window the client gave (RFC 9113 section 6.9.1)
matches no token.
"""

from __future__ import annotations

import struct

from hpack import Decoder
from hpack.exceptions import HPACKError

from playbalancer.testing import h2frames as f

__all__ = ["Outcome", "ServerView", "matchesToken"]


class Outcome:
    """
    What a server did in one case.

    @ivar status: the final status of the probe stream's response, or C{None}.
    @ivar ended: the probe stream's response ended with END_STREAM.
    @ivar rst: the RST_STREAM code name on the probe stream, or C{None}.
    @ivar goaway: the GOAWAY code name, or C{None}.
    @ivar closed: the server closed the connection.
    @ivar blocked: the server stopped reading before the client had sent all.
    @ivar timedOut: the deadline passed with nothing decisive.
    @ivar pingAck: the probe's PING was acknowledged.
    @ivar settingsAck: the probe's SETTINGS was acknowledged.
    @ivar windowViolation: a description of DATA beyond the client's window.
    @ivar error: why the case could not be run (no connection, no h2...).
    @ivar notApplicable: why the case does not apply to this server.
    @ivar notes: other things seen, for the record.
    """

    def __init__(self):
        self.status = None
        self.ended = False
        self.rst = None
        self.goaway = None
        self.closed = False
        self.blocked = False
        self.timedOut = False
        self.pingAck = False
        self.settingsAck = False
        self.windowViolation = None
        self.error = None
        self.notApplicable = None
        self.notes = []

    def label(self):
        """
        A short description, e.g. C{"GOAWAY PROTOCOL_ERROR"} or C{"400"}.
        """
        if self.error:
            return "error: " + self.error
        if self.notApplicable:
            return "n/a"
        if self.windowViolation:
            return "DATA beyond window"
        parts = []
        if self.status is not None:
            complete = self.ended and self.rst is None
            parts.append(str(self.status) if complete else "%d (unfinished)" % (self.status,))
        if self.rst:
            parts.append("RST_STREAM " + self.rst)
        if self.goaway:
            parts.append("GOAWAY " + self.goaway)
        elif self.closed:
            parts.append("closed")
        if self.pingAck:
            parts.append("PING ACK")
        if self.settingsAck:
            parts.append("SETTINGS ACK")
        if self.blocked:
            parts.append("blocked")
        if self.timedOut:
            parts.append("timeout")
        return ", ".join(parts) or "nothing"

    def matches(self, tokens):
        """
        Whether any of C{tokens} (see the module docstring) describes this
        outcome.
        """
        if self.error or self.windowViolation:
            return False
        return any(matchesToken(self, token) for token in tokens)

    def asDict(self):
        """
        The outcome as JSON-friendly values.
        """
        return {
            "label": self.label(),
            "status": self.status,
            "ended": self.ended,
            "rst": self.rst,
            "goaway": self.goaway,
            "closed": self.closed,
            "blocked": self.blocked,
            "timedOut": self.timedOut,
            "windowViolation": self.windowViolation,
            "error": self.error,
            "notApplicable": self.notApplicable,
            "notes": list(self.notes),
        }


def matchesToken(outcome, token):
    """
    Whether C{outcome} is described by the single C{token}.
    """
    kind, _, code = token.partition(":")
    if kind == "GOAWAY":
        return outcome.goaway is not None and code in ("", outcome.goaway)
    if kind == "RST":
        return outcome.rst is not None and code in ("", outcome.rst)
    if kind == "closed":
        return outcome.closed and outcome.goaway is None
    if kind == "blocked":
        return outcome.blocked
    if kind == "timeout":
        return outcome.timedOut
    if kind == "PING_ACK":
        return outcome.pingAck
    if kind == "SETTINGS_ACK":
        return outcome.settingsAck
    if len(kind) == 3 and kind.endswith("xx") and outcome.status is not None:
        return str(outcome.status)[0] == kind[0]
    if kind.isdigit():
        return (outcome.status == int(kind) and outcome.ended
                and outcome.rst is None)
    return False


class ServerView:
    """
    Follows what a server sends on one connection.

    L{receive} takes each frame and returns the bytes a well-behaved
    client answers with: a SETTINGS ACK for the server's SETTINGS, a PING
    ACK for its PINGs and, when C{autoWindow}, WINDOW_UPDATEs giving back
    what each DATA frame used.  Without C{autoWindow} the client never
    opens its window, as a client that stopped reading.
    """

    def __init__(self, autoWindow=True, initialWindow=f.DEFAULT_WINDOW):
        self.autoWindow = autoWindow
        self.initialWindow = initialWindow
        self.decoder = Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.serverSettings = {}
        self.settingsFrames = 0
        self.settingsAcks = 0
        self.pingAcks = []
        self.pingsFromServer = 0
        self.statuses = {}
        self.ended = set()
        self.resets = {}
        self.goaway = None
        self.windowViolation = None
        self.notes = []
        self._block = None
        self._received = {0: 0}
        self._granted = {0: 0}

    def receive(self, frame):
        """
        Take one C{(type, flags, streamId, payload)} frame from the server.

        @return: the bytes to send back (possibly empty).
        """
        frameType, flags, streamId, payload = frame
        if self._block is not None and frameType != f.CONTINUATION:
            self.note("frame type %d inside the server's field block" % (frameType,))
            self._block = None
        handler = {
            f.SETTINGS: self._settings,
            f.PING: self._ping,
            f.GOAWAY: self._goaway,
            f.RST_STREAM: self._rstStream,
            f.HEADERS: self._fieldBlock,
            f.CONTINUATION: self._fieldBlock,
            f.DATA: self._data,
            f.PUSH_PROMISE: self._pushPromise,
        }.get(frameType)
        if handler is None:
            return b""
        return handler(frameType, flags, streamId, payload) or b""

    def note(self, text):
        """
        Record C{text} once among the notes.
        """
        if text not in self.notes:
            self.notes.append(text)

    def window(self, streamId):
        """
        How many more DATA octets the client allows on C{streamId} (0 for
        the connection).
        """
        base = f.DEFAULT_WINDOW if streamId == 0 else self.initialWindow
        return base + self._granted.get(streamId, 0) - self._received.get(streamId, 0)

    def _settings(self, frameType, flags, streamId, payload):
        if flags & f.ACK:
            self.settingsAcks += 1
            return b""
        self.settingsFrames += 1
        for offset in range(0, len(payload) - len(payload) % 6, 6):
            ident, value = struct.unpack(">HI", payload[offset:offset + 6])
            self.serverSettings[ident] = value
        return f.settingsAck()

    def _ping(self, frameType, flags, streamId, payload):
        if flags & f.ACK:
            self.pingAcks.append(payload)
            return b""
        self.pingsFromServer += 1
        return f.ping(payload[:8].ljust(8, b"\0"), ack=True)

    def _goaway(self, frameType, flags, streamId, payload):
        if len(payload) >= 8:
            lastStream, code = struct.unpack(">II", payload[:8])
            self.goaway = (lastStream & f.MAX_WINDOW, f.errorName(code))
            if payload[8:]:
                self.note("GOAWAY debug data: %r" % (payload[8:80],))
        else:
            self.goaway = (0, "short GOAWAY")

    def _rstStream(self, frameType, flags, streamId, payload):
        code = struct.unpack(">I", payload[:4])[0] if len(payload) >= 4 else -1
        self.resets.setdefault(streamId, f.errorName(code))

    def _pushPromise(self, frameType, flags, streamId, payload):
        self.note("PUSH_PROMISE although ENABLE_PUSH is 0")

    def _fieldBlock(self, frameType, flags, streamId, payload):
        try:
            fragment = f.fieldBlockFragment(frameType, flags, payload)
        except ValueError as e:
            self.note("bad HEADERS from the server: %s" % (e,))
            return
        if frameType == f.HEADERS:
            self._block = [streamId, fragment]
        elif self._block is None or self._block[0] != streamId:
            self.note("CONTINUATION from the server without HEADERS")
            return
        else:
            self._block[1] += fragment
        if flags & f.END_STREAM and frameType == f.HEADERS:
            self.ended.add(streamId)
        if flags & f.END_HEADERS:
            block, self._block = self._block[1], None
            self._decoded(streamId, block)

    def _decoded(self, streamId, block):
        try:
            fields = self.decoder.decode(block)
        except HPACKError as e:
            self.note("undecodable field block from the server: %s" % (e,))
            return
        for name, value in fields:
            if name == ":status" and streamId not in self.statuses:
                status = int(value) if value.isdigit() else -1
                if not 100 <= status < 200:
                    self.statuses[streamId] = status

    def _data(self, frameType, flags, streamId, payload):
        size = len(payload)
        for scope in (0, streamId):
            self._received[scope] = self._received.get(scope, 0) + size
            if self.window(scope) < 0 and self.windowViolation is None:
                self.windowViolation = "%d octets beyond the window of %s" % (
                    -self.window(scope), "stream %d" % scope if scope else "the connection")
        if flags & f.END_STREAM:
            self.ended.add(streamId)
        if not (self.autoWindow and size):
            return b""
        updates = [f.windowUpdate(0, size)]
        self._granted[0] += size
        if streamId not in self.ended:
            updates.append(f.windowUpdate(streamId, size))
            self._granted[streamId] = self._granted.get(streamId, 0) + size
        return b"".join(updates)
