"""
Conformance cases for field blocks and request heads: HPACK (RFC 7541),
the request rules of RFC 9113 section 8, and the HTTP/2 attack classes
(rapid reset, floods, HPACK bombs), where no RFC text decides and any
safe outcome is accepted (level C{"record"}).

Requests ask for C{GET /} or C{POST /echo}; the member answers 200.
"""

from __future__ import annotations

from playbalancer.testing import h2frames as f
from playbalancer.testing.h2probe import (
    MALFORMED,
    Send,
    WaitEnd,
    caseList,
    connectionError,
)

__all__ = ["HEAD_CASES"]

HEAD_CASES, case = caseList()

COMPRESSION = connectionError("COMPRESSION_ERROR")
OK = ("200",)
#: What a safe server may do against an attack: refuse (any error, a 4xx,
#: a close) or stop reading.
REFUSED = ("GOAWAY", "RST", "4xx", "closed", "blocked")


def rawRequest(ctx, method=b"\x82", path=b"\x84"):
    """
    A request head encoded by hand, touching no dynamic table: static
    entries for C{:method GET} (or C{method}), C{:scheme} and C{:path /}
    (or C{path}), and C{:authority} as a literal without indexing.
    """
    scheme = b"\x87" if ctx.scheme == "https" else b"\x86"
    return method + scheme + path + f.literalField(":authority", ctx.authority)


# --- RFC 7541 HPACK ---------------------------------------------------------


@case("hpack/index-out-of-range", "RFC 7541 2.3.3", COMPRESSION)
def _(ctx):
    """An indexed field beyond the static and (empty) dynamic table:
    connection error COMPRESSION_ERROR."""
    yield f.headers(1, rawRequest(ctx) + f.hpackInteger(70, 7, 0x80))


@case("hpack/index-zero", "RFC 7541 6.1", COMPRESSION)
def _(ctx):
    """An indexed field with index 0: decoding error, COMPRESSION_ERROR."""
    yield f.headers(1, rawRequest(ctx) + b"\x80")


@case("hpack/size-update-too-large", "RFC 7541 6.3, 4.2", COMPRESSION)
def _(ctx):
    """A dynamic table size update above SETTINGS_HEADER_TABLE_SIZE:
    COMPRESSION_ERROR."""
    limit = ctx.setting(f.HEADER_TABLE_SIZE, 4096)
    yield f.headers(1, f.hpackInteger(limit + 1, 5, 0x20) + rawRequest(ctx))


@case("hpack/size-update-after-field", "RFC 7541 4.2", COMPRESSION)
def _(ctx):
    """A dynamic table size update after a field, not at the start of the
    block: COMPRESSION_ERROR."""
    yield f.headers(1, rawRequest(ctx) + f.hpackInteger(0, 5, 0x20))


@case("hpack/size-update-at-start", "RFC 7541 6.3", OK)
def _(ctx):
    """A dynamic table size update to 0 at the start of a block: answered."""
    yield f.headers(1, f.hpackInteger(0, 5, 0x20) + rawRequest(ctx))


@case("hpack/huffman-eos", "RFC 7541 5.2", COMPRESSION)
def _(ctx):
    """A Huffman string containing the EOS symbol: COMPRESSION_ERROR."""
    value = b"\x1f\xff\xff\xff\xff"  # 'a' (00011), EOS (30 ones), 5 ones
    yield f.headers(1, rawRequest(ctx) + f.literalField("x-h", value, huffmanValue=True))


@case("hpack/huffman-padding-too-long", "RFC 7541 5.2", COMPRESSION)
def _(ctx):
    """Huffman padding of more than 7 bits: COMPRESSION_ERROR."""
    value = b"\x1f\xff"  # 'a' then 11 bits of ones
    yield f.headers(1, rawRequest(ctx) + f.literalField("x-h", value, huffmanValue=True))


@case("hpack/huffman-padding-zeros", "RFC 7541 5.2", COMPRESSION)
def _(ctx):
    """Huffman padding that is not the EOS prefix (zeros): COMPRESSION_ERROR."""
    value = b"\x18"  # 'a' then 000
    yield f.headers(1, rawRequest(ctx) + f.literalField("x-h", value, huffmanValue=True))


