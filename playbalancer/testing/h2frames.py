"""
Raw HTTP/2 frames for conformance probes (RFC 9113, RFC 7541).

Valid frames are built with C{hyperframe} and field blocks with C{hpack};
frames those libraries refuse to build (a DATA frame on stream 0, a PING
of seven bytes...) are built by hand with L{rawFrame}, and so are the
broken HPACK encodings.  The reading side, L{FrameReader}, splits what a
server sends into frames; L{playbalancer.testing.h2answer} makes an
outcome of them.
"""

from __future__ import annotations

import struct

from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

__all__ = [
    "PREFACE",
    "FrameReader",
    "rawFrame",
    "settings",
    "settingsAck",
    "headers",
    "continuation",
    "data",
    "ping",
    "goaway",
    "rstStream",
    "windowUpdate",
    "priority",
    "hpackInteger",
    "literalField",
    "requestFields",
    "encodeFields",
]

#: The client connection preface (RFC 9113 section 3.4), without SETTINGS.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

#: Error codes by number (RFC 9113 section 7).
ERROR_NAMES = {
    0x0: "NO_ERROR",
    0x1: "PROTOCOL_ERROR",
    0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT",
    0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM",
    0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR",
    0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY",
    0xD: "HTTP_1_1_REQUIRED",
}
ERROR_CODES = {name: code for code, name in ERROR_NAMES.items()}

#: Setting identifiers (RFC 9113 section 6.5.2).
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6

DEFAULT_WINDOW = 65535
MAX_WINDOW = 2**31 - 1


def errorName(code):
    """
    The name of error code C{code}, or C{"0x.."} for one RFC 9113 does not
    define.
    """
    return ERROR_NAMES.get(code, "0x%x" % (code,))


# ---------------------------------------------------------------------------
# Building frames


def rawFrame(frameType, flags, streamId, payload=b"", reserved=False):
    """
    One frame exactly as given: a 9-octet header (length from C{payload},
    C{frameType}, C{flags}, the reserved bit if C{reserved}, C{streamId})
    and C{payload}.  Nothing is checked.
    """
    header = struct.pack(">I", len(payload))[1:]
    streamField = (streamId & MAX_WINDOW) | (0x80000000 if reserved else 0)
    return header + struct.pack(">BBI", frameType, flags, streamField) + payload


def settings(pairs=()):
    """
    A SETTINGS frame carrying C{pairs} of C{(identifier, value)} in order
    (unknown identifiers and out-of-range values included).
    """
    payload = b"".join(struct.pack(">HI", ident, value) for ident, value in pairs)
    return rawFrame(SETTINGS, 0, 0, payload)


def settingsAck():
    """
    An empty SETTINGS frame with ACK.
    """
    return SettingsFrame(0, flags=["ACK"]).serialize()


def headers(streamId, block, endStream=True, endHeaders=True, padLength=None,
            dependsOn=None, weight=16, exclusive=False):
    """
    A HEADERS frame carrying field block fragment C{block}; C{padLength}
    adds PADDED and that many zero octets, C{dependsOn} adds the PRIORITY
    flag and fields (C{weight} is 1-256 as the RFC counts it).
    """
    frame = HeadersFrame(streamId, data=block)
    if endStream:
        frame.flags.add("END_STREAM")
    if endHeaders:
        frame.flags.add("END_HEADERS")
    if padLength is not None:
        frame.flags.add("PADDED")
        frame.pad_length = padLength
    if dependsOn is not None:
        frame.flags.add("PRIORITY")
        frame.depends_on = dependsOn
        frame.stream_weight = weight - 1
        frame.exclusive = exclusive
    return frame.serialize()


def continuation(streamId, block, endHeaders=True):
    """
    A CONTINUATION frame carrying C{block}.
    """
    frame = ContinuationFrame(streamId, data=block)
    if endHeaders:
        frame.flags.add("END_HEADERS")
    return frame.serialize()


def data(streamId, payload, endStream=True, padLength=None):
    """
    A DATA frame; C{padLength} adds PADDED and that many zero octets.
    """
    frame = DataFrame(streamId, data=payload)
    if endStream:
        frame.flags.add("END_STREAM")
    if padLength is not None:
        frame.flags.add("PADDED")
        frame.pad_length = padLength
    return frame.serialize()


