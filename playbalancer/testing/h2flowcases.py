"""
Conformance cases for HTTP/2 flow control and CONTINUATION (RFC 9113
sections 6.9 and 6.10), the CONTINUATION flood (CVE-2024-27316) and a
client that never opens its window.

Requests ask for C{GET /} or C{POST /echo}; the member answers 200.
"""

from __future__ import annotations

from playbalancer.testing import h2frames as f
from playbalancer.testing.h2framecases import FRAME_SIZE, OK, PROTOCOL, post
from playbalancer.testing.h2probe import (
    NotApplicable,
    Send,
    WaitHeaders,
    Window,
    caseList,
    connectionError,
    streamError,
)

__all__ = ["FLOW_CASES"]

FLOW_CASES, case = caseList()


# --- 6.9 WINDOW_UPDATE and flow control --------------------------------------


@case("window-update/zero-connection", "RFC 9113 6.9", PROTOCOL, probe=None)
def _(ctx):
    """WINDOW_UPDATE of 0 on the connection: connection error PROTOCOL_ERROR."""
    yield f.windowUpdate(0, 0)


@case("window-update/zero-stream", "RFC 9113 6.9", streamError("PROTOCOL_ERROR"),
      until="error")
def _(ctx):
    """WINDOW_UPDATE of 0 on an open stream: stream error PROTOCOL_ERROR."""
    yield post(ctx, 1) + f.windowUpdate(1, 0)


@case("window-update/bad-length", "RFC 9113 6.9", FRAME_SIZE, probe=None)
def _(ctx):
    """A WINDOW_UPDATE of 3 octets: connection error FRAME_SIZE_ERROR."""
    yield f.rawFrame(f.WINDOW_UPDATE, 0, 0, b"\0\0\1")


@case("flow/connection-overflow", "RFC 9113 6.9.1",
      connectionError("FLOW_CONTROL_ERROR"), probe=None)
def _(ctx):
    """WINDOW_UPDATE taking the connection window past 2^31-1: connection
    error FLOW_CONTROL_ERROR."""
    yield f.windowUpdate(0, 2**31 - 1)


@case("flow/stream-overflow", "RFC 9113 6.9.1", streamError("FLOW_CONTROL_ERROR"),
      until="error")
def _(ctx):
    """WINDOW_UPDATE taking a stream window past 2^31-1: stream error
    FLOW_CONTROL_ERROR."""
    yield post(ctx, 1) + f.windowUpdate(1, 2**31 - 1)


@case("flow/initial-window-overflow", "RFC 9113 6.9.2",
      connectionError("FLOW_CONTROL_ERROR"), until="error")
def _(ctx):
    """A stream window at 2^31-1, then SETTINGS_INITIAL_WINDOW_SIZE raised
    by one: connection error FLOW_CONTROL_ERROR."""
    yield post(ctx, 1) + f.windowUpdate(1, 2**31 - 1 - f.DEFAULT_WINDOW)
    yield f.settings([(f.INITIAL_WINDOW_SIZE, f.DEFAULT_WINDOW + 1)])
    yield Window(f.DEFAULT_WINDOW + 1)


@case("flow/data-beyond-window", "RFC 9113 6.9.1",
      streamError("FLOW_CONTROL_ERROR") + ("timeout",), until="error", level="record")
def _(ctx):
    """DATA one octet beyond the server's initial stream window, sent at
    once: FLOW_CONTROL_ERROR, or nothing when the server had already opened
    its window again for what it consumed (a receiver only sees data beyond
    what it granted, so a silent "timeout" is accepted: record only)."""
    window = ctx.setting(f.INITIAL_WINDOW_SIZE, f.DEFAULT_WINDOW)
    if window > 1 << 20:
        raise NotApplicable("the server's stream window is over 1 MiB")
    size = min(16384, ctx.maxFrameSize)
    body, left = [], window + 1
    while left:
        body.append(f.data(1, b"x" * min(size, left), endStream=False))
        left -= min(size, left)
    yield post(ctx, 1) + b"".join(body)


@case("flow/small-window", "RFC 9113 6.9.2", OK,
      clientSettings=((f.ENABLE_PUSH, 0), (f.INITIAL_WINDOW_SIZE, 1)))
def _(ctx):
    """The client's initial window is 1 octet (opened again after each
    DATA): the response arrives whole within the windows."""
    yield ctx.request(1)


@case("flow/window-opened-by-settings", "RFC 9113 6.9.2", OK,
      clientSettings=((f.ENABLE_PUSH, 0), (f.INITIAL_WINDOW_SIZE, 0)))