@case("hpack/integer-overflow", "RFC 7541 5.1", COMPRESSION)
def _(ctx):
    """An index encoded with eleven continuation octets (far past any
    table): COMPRESSION_ERROR."""
    yield f.headers(1, rawRequest(ctx) + b"\xff" + b"\xff" * 10 + b"\x01")


@case("hpack/string-past-end", "RFC 7541 5.2", COMPRESSION)
def _(ctx):
    """A literal whose length runs past the end of the block:
    COMPRESSION_ERROR."""
    yield f.headers(1, rawRequest(ctx) + b"\x00\x64abc")


@case("hpack/dynamic-reference", "RFC 7541 2.3.2", OK, probe=3)
def _(ctx):
    """A field added to the dynamic table, then referenced by index in the
    next request: answered."""
    yield f.headers(1, rawRequest(ctx) + f.literalField("x-ref", "abc", indexing=True))
    yield WaitEnd(1)
    yield f.headers(3, rawRequest(ctx) + b"\xbe")


@case("hpack/never-indexed", "RFC 7541 6.2.3", OK)
def _(ctx):
    """A literal field never to be indexed: answered."""
    yield f.headers(1, rawRequest(ctx) + b"\x10" + f.hpackString(b"x-secret")
                    + f.hpackString(b"s3cr3t"))


@case("hpack/huffman", "RFC 7541 5.2", OK)
def _(ctx):
    """Every string Huffman-coded: answered."""
    yield f.headers(1, ctx.encoder.encode(ctx.fields(extra=[("x-h", "huffman")]),
                                          huffman=True))


@case("hpack/bomb", "RFC 9113 10.5.1", REFUSED, level="record", probe=3, timeoutFactor=2)
def _(ctx):
    """A 4000-octet field in the dynamic table, then a request referencing
    it 16000 times (64 MB of fields from 16 KB): refused (431, stream or
    connection error), never assembled."""
    yield f.headers(1, rawRequest(ctx) + f.literalField("x-bomb", "b" * 4000, indexing=True))
    yield WaitEnd(1)
    block = rawRequest(ctx) + b"\xbe" * 16000
    yield f.headers(3, block[:16000], endHeaders=False) + f.continuation(3, block[16000:])


# --- RFC 9113 8: request heads ----------------------------------------------


def headCase(name, section, accept=MALFORMED, body=None, level="MUST"):
    """
    Register a case whose steps send one request, the field block made by
    the decorated function, with C{body} as DATA if given.
    """
    def add(build):
        def steps(ctx):
            block = build(ctx)
            if body is None:
                yield f.headers(1, block)
            else:
                yield f.headers(1, block, endStream=False) + f.data(1, body)
        steps.__doc__ = build.__doc__
        case(name, section, accept, level=level)(steps)
        return build
    return add


def _with(ctx, extra, method="GET", path="/", **pseudo):
    return ctx.block(ctx.fields(method, path, extra, **pseudo))


def _literal(ctx, name, value, method="GET"):
    return _with(ctx, (), method) + f.literalField(name, value)


@headCase("head/missing-method", "RFC 9113 8.3.1")
def _(ctx):
    """A request without :method: malformed (stream error PROTOCOL_ERROR,
    or a 4xx as its safe equivalent)."""
    return ctx.block([p for p in ctx.fields() if p[0] != ":method"])


@headCase("head/missing-scheme", "RFC 9113 8.3.1")
def _(ctx):
    """A request without :scheme: malformed."""
    return ctx.block([p for p in ctx.fields() if p[0] != ":scheme"])


@headCase("head/missing-path", "RFC 9113 8.3.1")
def _(ctx):
    """A request without :path: malformed."""
    return ctx.block([p for p in ctx.fields() if p[0] != ":path"])


@headCase("head/empty-path", "RFC 9113 8.3.1")
def _(ctx):
    """An empty :path for an https URI: malformed."""
    return ctx.block(ctx.fields(path=""))


@headCase("head/duplicate-method", "RFC 9113 8.3")
def _(ctx):
    """:method twice: malformed."""
    return ctx.block([(":method", "GET")] + ctx.fields())


