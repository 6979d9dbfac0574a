"""
Conformance cases for the HTTP/2 connection and frame layer (RFC 9113
sections 3 to 6.8): preface, framing, stream states and identifiers, and
each frame type's rules (flow control and CONTINUATION are in
L{playbalancer.testing.h2flowcases}).

Requests ask for C{GET /} or C{POST /echo}; the member answers 200.
"""

from __future__ import annotations

from playbalancer.testing import h2frames as f
from playbalancer.testing.h2probe import (
    MALFORMED,
    NotApplicable,
    WaitEnd,
    caseList,
    connectionError,
    streamError,
)

__all__ = ["FRAME_CASES"]

FRAME_CASES, case = caseList()

PROTOCOL = connectionError("PROTOCOL_ERROR")
FRAME_SIZE = connectionError("FRAME_SIZE_ERROR")
OK = ("200",)


def post(ctx, streamId, endStream=False, extra=()):
    """
    The HEADERS of a C{POST /echo} on C{streamId}, its body to follow.
    """
    return ctx.request(streamId, "POST", "/echo", extra=extra, endStream=endStream)


# --- 3.4 connection preface ------------------------------------------------


@case("preface/invalid", "RFC 9113 3.4", PROTOCOL, probe=None, preface=False)
def _(ctx):
    """A wrong connection preface: connection error PROTOCOL_ERROR."""
    yield b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + f.settings()


@case("preface/not-settings", "RFC 9113 3.4", PROTOCOL, probe=None, preface=False)
def _(ctx):
    """The preface followed by a PING instead of SETTINGS: connection error
    PROTOCOL_ERROR."""
    yield f.PREFACE + f.ping()


@case("preface/http1", "RFC 9113 3.4", PROTOCOL, probe=None, preface=False)
def _(ctx):
    """An HTTP/1.1 request on an h2 connection is an invalid preface."""
    yield b"GET / HTTP/1.1\r\nHost: " + ctx.authority.encode() + b"\r\n\r\n"


# --- 4.1 frame format, 4.2 frame size ----------------------------------------


@case("frame/unknown-type", "RFC 9113 4.1, 5.5", OK)
def _(ctx):
    """Frames of unknown types (on stream 0 and between a request's frames)
    are ignored: the request is answered 200."""
    yield f.rawFrame(0x20, 0, 0, b"12345678")
    yield post(ctx, 1) + f.rawFrame(0x21, 0xFF, 1, b"x") + f.data(1, b"hello")


@case("frame/unknown-flags", "RFC 9113 4.1", ("PING_ACK",), probe="ping")
def _(ctx):
    """A PING with undefined flags set: the flags are ignored, PING ACK."""
    yield f.rawFrame(f.PING, 0xF0, 0, b"h2corpus")


@case("frame/reserved-bit", "RFC 9113 4.1", ("PING_ACK",), probe="ping")
def _(ctx):
    """A PING with the reserved bit of the stream field set: ignored, PING
    ACK."""
    yield f.rawFrame(f.PING, 0, 0, b"h2corpus", reserved=True)


@case("frame-size/data-too-large", "RFC 9113 4.2", streamError("FRAME_SIZE_ERROR"))
def _(ctx):
    """A DATA frame one octet over the server's SETTINGS_MAX_FRAME_SIZE:
    FRAME_SIZE_ERROR (stream or connection)."""
    if ctx.maxFrameSize >= 2**24 - 1:
        raise NotApplicable("the server allows the largest frame")
    yield post(ctx, 1) + f.data(1, b"x" * (ctx.maxFrameSize + 1))


@case("frame-size/headers-too-large", "RFC 9113 4.2", FRAME_SIZE)
def _(ctx):
    """A HEADERS frame over SETTINGS_MAX_FRAME_SIZE (it carries a field
    block): connection error FRAME_SIZE_ERROR."""
    if ctx.maxFrameSize >= 2**24 - 1:
        raise NotApplicable("the server allows the largest frame")
    block = ctx.block(ctx.fields()) + f.literalField("x-big", "y" * ctx.maxFrameSize)
    yield f.headers(1, block)


