"""
Strict HTTP/1.1 message heads (RFC 9110 / RFC 9112) for a proxy: parse a
client's request head or a member's response head, and refuse anything two
parsers could read differently.

A balancer's parser is its attack surface: a request that we and a member
frame differently is a smuggled request.  So these parsers accept only the
grammar of RFC 9112, with CRLF line endings everywhere, and raise
L{HTTPError} with the status to answer otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zope.interface import implementer

from playbalancer.interfaces import IRequestView

_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"

_REQUEST_LINE = re.compile(rb"([%s]+) ([^\x00-\x20\x7f#]+) (HTTP/[0-9]\.[0-9])\Z" % _TCHAR)
_HEADER_LINE = re.compile(rb"([%s]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*\Z" % _TCHAR)
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?\Z")
#: A Content-Length: its value, not its digits, is limited (leading zeros
#: are allowed, as HAProxy and nginx allow them).
_DIGITS = re.compile(rb"0*[0-9]{1,18}\Z")
_HOST = re.compile(
    rb"(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{0,5})?\Z"
)
_BARE_LF = re.compile(rb"(?:\A|[^\r])\n")
#: Control characters no head may hold (CR and LF are checked as line
#: ends, HTAB is allowed), as C{bytes.translate} deletes them.
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
#: The token characters, as C{bytes.translate} deletes them.
_TOKEN_BYTES = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

#: Methods a reverse proxy does not pass on.
_REFUSED_METHODS = {
    b"CONNECT": "a reverse proxy does not tunnel (CONNECT)",
    b"TRACE": "TRACE would reflect headers to the client",
}


class HTTPError(Exception):
    """
    A message we refuse: answer C{status} (and close the connection).
    """

    def __init__(self, status, reason):
        Exception.__init__(self, status, reason)
        self.status = status
        self.reason = reason

    def __str__(self):
        return f"{self.status}: {self.reason}"


@dataclass(frozen=True)
class Limits:
    """
    Sizes a client's request head may reach.
    """

    maxRequestLine: int = 8192
    maxHeaderLine: int = 8192
    maxHeaderBytes: int = 65536
    maxHeaders: int = 100


@implementer(IRequestView)
class RequestHead:
    """
    A parsed, checked request head; what schedulers see of it is
    L{playbalancer.interfaces.IRequestView}.

    @ivar headers: C{(name, value)} pairs in order, names as sent.
    @ivar host: the authority the request is for (from an absolute-form
        target, else from I{Host}), or L{None} (HTTP/1.0 without one).
    @ivar target: origin-form (path and query) or C{b"*"}.
    @ivar length: the body length from I{Content-Length}, 0 if none, or
        L{None} for a chunked body.
    """

    __slots__ = (
        "method",
        "target",
        "version",
        "headers",
        "host",
        "length",
        "keepAlive",
        "expectContinue",
        "connection",
        "upgrade",
        "client",
        "secure",
        "requestId",
        "mountPath",
        "origin",
    )

    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.host = None
        self.length = 0
        self.keepAlive = True
        self.expectContinue = False
        self.connection = frozenset()
        self.upgrade = None
        self.client = None
        self.secure = False
        self.requestId = None
        #: Where the proxy is mounted in the client's view (C{b"/app"}), the
        #: target being what follows it; C{b""} at the root.
        self.mountPath = b""
        #: The client a trusted proxy in front of us named, or L{None}.
        self.origin = None

    @property
    def chunked(self):
        return self.length is None

    def header(self, name):
        """
        The last value of header C{name} (case-insensitive; C{bytes}, or
        ASCII text), or L{None}.
        """
        if isinstance(name, str):
            name = name.encode("ascii")
        name = name.lower()
        found = None
        for key, value in self.headers:
            if key.lower() == name:
                found = value
        return found

    #: The name twisted.web's C{IRequest} uses, kept for schedulers
    #: written against it.
    getHeader = header

    def cookie(self, name):
        """
        The value of cookie C{name} (C{bytes}, or ASCII text) from the
        C{Cookie} headers, or L{None}.
        """
        if isinstance(name, str):
            name = name.encode("ascii")
        for key, value in self.headers:
            if key.lower() == b"cookie":
                for pair in value.split(b";"):
                    key, sep, found = pair.strip().partition(b"=")
                    if sep and key == name:
                        return found.strip().strip(b'"')
        return None

    @property
    def path(self):
        return self.target.partition(b"?")[0]

    @property
    def query(self):
        return self.target.partition(b"?")[2]

    @property
    def clientAddress(self):
        origin = self.origin
        return origin if origin is not None else self.client


class ResponseHead:
    """
    A parsed, checked member response head.

    @ivar length: the body length, L{None} for chunked, or C{-1} for a body
        that ends when the member closes.
    @ivar announced: a response that has no body (to HEAD, 1xx, 204, 304)
        whose framing headers spoke of one (a non-zero Content-Length, or
        Transfer-Encoding): the connection is not reused after it, in case
        the member sends that body anyway.
    """

    __slots__ = (
        "status",
        "reason",
        "version",
        "headers",
        "length",
        "keepAlive",
        "connection",
        "announced",
    )

    def __init__(self, status, reason, version, headers):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.length = 0
        self.keepAlive = True
        self.connection = frozenset()
        self.announced = False


def scanHead(buffer, scanned):
    """
    Look for the end of a request head in C{buffer}, of which the first
    C{scanned} bytes were looked at before (and held no end): only the new
    bytes are scanned, so a head that arrives a byte at a time costs
    linear, not quadratic, work.

    @return: C{(end, bareLF)}: the offset of the blank line ending the
        head (-1 if none yet), and whether the newly scanned bytes before
        it hold a line feed without a carriage return.
    """
    start = scanned - 3 if scanned > 3 else 0
    end = buffer.find(b"\r\n\r\n", start)
    if end != -1:
        return end, False
    # A bare LF needs the byte before it to be seen, hence the one back.
    start = scanned - 1 if scanned > 1 else 0
    return -1, _BARE_LF.search(buffer, start) is not None


def findBareLF(data):
    """
    Whether C{data} has a line feed that is not preceded by a carriage
    return (a line ending we refuse).
    """
    return _BARE_LF.search(data) is not None


def _splitLines(head, status):
    """
    The lines of a head, which must end each line with CRLF: a bare CR or
    LF anywhere is refused.
    """
    lines = head.split(b"\r\n")
    breaks = len(lines) - 1
    if head.count(b"\r") != breaks or head.count(b"\n") != breaks:
        raise HTTPError(status, "bare CR or LF in the message head")
    return lines


def _parseHeaders(head, lines, limits, problem):
    """
    C{(name, value)} pairs from header lines, and a dict of lower-case names
    to lists of values for the few headers that frame the message.

    Most heads are clean: no control characters, names all token
    characters.  Those are split with plain byte operations; anything else
    goes through the exact grammar, which names what is wrong.
    """
    if limits is not None and len(lines) > limits.maxHeaders:
        raise HTTPError(431, "too many header fields")
    maxLine = limits.maxHeaderLine if limits is not None else None
    headers = []
    framing = {}
    if len(head.translate(None, _CONTROL_BYTES)) == len(head):
        for line in lines:
            name, colon, value = line.partition(b":")
            if not colon or not name or name.translate(None, _TOKEN_BYTES):
                break  # not a clean field line: let the grammar say why
            if maxLine is not None and len(line) > maxLine:
                raise HTTPError(431, "a header field is too long")
            value = value.strip(b" \t")
            headers.append((name, value))
            lowered = name.lower()
            if lowered in _FRAMING:
                framing.setdefault(lowered, []).append(value)
        else:
            return headers, framing
    _checkFieldLines(lines, maxLine, problem)
    raise HTTPError(problem, "an invalid header line")  # (the grammar raises first)


def _checkFieldLines(lines, maxLine, problem):
    """
    Check header lines against the exact grammar and raise L{HTTPError}
    for the first one that breaks it.
    """
    match = _HEADER_LINE.match
    for line in lines:
        if maxLine is not None and len(line) > maxLine:
            raise HTTPError(431, "a header field is too long")
        if match(line) is not None:
            continue
        if line[:1] in (b" ", b"\t"):
            raise HTTPError(problem, "obsolete line folding in a header")
        name = line.partition(b":")[0]
        if not line.count(b":"):
            raise HTTPError(problem, "a header line without a colon")
        if name != name.rstrip(b" \t"):
            raise HTTPError(problem, "whitespace before the colon of a header")
        raise HTTPError(problem, "an invalid header name or value")


def _tokens(values):
    tokens = []
    for value in values:
        for token in value.split(b","):
            token = token.strip(b" \t").lower()
            if token:
                tokens.append(token)
    return tokens


def _contentLength(values, status, sameTwice=False):
    """
    The value of the Content-Length header(s) C{values}.

    @param sameTwice: accept repeated identical values (RFC 9110 8.6 lets
        a recipient do so; we do for responses, never for requests).
    """
    if sameTwice:
        # RFC 9112 6.3(5): a list (or lines) of one value repeated is that
        # value.
        values = [v.strip() for line in values for v in line.split(b",")]
    if len(values) > 1 and not sameTwice:
        raise HTTPError(status, "more than one Content-Length")
    lengths = set()
    for value in values:
        if not _DIGITS.match(value):
            raise HTTPError(status, "Content-Length is not a plain decimal number")
        lengths.add(int(value))
    if len(lengths) > 1:
        raise HTTPError(status, "more than one Content-Length")
    return lengths.pop()


def _chunkedCodings(values, status, unsupported):
    codings = _tokens(values)
    if not codings or codings[-1] != b"chunked":
        raise HTTPError(status, "Transfer-Encoding does not end with chunked")
    if codings.count(b"chunked") > 1:
        raise HTTPError(status, "chunked is listed more than once")
    if len(codings) > 1:
        raise HTTPError(unsupported, "transfer codings other than chunked are not supported")


#: The headers whose values parseRequestHead needs.
_FRAMING = frozenset(
    [
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"connection",
        b"expect",
        b"upgrade",
        b"x-request-id",
    ]
)
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}\Z")


def parseRequestHead(head, limits):
    """
    Parse and check a request head.

    @param head: the bytes up to, not including, the empty line that ends
        the head (leading empty lines already skipped).
    @param limits: a L{Limits}.
    @raise HTTPError: the request must be refused with that status.
    @return: a L{RequestHead}.
    """
    lines = _splitLines(head, 400)
    requestLine = lines[0]
    if len(requestLine) > limits.maxRequestLine:
        raise HTTPError(414, "the request line is too long")
    found = _REQUEST_LINE.match(requestLine)
    if found is None:
        raise HTTPError(400, "a malformed request line")
    method, target, version = found.groups()
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HTTPError(505, "only HTTP/1.0 and HTTP/1.1 are supported")
    if len(head) - len(requestLine) - 2 > limits.maxHeaderBytes:
        raise HTTPError(431, "the header fields are too large")
    headers, framing = _parseHeaders(head, lines[1:], limits, 400)
    if method in _REFUSED_METHODS:
        raise HTTPError(405, _REFUSED_METHODS[method])
    request = RequestHead(method, target, version, headers)
    _checkTarget(request, framing)
    lengths = framing.get(b"content-length")
    codings = framing.get(b"transfer-encoding")
    if codings is not None:
        if lengths is not None:
            raise HTTPError(400, "both Content-Length and Transfer-Encoding")
        if version == b"HTTP/1.0":
            raise HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request")
        _chunkedCodings(codings, 400, 501)
        request.length = None
    elif lengths is not None:
        request.length = _contentLength(lengths, 400)
    connection = frozenset(_tokens(framing.get(b"connection", ())))
    request.connection = connection
    if version == b"HTTP/1.1":
        request.keepAlive = b"close" not in connection
    else:
        request.keepAlive = b"keep-alive" in connection
    expect = framing.get(b"expect")
    if expect is not None:
        if [v.lower() for v in expect] != [b"100-continue"]:
            raise HTTPError(417, "only Expect: 100-continue is supported")
        request.expectContinue = version == b"HTTP/1.1"
    ids = framing.get(b"x-request-id")
    if ids is not None and len(ids) == 1 and _REQUEST_ID.match(ids[0]):
        request.requestId = ids[0]
    upgrade = framing.get(b"upgrade")
    if upgrade is not None and b"upgrade" in connection:
        protocols = [p for p in _tokens(upgrade) if not p.startswith(b"h2c")]
        if protocols:
            request.upgrade = b", ".join(protocols)
    return request


def _checkTarget(request, framing):
    """
    Check the request target and the I{Host}; turn an absolute-form target
    into origin-form with its authority as the host.
    """
    hosts = framing.get(b"host", [])
    if len(hosts) > 1:
        raise HTTPError(400, "more than one Host header")
    if hosts:
        if not _HOST.match(hosts[0]):
            raise HTTPError(400, "an invalid Host header")
        request.host = hosts[0]
    elif request.version == b"HTTP/1.1":
        raise HTTPError(400, "an HTTP/1.1 request without a Host header")
    target = request.target
    if target[:1] == b"/":
        return
    if target == b"*":
        if request.method != b"OPTIONS":
            raise HTTPError(400, "the * target is only for OPTIONS")
        return
    lowered = target[:8].lower()
    if lowered.startswith(b"http://"):
        rest = target[7:]
    elif lowered.startswith(b"https://"):
        rest = target[8:]
    else:
        raise HTTPError(400, "the request target must be a path")
    slash = rest.find(b"/")
    question = rest.find(b"?")
    ends = [i for i in (slash, question) if i != -1]
    end = min(ends) if ends else len(rest)
    authority, path = rest[:end], rest[end:]
    if not authority or b"@" in authority or not _HOST.match(authority):
        raise HTTPError(400, "an invalid authority in the request target")
    # RFC 9112 section 3.2.2: the target's authority wins over Host.
    request.host = authority
    request.target = path if path[:1] == b"/" else b"/" + path


def parseResponseHead(head, method):
    """
    Parse and check a member's response head.

    @param method: the request's method (a response to HEAD has no body).
    @raise HTTPError: (502) the response cannot be relayed safely.
    @return: a L{ResponseHead}.
    """
    lines = _splitLines(head, 502)
    found = _STATUS_LINE.match(lines[0])
    if found is None:
        raise HTTPError(502, "a malformed status line")
    minor, status, reason = found.groups()
    status = int(status)
    headers, framing = _parseHeaders(head, lines[1:], None, 502)
    response = ResponseHead(status, reason or b"", minor, headers)
    lengths = framing.get(b"content-length")
    codings = framing.get(b"transfer-encoding")
    connection = frozenset(_tokens(framing.get(b"connection", ())))
    response.connection = connection
    response.keepAlive = (
        b"close" not in connection if minor == b"1" else b"keep-alive" in connection
    )
    if lengths is not None:
        length = _contentLength(lengths, 502, sameTwice=True)
    if status < 200 or status in (204, 304) or method == b"HEAD":
        # RFC 9112 6.3: these never have a body, whatever their framing
        # headers say (a HEAD response's Content-Length is the GET's).
        response.length = 0
        # A HEAD or 304 response's length (or coding) is the GET's, and
        # normal; a 1xx or 204 that speaks of a body is not: its connection
        # is not reused, in case the body comes anyway.
        if status < 200 or status == 204:
            response.announced = codings is not None or (lengths is not None and length != 0)
        return response
    if codings is not None and lengths is not None:
        raise HTTPError(502, "both Content-Length and Transfer-Encoding")
    if codings is not None:
        _chunkedCodings(codings, 502, 502)
        response.length = None
    elif lengths is not None:
        response.length = length
    else:
        response.length = -1
        response.keepAlive = False
    return response