def ping(opaque=b"h2corpus", ack=False):
    """
    A PING frame with 8 octets of C{opaque} data.
    """
    return PingFrame(0, opaque_data=opaque, flags=["ACK"] if ack else []).serialize()


def goaway(lastStreamId=0, code=0, debug=b""):
    """
    A GOAWAY frame on stream 0.
    """
    return GoAwayFrame(0, last_stream_id=lastStreamId, error_code=code,
                       additional_data=debug).serialize()


def rstStream(streamId, code=ERROR_CODES["CANCEL"]):
    """
    An RST_STREAM frame.
    """
    return RstStreamFrame(streamId, error_code=code).serialize()


def windowUpdate(streamId, increment):
    """
    A WINDOW_UPDATE frame (an increment of 0 is built too).
    """
    return WindowUpdateFrame(streamId, window_increment=increment).serialize()


def priority(streamId, dependsOn=0, weight=16, exclusive=False):
    """
    A PRIORITY frame (C{weight} 1-256).
    """
    return PriorityFrame(streamId, depends_on=dependsOn, stream_weight=weight - 1,
                         exclusive=exclusive).serialize()


# ---------------------------------------------------------------------------
# Building field blocks


def hpackInteger(value, prefixBits, firstByte=0):
    """
    C{value} as an HPACK integer with a C{prefixBits}-bit prefix whose high
    bits are C{firstByte} (RFC 7541 section 5.1).
    """
    limit = (1 << prefixBits) - 1
    if value < limit:
        return bytes([firstByte | value])
    out = bytearray([firstByte | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpackString(text, huffman=False):
    """
    A string literal of C{text} (bytes, taken as already Huffman-coded if
    C{huffman}) with its length prefix (RFC 7541 section 5.2).
    """
    return hpackInteger(len(text), 7, 0x80 if huffman else 0) + text


def literalField(name, value, indexing=False, huffmanValue=False):
    """
    One literal field with a literal name (RFC 7541 section 6.2): added to
    the dynamic table if C{indexing}, else without indexing.  Names and
    values are used as given, so invalid ones can be sent; C{value} may be
    Huffman-coded bytes when C{huffmanValue}.
    """
    if isinstance(name, str):
        name = name.encode("latin-1")
    if isinstance(value, str):
        value = value.encode("latin-1")
    return (b"\x40" if indexing else b"\x00") + hpackString(name) + hpackString(
        value, huffmanValue)


def requestFields(method="GET", path="/", authority="localhost", scheme="https",
                  extra=()):
    """
    The fields of a request: the four pseudo-header fields in order (one
    left out when given as C{None}) followed by C{extra}.
    """
    fields = []
    for name, value in ((":method", method), (":scheme", scheme),
                        (":path", path), (":authority", authority)):
        if value is not None:
            fields.append((name, value))
    return fields + list(extra)


def encodeFields(fields, encoder=None):
    """
    Encode C{fields} (name, value pairs, not checked) with C{encoder}, an
    C{hpack.Encoder} whose dynamic table the server shares, or a new one.
    """
    if encoder is None:
        encoder = Encoder()
    return encoder.encode(fields, huffman=False)


# ---------------------------------------------------------------------------
# Reading frames


class FrameReader:
    """
    Splits bytes from a server into frames: L{feed} bytes, then take
    C{(type, flags, streamId, payload)} tuples from L{frames}.
    """

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, received):
        """
        Add C{received} bytes.
        """
        self._buffer += received

    def frames(self):
        """
        Every complete frame received so far, in order.
        """
        found = []
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < 9 + length:
                break
            frameType, flags, streamField = struct.unpack(">BBI", bytes(self._buffer[3:9]))
            payload = bytes(self._buffer[9:9 + length])
            del self._buffer[:9 + length]
            found.append((frameType, flags, streamField & MAX_WINDOW, payload))
        return found


def fieldBlockFragment(frameType, flags, payload):
    """
    The field block fragment of a HEADERS or CONTINUATION payload, without
    padding and priority fields.

    @raise ValueError: if the padding is longer than the payload.
    """
    if frameType != HEADERS:
        return payload
    start, end = 0, len(payload)
    if flags & PADDED:
        if not payload:
            raise ValueError("PADDED without a pad length")
        start = 1
        end -= payload[0]
    if flags & PRIORITY_FLAG:
        start += 5
    if end < start:
        raise ValueError("padding longer than the payload")
    return payload[start:end]