@case("frame-size/data-at-limit", "RFC 9113 4.2", OK)
def _(ctx):
    """A DATA frame of exactly 16384 octets (the smallest maximum) is
    accepted."""
    if ctx.setting(f.INITIAL_WINDOW_SIZE, f.DEFAULT_WINDOW) < 16384:
        raise NotApplicable("the server's stream window is below 16384")
    yield post(ctx, 1) + f.data(1, b"x" * 16384)


# --- 5.1 stream states -------------------------------------------------------


@case("state/data-idle", "RFC 9113 5.1", PROTOCOL, probe=None)
def _(ctx):
    """DATA on an idle stream: connection error PROTOCOL_ERROR."""
    yield f.data(1, b"hello")


@case("state/rst-idle", "RFC 9113 5.1, 6.4", PROTOCOL, probe=None)
def _(ctx):
    """RST_STREAM on an idle stream: connection error PROTOCOL_ERROR."""
    yield f.rstStream(1)


@case("state/window-update-idle", "RFC 9113 5.1", PROTOCOL, probe=None)
def _(ctx):
    """WINDOW_UPDATE on an idle stream: connection error PROTOCOL_ERROR."""
    yield f.windowUpdate(1, 100)


@case("state/continuation-idle", "RFC 9113 5.1, 6.10", PROTOCOL, probe=None)
def _(ctx):
    """CONTINUATION on an idle stream, without HEADERS: connection error
    PROTOCOL_ERROR."""
    yield f.continuation(1, ctx.block(ctx.fields()))


@case("state/priority-idle", "RFC 9113 5.1, 6.3", OK)
def _(ctx):
    """PRIORITY on an idle stream is allowed: a request on stream 1 is
    still answered."""
    yield f.priority(5, dependsOn=0) + ctx.request(1)


@case("state/data-half-closed", "RFC 9113 5.1", streamError("STREAM_CLOSED"),
      until="error")
def _(ctx):
    """DATA after END_STREAM (half-closed remote): stream error
    STREAM_CLOSED (or connection error)."""
    yield ctx.request(1) + f.data(1, b"late")


@case("state/headers-half-closed", "RFC 9113 5.1", streamError("STREAM_CLOSED"),
      until="error")
def _(ctx):
    """A second HEADERS after END_STREAM: stream error STREAM_CLOSED."""
    yield ctx.request(1) + f.headers(1, ctx.block([("x-late", "1")]))


@case("state/data-closed", "RFC 9113 5.1", streamError("STREAM_CLOSED"),
      until="error")
def _(ctx):
    """DATA on a stream whose exchange has ended: STREAM_CLOSED."""
    yield ctx.request(1)
    yield WaitEnd(1)
    yield f.data(1, b"late")


@case("state/headers-closed", "RFC 9113 5.1, 5.1.1",
      streamError("STREAM_CLOSED") + connectionError("PROTOCOL_ERROR"), until="error")
def _(ctx):
    """A new request reusing a closed stream's id: connection error
    PROTOCOL_ERROR (id reuse) or STREAM_CLOSED."""
    yield ctx.request(1)
    yield WaitEnd(1)
    yield ctx.request(1)


@case("state/rst-then-new-stream", "RFC 9113 6.4", OK, probe=3)
def _(ctx):
    """A request cancelled with RST_STREAM, then a new one: answered."""
    yield post(ctx, 1) + f.rstStream(1) + ctx.request(3)


# --- 5.1.1 stream identifiers, 5.1.2 concurrency ------------------------------


@case("stream-id/even", "RFC 9113 5.1.1", PROTOCOL, probe=2)
def _(ctx):
    """A request on an even (server-initiated) stream id: connection error
    PROTOCOL_ERROR."""
    yield ctx.request(2)


@case("stream-id/decreasing", "RFC 9113 5.1.1",
      PROTOCOL + ("GOAWAY:STREAM_CLOSED",), probe=3, until="error")
def _(ctx):
    """A request on stream 3 after stream 5: connection error
    PROTOCOL_ERROR (or STREAM_CLOSED: 3 is implicitly closed)."""
    yield ctx.request(5) + ctx.request(3)


@case("stream-id/skipping", "RFC 9113 5.1.1", OK, probe=7)
def _(ctx):
    """The first request on stream 7 (ids may be skipped): answered."""
    yield ctx.request(7)