@headCase("head/duplicate-path", "RFC 9113 8.3")
def _(ctx):
    """:path twice: malformed."""
    return ctx.block(ctx.fields() + [(":path", "/")])


@headCase("head/duplicate-authority", "RFC 9113 8.3")
def _(ctx):
    """:authority twice: malformed."""
    return ctx.block(ctx.fields() + [(":authority", ctx.authority)])


@headCase("head/unknown-pseudo", "RFC 9113 8.3")
def _(ctx):
    """An undefined pseudo-header field :foo: malformed."""
    return ctx.block(ctx.fields() + [(":foo", "bar")])


@headCase("head/response-pseudo", "RFC 9113 8.3")
def _(ctx):
    """A response pseudo-header field (:status) in a request: malformed."""
    return ctx.block(ctx.fields() + [(":status", "200")])


@headCase("head/pseudo-after-regular", "RFC 9113 8.3")
def _(ctx):
    """A pseudo-header field after a regular field: malformed."""
    fields = ctx.fields()
    return ctx.block(fields[:3] + [("x-a", "1")] + fields[3:])


@headCase("head/uppercase-name", "RFC 9113 8.2.1")
def _(ctx):
    """A field name with uppercase letters (X-Upper): malformed."""
    return _literal(ctx, "X-Upper", "1")


for _name in ("connection", "keep-alive", "proxy-connection", "transfer-encoding",
              "upgrade"):
    _value = {"connection": "keep-alive", "keep-alive": "timeout=5",
              "proxy-connection": "keep-alive", "transfer-encoding": "chunked",
              "upgrade": "h2c"}[_name]

    def _connectionField(ctx, name=_name, value=_value):
        return _literal(ctx, name, value)

    _connectionField.__doc__ = (
        "A connection-specific field (%s: %s): malformed." % (_name, _value))
    headCase("head/" + _name, "RFC 9113 8.2.2")(_connectionField)


@headCase("head/te-gzip", "RFC 9113 8.2.2")
def _(ctx):
    """te with a value other than trailers: malformed."""
    return _literal(ctx, "te", "gzip")


@headCase("head/te-trailers", "RFC 9113 8.2.2", accept=OK)
def _(ctx):
    """te: trailers is the one allowed value: answered."""
    return _literal(ctx, "te", "trailers")


@headCase("head/content-length-more-than-data", "RFC 9113 8.1.1", body=b"hello")
def _(ctx):
    """content-length: 10 with 5 octets of DATA: malformed."""
    return _literal(ctx, "content-length", "10", "POST")


@headCase("head/content-length-less-than-data", "RFC 9113 8.1.1", body=b"hello")
def _(ctx):
    """content-length: 3 with 5 octets of DATA: malformed."""
    return _literal(ctx, "content-length", "3", "POST")


@headCase("head/content-length-without-data", "RFC 9113 8.1.1")
def _(ctx):
    """content-length: 5 on a HEADERS with END_STREAM: malformed."""
    return _with(ctx, [("content-length", "5")], "POST", "/echo")


@headCase("head/content-length-matching", "RFC 9113 8.1.1", accept=OK, body=b"hello")
def _(ctx):
    """content-length: 5 with 5 octets of DATA: answered."""
    return _with(ctx, [("content-length", "5")], "POST", "/echo")


for _label, _value in (("cr", "a\rb"), ("lf", "a\nb"), ("nul", "a\0b"),
                       ("leading-space", " a"), ("trailing-tab", "a\t")):
    def _badValue(ctx, value=_value):
        return _literal(ctx, "x-bad", value)

    _badValue.__doc__ = "A field value %r: malformed." % (_value,)
    headCase("head/value-" + _label, "RFC 9113 8.2.1")(_badValue)


for _label, _fieldName in (("space", "x bad"), ("colon", "x:bad"), ("nul", "x\0bad")):
    def _badName(ctx, name=_fieldName):
        return _literal(ctx, name, "1")

    _badName.__doc__ = "A field name %r: malformed." % (_fieldName,)
    headCase("head/name-" + _label, "RFC 9113 8.2.1")(_badName)