def _(ctx):
    """The initial window is 0; after the response head the client raises
    SETTINGS_INITIAL_WINDOW_SIZE and the body must follow."""
    yield ctx.request(1)
    yield WaitHeaders(1)
    yield f.settings([(f.INITIAL_WINDOW_SIZE, f.DEFAULT_WINDOW)])
    yield Window(f.DEFAULT_WINDOW)


@case("flow/zero-window-client", "RFC 9113 6.9", ("timeout", "GOAWAY", "RST", "closed"),
      level="record", autoWindow=False,
      clientSettings=((f.ENABLE_PUSH, 0), (f.INITIAL_WINDOW_SIZE, 0)))
def _(ctx):
    """A client that never opens its window (initial 0): the server must
    send no DATA; holding or ending the stream is accepted."""
    yield ctx.request(1)


# --- 6.10 CONTINUATION ------------------------------------------------------


def _split(block, pieces):
    step = max(1, -(-len(block) // pieces))
    return [block[i:i + step] for i in range(0, len(block), step)]


@case("continuation/one", "RFC 9113 6.10", OK)
def _(ctx):
    """HEADERS without END_HEADERS, then one CONTINUATION: answered."""
    first, rest = _split(ctx.block(ctx.fields(extra=[("x-a", "1")])), 2)
    yield f.headers(1, first, endHeaders=False) + f.continuation(1, rest)


@case("continuation/several", "RFC 9113 6.10", OK)
def _(ctx):
    """A field block in HEADERS and four CONTINUATION frames: answered."""
    pieces = _split(ctx.block(ctx.fields(extra=[("x-a", "1" * 40)])), 5)
    frames = [f.headers(1, pieces[0], endHeaders=False)]
    for index, piece in enumerate(pieces[1:], 1):
        frames.append(f.continuation(1, piece, endHeaders=index == len(pieces) - 1))
    yield b"".join(frames)


@case("continuation/interrupted-by-data", "RFC 9113 6.10", PROTOCOL)
def _(ctx):
    """A DATA frame where a CONTINUATION must come: connection error
    PROTOCOL_ERROR."""
    first, rest = _split(ctx.block(ctx.fields("POST", "/echo")), 2)
    yield f.headers(1, first, endStream=False, endHeaders=False) + f.data(1, b"x")


@case("continuation/interrupted-by-ping", "RFC 9113 6.10", PROTOCOL)
def _(ctx):
    """A PING where a CONTINUATION must come: connection error
    PROTOCOL_ERROR."""
    first, rest = _split(ctx.block(ctx.fields()), 2)
    yield f.headers(1, first, endHeaders=False) + f.ping() + f.continuation(1, rest)


@case("continuation/other-stream", "RFC 9113 6.10", PROTOCOL)
def _(ctx):
    """A CONTINUATION for another stream: connection error PROTOCOL_ERROR."""
    first, rest = _split(ctx.block(ctx.fields()), 2)
    yield f.headers(1, first, endHeaders=False) + f.continuation(3, rest)


@case("continuation/after-end-headers", "RFC 9113 6.10", PROTOCOL, until="error")
def _(ctx):
    """A CONTINUATION after a HEADERS that had END_HEADERS: connection
    error PROTOCOL_ERROR."""
    yield f.headers(1, ctx.block(ctx.fields()), endStream=False)
    yield f.continuation(1, ctx.block([("x-late", "1")]))


@case("continuation/stream-0", "RFC 9113 6.10", PROTOCOL)
def _(ctx):
    """A CONTINUATION on stream 0: connection error PROTOCOL_ERROR."""
    first, rest = _split(ctx.block(ctx.fields()), 2)
    yield f.headers(1, first, endHeaders=False)
    yield f.rawFrame(f.CONTINUATION, f.END_HEADERS, 0, rest)


@case("continuation/missing", "RFC 9113 6.10", PROTOCOL)
def _(ctx):
    """HEADERS without END_HEADERS followed by another request's HEADERS:
    connection error PROTOCOL_ERROR."""
    first, rest = _split(ctx.block(ctx.fields()), 2)
    yield f.headers(1, first, endHeaders=False) + ctx.request(3)


@case("continuation/flood", "CVE-2024-27316, RFC 9113 6.10",
      ("GOAWAY", "RST", "4xx", "closed", "blocked"), level="record", timeoutFactor=2)
def _(ctx):
    """A HEADERS then 10000 small CONTINUATION frames that never end the
    block: the server must stop it (error, 431 or close), not collect
    fields without bound."""
    first = ctx.block(ctx.fields())
    frames = [f.headers(1, first, endHeaders=False)]
    for i in range(10000):
        frames.append(f.continuation(1, f.literalField("x-flood-%d" % i, "v" * 16),
                                     endHeaders=False))
    yield Send(b"".join(frames))