@case("stream-id/largest", "RFC 9113 5.1.1", OK, probe=2**31 - 1)
def _(ctx):
    """A request on stream 2^31-1, the largest id: answered."""
    yield ctx.request(2**31 - 1)


@case("streams/over-max-concurrent", "RFC 9113 5.1.2",
      ("RST:REFUSED_STREAM",) + streamError("PROTOCOL_ERROR"), probe=None,
      until="error", timeoutFactor=3)
def _(ctx):
    """One stream more than SETTINGS_MAX_CONCURRENT_STREAMS (the others kept
    open): stream error REFUSED_STREAM or PROTOCOL_ERROR."""
    limit = ctx.setting(f.MAX_CONCURRENT_STREAMS, None)
    if limit is None or limit > 1000:
        raise NotApplicable("no SETTINGS_MAX_CONCURRENT_STREAMS of 1000 or less")
    ctx.probe = 2 * limit + 1
    yield b"".join(post(ctx, 2 * i + 1) for i in range(limit + 1))


# --- 5.3, 6.3 PRIORITY ------------------------------------------------------


@case("priority/stream-0", "RFC 9113 6.3", PROTOCOL, probe=None)
def _(ctx):
    """PRIORITY on stream 0: connection error PROTOCOL_ERROR."""
    yield f.rawFrame(f.PRIORITY, 0, 0, b"\0\0\0\1\x10")


@case("priority/bad-length", "RFC 9113 6.3", streamError("FRAME_SIZE_ERROR"),
      probe=3, until="error")
def _(ctx):
    """A PRIORITY frame of 4 octets: stream error FRAME_SIZE_ERROR."""
    yield f.rawFrame(f.PRIORITY, 0, 3, b"\0\0\0\1")


@case("priority/self-dependency", "RFC 9113 5.3.1", streamError("PROTOCOL_ERROR"),
      probe=3, until="error")
def _(ctx):
    """A PRIORITY frame making stream 3 depend on itself: stream error
    PROTOCOL_ERROR."""
    yield f.priority(3, dependsOn=3)


@case("priority/headers-self-dependency", "RFC 9113 5.3.1",
      streamError("PROTOCOL_ERROR"), until="error")
def _(ctx):
    """A HEADERS frame whose priority makes the stream depend on itself:
    stream error PROTOCOL_ERROR."""
    yield f.headers(1, ctx.block(ctx.fields()), dependsOn=1)


@case("priority/headers-priority", "RFC 9113 6.2", OK)
def _(ctx):
    """A HEADERS frame with valid priority fields: answered."""
    yield f.headers(1, ctx.block(ctx.fields()), dependsOn=0, weight=32)


@case("priority/closed-stream", "RFC 9113 6.3", OK, probe=3)
def _(ctx):
    """PRIORITY on a closed stream is allowed: the next request is
    answered."""
    yield ctx.request(1)
    yield WaitEnd(1)
    yield f.priority(1, dependsOn=0) + ctx.request(3)


# --- 6.1 DATA, 6.2 HEADERS --------------------------------------------------


@case("data/stream-0", "RFC 9113 6.1", PROTOCOL, probe=None)
def _(ctx):
    """DATA on stream 0: connection error PROTOCOL_ERROR."""
    yield f.rawFrame(f.DATA, f.END_STREAM, 0, b"hello")


@case("data/pad-too-long", "RFC 9113 6.1", PROTOCOL)
def _(ctx):
    """DATA whose pad length is not less than the payload: connection error
    PROTOCOL_ERROR."""
    yield post(ctx, 1) + f.rawFrame(f.DATA, f.END_STREAM | f.PADDED, 1, b"\x06hello")


@case("data/padded", "RFC 9113 6.1", OK)
def _(ctx):
    """A padded DATA frame: accepted."""
    yield post(ctx, 1) + f.data(1, b"hello", padLength=8)


@case("data/empty-end-stream", "RFC 9113 6.1", OK)
def _(ctx):
    """An empty DATA frame carrying END_STREAM: accepted."""
    yield post(ctx, 1) + f.data(1, b"")


@case("headers/stream-0", "RFC 9113 6.2", PROTOCOL, probe=None)
def _(ctx):
    """HEADERS on stream 0: connection error PROTOCOL_ERROR."""
    block = ctx.block(ctx.fields())
    yield f.rawFrame(f.HEADERS, f.END_STREAM | f.END_HEADERS, 0, block)