@headCase("head/authority-host-mismatch", "RFC 9113 8.3.1", level="SHOULD")
def _(ctx):
    """:authority and host naming different hosts: a server SHOULD treat
    it as malformed."""
    return _literal(ctx, "host", "other.invalid")


@headCase("head/host-without-authority", "RFC 9113 8.3.1", accept=OK)
def _(ctx):
    """host instead of :authority: answered."""
    return ctx.block(ctx.fields(authority=None, extra=[("host", ctx.authority)]))


@headCase("head/connect-without-authority", "RFC 9113 8.5")
def _(ctx):
    """CONNECT without :authority: malformed."""
    return ctx.block([(":method", "CONNECT")])


@headCase("head/connect-with-path", "RFC 9113 8.5")
def _(ctx):
    """CONNECT with :scheme and :path: malformed."""
    return ctx.block(ctx.fields("CONNECT", "/"))


@headCase("head/cookies-split", "RFC 9113 8.2.3", accept=OK)
def _(ctx):
    """Two cookie fields (crumbs): answered."""
    return _with(ctx, [("cookie", "a=1"), ("cookie", "b=2")])


# --- attack classes ---------------------------------------------------------

RESETS = 2000


@case("attack/rapid-reset", "CVE-2023-44487", OK + ("GOAWAY", "closed"),
      level="record", probe=2 * RESETS + 1, timeoutFactor=3)
def _(ctx):
    """2000 requests each cancelled at once by RST_STREAM, then one more:
    the server ends the connection or keeps serving cheaply."""
    frames = [ctx.request(2 * i + 1) + f.rstStream(2 * i + 1) for i in range(RESETS)]
    yield b"".join(frames) + ctx.request(2 * RESETS + 1)


@case("attack/rapid-reset-uploads", "CVE-2023-44487", OK + ("GOAWAY", "closed"),
      level="record", probe=2 * RESETS + 1, timeoutFactor=3)
def _(ctx):
    """2000 uploads (HEADERS without END_STREAM) each cancelled at once,
    then one request: connection ended or still served."""
    frames = [ctx.request(2 * i + 1, "POST", "/echo", endStream=False)
              + f.rstStream(2 * i + 1) for i in range(RESETS)]
    yield b"".join(frames) + ctx.request(2 * RESETS + 1)


@case("attack/settings-flood", "CVE-2019-9515", OK + REFUSED, level="record",
      probe=1, timeoutFactor=3)
def _(ctx):
    """50000 SETTINGS frames from a client that does not read the ACKs,
    then a request: the server stops reading, ends the connection, or
    still answers."""
    yield Send(f.settings() * 50000, read=False)
    yield ctx.request(1)


@case("attack/ping-flood", "CVE-2019-9512", OK + REFUSED, level="record",
      probe=1, timeoutFactor=3)
def _(ctx):
    """50000 PINGs from a client that does not read the ACKs, then a
    request: stops reading, ends the connection, or still answers."""
    yield Send(f.ping() * 50000, read=False)
    yield ctx.request(1)


@case("attack/empty-data-flood", "CVE-2019-9518", OK + REFUSED, level="record",
      timeoutFactor=3)
def _(ctx):
    """An upload of 50000 empty DATA frames: refused, or answered."""
    yield ctx.request(1, "POST", "/echo", endStream=False)
    yield Send(f.data(1, b"", endStream=False) * 50000 + f.data(1, b"end"))


@case("attack/header-list-too-large", "RFC 9113 10.5.1", REFUSED, level="record")
def _(ctx):
    """A request with 200 fields of 1000 octets (200 KB of fields):
    refused with 431, a stream error or a close."""
    block = rawRequest(ctx) + b"".join(
        f.literalField("x-large-%d" % i, "v" * 1000) for i in range(200))
    pieces = [block[i:i + 16000] for i in range(0, len(block), 16000)]
    frames = [f.headers(1, pieces[0], endHeaders=False)]
    frames += [f.continuation(1, p, endHeaders=i == len(pieces) - 1)
               for i, p in enumerate(pieces[1:], 1)]
    yield b"".join(frames)
