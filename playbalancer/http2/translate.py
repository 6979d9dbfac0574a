"""
An HTTP/2 request head as the HTTP/1.1 request the exchange (and the
member) sees, and a member's response head as HTTP/2 header fields.

The request is rebuilt as HTTP/1.1 text and read by the same strict parser
as on an HTTP/1.1 listener (L{playbalancer.http.wire.parseRequestHead}),
so both faces refuse the same things.  Before that, what only HTTP/2 can
carry is checked here: pseudo-header fields (RFC 9113 section 8.3),
connection-specific fields (section 8.2.2), and bytes (CR, LF, NUL) that
would split the rebuilt text into other lines.
"""

from __future__ import annotations

import re

from playbalancer.http.wire import HTTPError, parseRequestHead

#: What an HTTP/2 request line says in the access log.
HTTP2 = b"HTTP/2.0"

#: Fields a request may not carry in HTTP/2 (RFC 9113 section 8.2.2).
CONNECTION_SPECIFIC = frozenset(
    [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"]
)

_PSEUDO = (b":method", b":scheme", b":path", b":authority")
_SPLITTING = re.compile(rb"[\x00\r\n]")
_UPPERCASE = re.compile(rb"[A-Z]")
#: A field name: a token, in lowercase (RFC 9113 section 8.2.1).
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")


def requestHeadOf(fields, ended, limits):
    """
    The L{playbalancer.http.wire.RequestHead} of an HTTP/2 request.

    @param fields: its header fields, C{(name, value)} bytes pairs as
        decoded from HPACK, pseudo-header fields first.
    @param ended: whether the request has no body (END_STREAM on its
        HEADERS frame).
    @param limits: the listener's L{playbalancer.http.wire.Limits}.
    @raise HTTPError: for a request we refuse (malformed: 400; too large:
        414 or 431, as over HTTP/1.1).
    """
    pseudo = {}
    regularSeen = False
    regular = []
    cookies = []
    host = None
    length = None
    for name, value in fields:
        if _SPLITTING.search(name) or _SPLITTING.search(value):
            raise HTTPError(400, "a header field holds CR, LF or NUL")
        if name[:1] == b":":
            if regularSeen:
                raise HTTPError(400, "a pseudo-header field after a regular one")
            if name not in _PSEUDO:
                raise HTTPError(400, f"unknown pseudo-header field {name.decode('latin-1')!r}")
            if name in pseudo:
                raise HTTPError(400, f"{name.decode('ascii')} twice")
            pseudo[name] = value
            continue
        regularSeen = True
        if not _NAME.match(name):
            if _UPPERCASE.search(name):
                raise HTTPError(400, "an uppercase header field name")
            raise HTTPError(400, "a header field name that is not a token")
        elif value[:1] in (b" ", b"\t") or value[-1:] in (b" ", b"\t"):
            raise HTTPError(400, "a header field value that starts or ends with whitespace")
        elif name in CONNECTION_SPECIFIC:
            raise HTTPError(400, f"{name.decode('ascii')} is not allowed in HTTP/2")
        elif name == b"te":
            if value.strip().lower() != b"trailers":
                raise HTTPError(400, "te other than trailers")
            # (Hop-by-hop: not passed on to an HTTP/1.1 member.)
        elif name == b"cookie":
            cookies.append(value)
        elif name == b"host":
            if host is not None:
                raise HTTPError(400, "host twice")
            host = value
        else:
            if name == b"content-length":
                length = value
            regular.append((name, value))
    method = pseudo.get(b":method")
    if method is None:
        raise HTTPError(400, ":method missing")
    if method == b"CONNECT":
        raise HTTPError(405, "a reverse proxy does not tunnel (CONNECT)")
    path = pseudo.get(b":path")
    if not path:
        raise HTTPError(400, ":path missing or empty")
    if pseudo.get(b":scheme") is None:
        raise HTTPError(400, ":scheme missing")
    authority = pseudo.get(b":authority")
    if authority is None:
        authority = host
    elif host is not None and host.lower() != authority.lower():
        raise HTTPError(400, ":authority and host differ")
    if authority is None:
        raise HTTPError(400, "neither :authority nor host")
    if ended and length is not None and length.lstrip(b"0"):
        raise HTTPError(400, "content-length without a body")
    lines = [b"%s %s HTTP/1.1" % (method, path), b"host: " + authority]
    for name, value in regular:
        lines.append(name + b": " + value)
    if cookies:
        # RFC 9113 section 8.2.3: the crumbs as one field for HTTP/1.1.
        lines.append(b"cookie: " + b"; ".join(cookies))
    if not ended and length is None:
        lines.append(b"transfer-encoding: chunked")
    head = parseRequestHead(b"\r\n".join(lines), limits)
    head.version = HTTP2
    return head


#: Response fields HTTP/2 does not carry (RFC 9113 section 8.2.2).
_NOT_IN_RESPONSES = CONNECTION_SPECIFIC | {b"te"}


def responseFields(status, headers, length, method):
    """
    The HTTP/2 header fields of a response.

    @param headers: C{(name, value)} pairs as the exchange gives them (no
        framing fields but a I{Content-Length} on a body-less response).
    @param length: body bytes to come, or L{None} if unknown.
    @param method: the request's method (a HEAD response has no body).
    """
    fields = [(b":status", b"%d" % status)]
    hasLength = False
    for name, value in headers:
        name = name.lower()
        if name in _NOT_IN_RESPONSES:
            continue
        if name == b"content-length":
            hasLength = True
        fields.append((name, value))
    if (
        length is not None
        and not hasLength
        and status >= 200
        and status not in (204, 304)
        and method != b"HEAD"
    ):
        fields.append((b"content-length", b"%d" % length))
    return fields