@case("headers/pad-too-long", "RFC 9113 6.2", PROTOCOL)
def _(ctx):
    """HEADERS whose pad length exceeds the payload: connection error
    PROTOCOL_ERROR."""
    block = ctx.block(ctx.fields())
    payload = bytes([len(block) + 1]) + block
    yield f.rawFrame(f.HEADERS, f.END_STREAM | f.END_HEADERS | f.PADDED, 1, payload)


@case("headers/padded", "RFC 9113 6.2", OK)
def _(ctx):
    """A padded HEADERS frame: accepted."""
    yield f.headers(1, ctx.block(ctx.fields()), padLength=10)


@case("headers/trailers", "RFC 9113 8.1", OK)
def _(ctx):
    """A body followed by a trailer section with END_STREAM: accepted."""
    yield post(ctx, 1) + f.data(1, b"hello", endStream=False)
    yield f.headers(1, ctx.block([("x-trailer", "1")]))


@case("headers/trailers-without-end-stream", "RFC 9113 8.1", MALFORMED, until="error")
def _(ctx):
    """A trailer section without END_STREAM: malformed, stream error
    PROTOCOL_ERROR (a 4xx is accepted as its safe equivalent)."""
    yield post(ctx, 1) + f.data(1, b"hello", endStream=False)
    yield f.headers(1, ctx.block([("x-trailer", "1")]), endStream=False)


@case("headers/trailers-pseudo", "RFC 9113 8.1, 8.3", MALFORMED, until="error")
def _(ctx):
    """A pseudo-header field in a trailer section: malformed."""
    yield post(ctx, 1) + f.data(1, b"hello", endStream=False)
    yield f.headers(1, ctx.block([(":path", "/other"), ("x-trailer", "1")]))


@case("push-promise/from-client", "RFC 9113 8.4, 6.6", PROTOCOL)
def _(ctx):
    """A PUSH_PROMISE sent by a client: connection error PROTOCOL_ERROR."""
    block = b"\x82\x87\x84" + f.literalField(":authority", ctx.authority)
    yield post(ctx, 1)
    yield f.rawFrame(f.PUSH_PROMISE, f.END_HEADERS, 1, b"\0\0\0\2" + block)


# --- 6.4 RST_STREAM, 6.5 SETTINGS -------------------------------------------


@case("rst/stream-0", "RFC 9113 6.4", PROTOCOL, probe=None)
def _(ctx):
    """RST_STREAM on stream 0: connection error PROTOCOL_ERROR."""
    yield f.rawFrame(f.RST_STREAM, 0, 0, b"\0\0\0\x08")


@case("rst/bad-length", "RFC 9113 6.4", FRAME_SIZE)
def _(ctx):
    """An RST_STREAM of 3 octets: connection error FRAME_SIZE_ERROR."""
    yield post(ctx, 1) + f.rawFrame(f.RST_STREAM, 0, 1, b"\0\0\x08")


@case("settings/ack-with-payload", "RFC 9113 6.5", FRAME_SIZE, probe=None)
def _(ctx):
    """A SETTINGS ACK with a payload: connection error FRAME_SIZE_ERROR."""
    yield f.rawFrame(f.SETTINGS, f.ACK, 0, b"\0\3\0\0\0\x64")


@case("settings/on-stream", "RFC 9113 6.5", PROTOCOL, probe=None)
def _(ctx):
    """SETTINGS on stream 1: connection error PROTOCOL_ERROR."""
    yield f.rawFrame(f.SETTINGS, 0, 1, b"\0\3\0\0\0\x64")


@case("settings/bad-length", "RFC 9113 6.5", FRAME_SIZE, probe=None)
def _(ctx):
    """SETTINGS whose length is not a multiple of 6: connection error
    FRAME_SIZE_ERROR."""
    yield f.rawFrame(f.SETTINGS, 0, 0, b"\0\3\0")


@case("settings/enable-push-2", "RFC 9113 6.5.2", PROTOCOL, probe=None)
def _(ctx):
    """SETTINGS_ENABLE_PUSH of 2: connection error PROTOCOL_ERROR."""
    yield f.settings([(f.ENABLE_PUSH, 2)])


@case("settings/initial-window-too-large", "RFC 9113 6.5.2",
      connectionError("FLOW_CONTROL_ERROR"), probe=None)
def _(ctx):
    """SETTINGS_INITIAL_WINDOW_SIZE of 2^31: connection error
    FLOW_CONTROL_ERROR."""
    yield f.settings([(f.INITIAL_WINDOW_SIZE, 2**31)])


@case("settings/max-frame-size-too-small", "RFC 9113 6.5.2", PROTOCOL, probe=None)
def _(ctx):
    """SETTINGS_MAX_FRAME_SIZE of 16383: connection error PROTOCOL_ERROR."""
    yield f.settings([(f.MAX_FRAME_SIZE, 16383)])


@case("settings/max-frame-size-too-large", "RFC 9113 6.5.2", PROTOCOL, probe=None)
def _(ctx):
    """SETTINGS_MAX_FRAME_SIZE of 2^24: connection error PROTOCOL_ERROR."""
    yield f.settings([(f.MAX_FRAME_SIZE, 2**24)])


@case("settings/unknown-ignored", "RFC 9113 6.5.2", OK)
def _(ctx):
    """An unknown setting identifier is ignored: the request is answered."""
    yield f.settings([(0xFF, 1), (0x4242, 7)]) + ctx.request(1)


@case("settings/acknowledged", "RFC 9113 6.5.3", ("SETTINGS_ACK",), probe="settings")
def _(ctx):
    """A SETTINGS frame is acknowledged with SETTINGS ACK."""
    yield f.settings([(f.MAX_CONCURRENT_STREAMS, 100)])


@case("settings/header-table-size-0", "RFC 9113 6.5.2, RFC 7541 4.2", OK)
def _(ctx):
    """SETTINGS_HEADER_TABLE_SIZE of 0: the server's answers still decode."""
    yield f.settings([(f.HEADER_TABLE_SIZE, 0)]) + ctx.request(1)


@case("settings/max-frame-size-largest", "RFC 9113 6.5.2", OK)
def _(ctx):
    """SETTINGS_MAX_FRAME_SIZE of 2^24-1 is valid: answered."""
    yield f.settings([(f.MAX_FRAME_SIZE, 2**24 - 1)]) + ctx.request(1)


# --- 6.7 PING, 6.8 GOAWAY ---------------------------------------------------


@case("ping/answered", "RFC 9113 6.7", ("PING_ACK",), probe="ping")
def _(ctx):
    """A PING is answered by a PING ACK."""
    yield f.ping(b"h2corpus")


@case("ping/bad-length", "RFC 9113 6.7", FRAME_SIZE, probe=None)
def _(ctx):
    """A PING of 6 octets: connection error FRAME_SIZE_ERROR."""
    yield f.rawFrame(f.PING, 0, 0, b"123456")


@case("ping/on-stream", "RFC 9113 6.7", PROTOCOL, probe=None)
def _(ctx):
    """A PING on stream 1: connection error PROTOCOL_ERROR."""
    yield f.rawFrame(f.PING, 0, 1, b"h2corpus")


@case("ping/unsolicited-ack", "RFC 9113 6.7", OK)
def _(ctx):
    """A PING ACK nobody asked for is ignored: the request is answered."""
    yield f.ping(b"unasked!", ack=True) + ctx.request(1)


@case("goaway/on-stream", "RFC 9113 6.8", PROTOCOL, probe=None)
def _(ctx):
    """GOAWAY on stream 1: connection error PROTOCOL_ERROR."""
    yield f.rawFrame(f.GOAWAY, 0, 1, b"\0\0\0\0\0\0\0\0")


@case("goaway/bad-length", "RFC 9113 6.8, 4.2", FRAME_SIZE, probe=None)
def _(ctx):
    """A GOAWAY of 4 octets, too short for its fields: FRAME_SIZE_ERROR."""
    yield f.rawFrame(f.GOAWAY, 0, 0, b"\0\0\0\0")


@case("goaway/client-goaway", "RFC 9113 6.8", OK + ("GOAWAY", "closed"), level="SHOULD")
def _(ctx):
    """A request, then GOAWAY from the client: the request in flight may
    still be answered, or the connection closed gracefully."""
    yield ctx.request(1) + f.goaway(0, 0)
