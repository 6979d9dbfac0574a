"""
A corpus of malformed (and, as controls, well-formed) HTTP/1.1 requests for
the balancer's front end, with the result the front end's policy asks for.

Each L{Vector} is raw bytes sent on one fresh connection.  C{status} is the
status of the first final response (C{None}: the connection closes with no
response at all); C{closes} says whether the balancer closes the connection
after it (C{False}: the connection stays open); C{forwarded} is how many
requests the member must see.  C{normalized}, where given, checks the
requests the member saw (see L{Check}).

The policy, in short: every refusal is a response with its status and
C{Connection: close}, then the connection is closed and the member sees
nothing; 400 for ambiguous framing and syntax errors, 501 for a transfer
coding before C{chunked}, 505 for other well-formed versions, 405 for
CONNECT and TRACE, 414/431 for limits, 417 for an unknown expectation, 413
only with a configured body limit (the C{maxBody} vectors).

Ideas are credited in each note: RFC 9110/9112/9113 sections, HAProxy's
reg-tests (reg-tests/http-messaging/*.vtc), nginx-tests (*.t), Apache
httpd-tests (t/apache/http_strict.t and friends) and published request
smuggling classes (Kettle 2019 "HTTP Desync Attacks", Kettle 2025 "HTTP/1.1
must die", Weikop 2025 "funky chunks").  The bytes are written here.

This module needs only the standard library, so that the comparison script
(benchmarks/corpus_compare.py) can use it without Twisted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

CRLF = b"\r\n"
HOST = b"Host: a.example"


def msg(*lines: bytes, body: bytes = b"") -> bytes:
    """
    Request line and header lines, each ended with CRLF, the empty line,
    then C{body}.
    """
    return b"".join(line + CRLF for line in lines) + CRLF + body


def chunked(*chunks: bytes, trailers: Sequence[bytes] = ()) -> bytes:
    """
    A well-formed chunked body of C{chunks} and C{trailers} (lines without
    their CRLF).
    """
    out = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    return out + b"0\r\n" + b"".join(t + CRLF for t in trailers) + CRLF


# ---------------------------------------------------------------------------
# Checks on what the member saw.

Problems = List[str]


def headerValues(recorded, name: bytes) -> List[bytes]:
    """
    The values of header C{name} (any case) in a recorded request, in order.
    """
    name = name.lower()
    return [v for (n, v) in recorded.headers if n.lower() == name]


class Check:
    """
    A named test of the list of requests a member recorded.  Calling it
    returns a list of problems (empty: fine).
    """

    def __init__(self, describe: str, test: Callable[[list], Problems]):
        self.describe = describe
        self._test = test

    def __call__(self, records) -> Problems:
        return self._test(records)

    def __repr__(self):
        return f"Check({self.describe})"

    def __and__(self, other: "Check") -> "Check":
        return allOf(self, other)


def _at(records, index):
    if index >= len(records):
        return None, [f"no request #{index + 1} reached the member"]
    return records[index], []


def allOf(*checks: Check) -> Check:
    def test(records):
        problems = []
        for check in checks:
            problems.extend(check(records))
        return problems

    return Check(" and ".join(c.describe for c in checks), test)


def targetIs(target: bytes, index: int = 0) -> Check:
    def test(records):
        rec, problems = _at(records, index)
        if rec is not None and rec.target != target:
            problems.append(f"target {rec.target!r}, expected {target!r}")
        return problems

    return Check(f"target {target!r}", test)


def methodIs(method: bytes, index: int = 0) -> Check:
    def test(records):
        rec, problems = _at(records, index)
        if rec is not None and rec.method != method:
            problems.append(f"method {rec.method!r}, expected {method!r}")
        return problems

    return Check(f"method {method!r}", test)


def headerIs(name: bytes, *values: bytes, index: int = 0) -> Check:
    """
    Header C{name} has exactly C{values} (as sent on the wire after the
    colon and leading whitespace; trailing whitespace counts).
    """

    def test(records):
        rec, problems = _at(records, index)
        if rec is not None:
            seen = headerValues(rec, name)
            if seen != list(values):
                problems.append(f"{name.decode()} {seen!r}, expected {list(values)!r}")
        return problems

    return Check(f"{name.decode()}: {b', '.join(values)!r}", test)


def hostIs(value: bytes, index: int = 0) -> Check:
    return headerIs(b"Host", value, index=index)


def lacks(*names: bytes, index: int = 0) -> Check:
    """
    None of the headers C{names} reached the member.
    """

    def test(records):
        rec, problems = _at(records, index)
        if rec is not None:
            for name in names:
                if headerValues(rec, name):
                    problems.append(f"{name.decode()} was forwarded: {headerValues(rec, name)!r}")
        return problems

    return Check("no " + ", ".join(n.decode() for n in names), test)


def bodyIs(payload: bytes, index: int = 0) -> Check:
    """
    The payload (de-chunked if the member got it chunked) is C{payload},
    and any Content-Length the member got agrees with it.
    """

    def test(records):
        rec, problems = _at(records, index)
        if rec is not None:
            if rec.body != payload:
                problems.append(f"body {rec.body[:80]!r}, expected {payload[:80]!r}")
            lengths = [v.strip() for v in headerValues(rec, b"content-length")]
            if lengths and not (
                len(lengths) == 1 and lengths[0].isdigit() and int(lengths[0]) == len(payload)
            ):
                problems.append(f"Content-Length {lengths!r} for a {len(payload)}-byte payload")
        return problems

    return Check(f"body {payload[:24]!r}{'...' if len(payload) > 24 else ''}", test)


def connectionLacks(*tokens: bytes, index: int = 0) -> Check:
    """
    No C{Connection} value the member got names any of C{tokens} (the
    balancer may send its own C{Connection: keep-alive} or C{close}).
    """

    def test(records):
        rec, problems = _at(records, index)
        if rec is not None:
            named = set()
            for value in headerValues(rec, b"connection"):
                named.update(t.strip().lower() for t in value.split(b","))
            for token in tokens:
                if token.lower() in named:
                    problems.append(f"Connection still names {token.decode()}")
        return problems

    return Check("Connection names none of " + ", ".join(t.decode() for t in tokens), test)


def targetsAre(*targets: bytes) -> Check:
    def test(records):
        seen = [r.target for r in records]
        if seen != list(targets):
            return [f"targets {seen!r}, expected {list(targets)!r}"]
        return []

    return Check("targets " + ", ".join(repr(t) for t in targets), test)


# ---------------------------------------------------------------------------
# The corpus.


@dataclass(frozen=True)
class Vector:
    """
    One request (or a few, pipelined) sent on a fresh connection.

    @ivar name: an identifier, used as the test method name.
    @ivar category: a group for reports.
    @ivar request: the exact bytes sent.
    @ivar status: the first final (non-1xx) response status, or L{None} for
        a connection closed with no response.
    @ivar closes: whether the balancer must close the connection after the
        response(s) (C{False}: it must stay open).
    @ivar forwarded: how many requests the member must see.
    @ivar note: why, and where the idea comes from.
    @ivar normalized: a L{Check} of what the member saw, or L{None}.
    @ivar responses: how many final responses to wait for.
    @ivar statuses: every final status expected, in order, when more than
        one response is expected.
    @ivar maxBody: a body limit the balancer must be configured with for
        this vector (0: none).
    """

    name: str
    category: str
    request: bytes
    status: Optional[int]
    closes: bool
    forwarded: int
    note: str
    normalized: Optional[Check] = None
    responses: int = 1
    statuses: Optional[Tuple[int, ...]] = None
    maxBody: int = 0

    @property
    def expected(self) -> str:
        """
        A short summary: C{"400 close 0"}, C{"200 keep 1"}.
        """
        status = "none" if self.status is None else str(self.status)
        if self.statuses:
            status = ",".join(str(s) for s in self.statuses)
        return f"{status} {'close' if self.closes else 'keep'} {self.forwarded}"


def refused(name, category, request, note, status=400, **kw):
    """
    A vector the front end refuses: C{status}, connection closed, nothing
    forwarded.
    """
    return Vector(name, category, request, status, True, 0, note, **kw)


def accepted(name, category, request, note, normalized=None, closes=False, forwarded=1, **kw):
    """
    A vector forwarded once (by default) and answered 200 by the member.
    """
    return Vector(name, category, request, 200, closes, forwarded, note, normalized, **kw)


BODY = b"hello world"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n"
# A valid HTTP2-Settings value (base64url of an empty SETTINGS payload is
# empty; this is SETTINGS_MAX_CONCURRENT_STREAMS=100, INITIAL_WINDOW_SIZE=65535).
H2_SETTINGS = b"AAMAAABkAAQAAP__"

VECTORS: List[Vector] = [
    # ----------------------------------------------------------- controls
    accepted(
        "control_get", "control",
        msg(b"GET / HTTP/1.1", HOST),
        "Positive control: the simplest valid HTTP/1.1 request (RFC 9112 3).",
        allOf(methodIs(b"GET"), targetIs(b"/"), hostIs(b"a.example")),
    ),
    accepted(
        "control_get_query", "control",
        msg(b"GET /p/a;b/%7Euser?x=1&y=%20z&z=a/b?c HTTP/1.1", HOST),
        "Positive control: origin-form with path parameters, percent-encoding and "
        "'/' and '?' in the query passes unchanged (RFC 9112 3.2.1, RFC 3986 3.4).",
        targetIs(b"/p/a;b/%7Euser?x=1&y=%20z&z=a/b?c"),
    ),
    accepted(
        "control_post_content_length", "control",
        msg(b"POST /submit HTTP/1.1", HOST, b"Content-Length: 11", body=BODY),
        "Positive control: POST framed by Content-Length (RFC 9112 6.2).",
        allOf(methodIs(b"POST"), bodyIs(BODY)),
    ),
    accepted(
        "control_post_chunked_ext_trailer", "control",
        msg(b"POST /upload HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            body=b"5;name=value\r\nhello\r\n6;q=\"ab\";flag\r\n world\r\n"
                 b"0;last=1\r\nX-Checksum: 42\r\nX-Other: t\r\n\r\n"),
        "Positive control: chunked body with chunk extensions (token and quoted "
        "values) and a trailer section (RFC 9112 7.1.1, 7.1.2).  Extensions are "
        "dropped, the payload is forwarded, trailers are never merged into the "
        "forwarded header section (RFC 9110 6.5.1).",
        allOf(bodyIs(BODY), lacks(b"X-Checksum", b"X-Other", b"Trailer")),
    ),
    accepted(
        "control_http10_without_host", "control",
        msg(b"GET /old HTTP/1.0"),
        "Positive control: HTTP/1.0 needs no Host (RFC 9112 3.2 requires it of "
        "HTTP/1.1 only); an HTTP/1.0 connection without keep-alive closes after "
        "the response (RFC 9112 9.3).",
        targetIs(b"/old"),
        closes=True,
    ),
    accepted(
        "control_http10_post", "control",
        msg(b"POST /old HTTP/1.0", b"Content-Length: 11", body=BODY),
        "Positive control: HTTP/1.0 POST framed by Content-Length.",
        bodyIs(BODY),
        closes=True,
    ),
    accepted(
        "control_options_asterisk", "control",
        msg(b"OPTIONS * HTTP/1.1", HOST),
        "Positive control: asterisk-form, OPTIONS only (RFC 9112 3.2.4; HAProxy "
        "reg-test h1_request_target_validation.vtc).",
        allOf(methodIs(b"OPTIONS"), targetIs(b"*")),
    ),
    accepted(
        "control_absolute_form", "control",
        msg(b"GET http://a.example/p?q HTTP/1.1", HOST),
        "Absolute-form is accepted and forwarded as origin-form (RFC 9112 3.2.2: "
        "a server MUST accept the absolute-form).",
        allOf(targetIs(b"/p?q"), hostIs(b"a.example")),
    ),
    accepted(
        "control_absolute_form_host_differs", "control",
        msg(b"GET http://b.example/p?q HTTP/1.1", HOST),
        "RFC 9112 3.2.2: with an absolute-form target the server MUST ignore the "
        "Host header and use the target's authority; the member must not see "
        "a.example (Apache http_strict.t 'GET http://foo/ ... Host: bar').",
        allOf(targetIs(b"/p?q"), hostIs(b"b.example")),
    ),
    accepted(
        "control_absolute_form_https_port", "control",
        msg(b"GET https://b.example:8443/x HTTP/1.1", HOST),
        "Absolute-form with https and a port: the authority, port included, "
        "becomes Host (RFC 9112 3.2.2, RFC 9110 7.2).",
        allOf(targetIs(b"/x"), hostIs(b"b.example:8443")),
    ),
    accepted(
        "control_absolute_form_empty_path", "control",
        msg(b"GET http://a.example?x=1 HTTP/1.1", HOST),
        "Absolute-form with an empty path: origin-form must be '/' plus the query "
        "(RFC 9112 3.2.1: an empty path is sent as '/').",
        allOf(targetIs(b"/?x=1"), hostIs(b"a.example")),
    ),
    accepted(
        "control_absolute_form_ipv6", "control",
        msg(b"GET http://[::1]:8080/v6 HTTP/1.1", HOST),
        "Absolute-form with an IPv6 literal authority (RFC 3986 3.2.2; Apache "
        "http_strict.t IPv6 cases).",
        allOf(targetIs(b"/v6"), hostIs(b"[::1]:8080")),
    ),
    accepted(
        "control_leading_crlf", "control",
        b"\r\n\r\n" + msg(b"GET /after-crlf HTTP/1.1", HOST),
        "Empty lines before the request line are skipped (RFC 9112 2.2: SHOULD "
        "ignore at least one empty line; clients send one after a POST body).",
        targetIs(b"/after-crlf"),
    ),
    accepted(
        "control_pipelined_pair", "control",
        msg(b"GET /a HTTP/1.1", HOST) + msg(b"GET /b HTTP/1.1", HOST),
        "Two pipelined requests in one segment: both answered in order, both "
        "forwarded once (RFC 9112 9.3.2).",
        targetsAre(b"/a", b"/b"),
        forwarded=2, responses=2, statuses=(200, 200),
    ),
    accepted(
        "control_pipelined_post_then_get", "control",
        msg(b"POST /a HTTP/1.1", HOST, b"Content-Length: 11", body=BODY)
        + msg(b"GET /b HTTP/1.1", HOST),
        "A request right after a Content-Length body is a new request, not body "
        "bytes (RFC 9112 6.3).",
        allOf(targetsAre(b"/a", b"/b"), bodyIs(BODY)),
        forwarded=2, responses=2, statuses=(200, 200),
    ),
    accepted(
        "control_pipelined_chunked_then_get", "control",
        msg(b"POST /a HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=chunked(BODY))
        + msg(b"GET /b HTTP/1.1", HOST),
        "A request right after the last chunk is a new request (nginx-tests "
        "body_chunked.t 'chunked body pipelined').",
        allOf(targetsAre(b"/a", b"/b"), bodyIs(BODY)),
        forwarded=2, responses=2, statuses=(200, 200),
    ),
    accepted(
        "control_body_looks_like_request", "control",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: %d" % len(SMUGGLED), body=SMUGGLED),
        "A body that happens to contain a request is body (framing by "
        "Content-Length only): one request reaches the member.",
        allOf(targetsAre(b"/"), bodyIs(SMUGGLED)),
    ),
    accepted(
        "control_get_with_body", "control",
        msg(b"GET /q HTTP/1.1", HOST, b"Content-Length: 5", body=b"hello"),
        "GET with a body is framed by Content-Length and forwarded (RFC 9110 9.3.1 "
        "gives it no meaning, but the framing is still Content-Length; "
        "Kettle 2025 '0.CL' desyncs come from front ends that ignore it).",
        bodyIs(b"hello"),
    ),
    accepted(
        "control_content_length_zero", "control",
        msg(b"POST /z HTTP/1.1", HOST, b"Content-Length: 0"),
        "Content-Length: 0 is an empty body, not a missing one.",
        bodyIs(b""),
    ),
    accepted(
        "control_content_length_leading_zeros", "control",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: 007", body=b"1234567"),
        "Content-Length is 1*DIGIT, so '007' is 7 (RFC 9110 8.6).",
        bodyIs(b"1234567"),
    ),
    accepted(
        "control_content_length_18_digits", "control",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: 000000000000000005", body=b"hello"),
        "Boundary: 18 digits is the longest Content-Length the policy accepts "
        "(the value is 5).",
        bodyIs(b"hello"),
    ),
    accepted(
        "control_chunked_case_insensitive", "control",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: ChUnKeD", body=chunked(BODY)),
        "Transfer-coding names are case-insensitive (RFC 9112 7).",
        bodyIs(BODY),
    ),
    accepted(
        "control_chunked_tab_ows", "control",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding:\tchunked\t", body=chunked(BODY)),
        "HTAB is OWS around a field value (RFC 9110 5.6.3); the tab-obfuscated "
        "TE of Kettle 2019 is legal on its own (it matters only with CL).",
        bodyIs(BODY),
    ),
    accepted(
        "control_chunk_size_hex_upper_and_zeros", "control",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            body=b"000B\r\nhello world\r\n00\r\n\r\n"),
        "Chunk sizes are HEXDIG, either case, with leading zeros (RFC 9112 7.1).",
        bodyIs(BODY),
    ),
    accepted(
        "control_chunk_size_16_digits", "control",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            body=b"000000000000000b\r\nhello world\r\n0\r\n\r\n"),
        "Boundary: 16 hex digits is the longest chunk size the policy accepts.",
        bodyIs(BODY),
    ),
    accepted(
        "control_chunked_empty_body", "control",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
        "A chunked body that is only the last chunk is an empty payload.",
        bodyIs(b""),
    ),
    accepted(
        "control_chunked_many_small", "control",
        msg(b"PUT /r HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            body=chunked(*[bytes([c]) for c in BODY])),
        "Eleven one-byte chunks reassemble to the payload.",
        allOf(methodIs(b"PUT"), bodyIs(BODY)),
    ),
    accepted(
        "control_header_no_space_after_colon", "control",
        msg(b"GET / HTTP/1.1", b"Host:a.example", b"X-A:v"),
        "OWS after the colon is optional (RFC 9112 5.1; Apache http_strict.t "
        "'Foo:bar' => 200).",
        allOf(hostIs(b"a.example"), headerIs(b"X-A", b"v")),
    ),
    accepted(
        "control_header_value_trailing_whitespace", "control",
        msg(b"GET / HTTP/1.1", b"Host: a.example \t ", b"X-A: v  "),
        "Trailing OWS is not part of the field value (RFC 9112 5.1): forwarded "
        "trimmed (nginx-tests http_header_ows.t).",
        allOf(hostIs(b"a.example"), headerIs(b"X-A", b"v")),
    ),
    accepted(
        "control_header_value_inner_tab", "control",
        msg(b"GET / HTTP/1.1", HOST, b"X-A: a\tb"),
        "HTAB inside a field value is allowed (RFC 9110 5.5; Apache http_strict.t "
        "'Fo: b\\tar' => 200).",
        headerIs(b"X-A", b"a\tb"),
    ),
    accepted(
        "control_header_value_obs_text", "control",
        msg(b"GET / HTTP/1.1", HOST, b"X-A: caf\xc3\xa9 \x80\xff"),
        "obs-text (0x80-0xFF) in a field value is allowed and passes unchanged "
        "(RFC 9110 5.5).",
        headerIs(b"X-A", b"caf\xc3\xa9 \x80\xff"),
    ),
    accepted(
        "control_header_empty_value", "control",
        msg(b"GET / HTTP/1.1", HOST, b"X-Empty:"),
        "An empty field value is allowed (RFC 9110 5.5; Apache http_strict.t "
        "response 'Foo:').",
        headerIs(b"X-Empty", b""),
    ),
    accepted(
        "control_header_name_case_and_tchars", "control",
        msg(b"GET / HTTP/1.1", b"hOsT: a.example", b"X-!#$%&'*+.^`|~: t"),
        "Field names are case-insensitive and may use every tchar (RFC 9110 5.1, 5.6.2) "
        "but _, which the next vector covers.",
        allOf(hostIs(b"a.example"), headerIs(b"X-!#$%&'*+.^`|~", b"t")),
    ),
    accepted(
        "control_underscore_header_dropped", "control",
        msg(b"GET / HTTP/1.1", HOST, b"X_Real_IP: 10.6.6.6", b"X-Kept: yes"),
        "A field name with _ is a valid token, but CGI, WSGI and PHP members read "
        "X_Real_IP as X-Real-IP: dropped (nginx's underscores_in_headers off).",
        allOf(lacks(b"X_Real_IP"), headerIs(b"X-Kept", b"yes")),
    ),
    accepted(
        "control_repeated_header_kept", "control",
        msg(b"GET / HTTP/1.1", HOST, b"X-Dup: 1", b"X-Dup: 2"),
        "A repeated (non-Host, non-framing) field is forwarded with both values "
        "in order (RFC 9110 5.3).",
        headerIs(b"X-Dup", b"1", b"2"),
    ),
    accepted(
        "control_host_ipv6_port", "control",
        msg(b"GET / HTTP/1.1", b"Host: [::1]:8080"),
        "Host with an IPv6 literal and port (RFC 9110 7.2, RFC 3986 3.2.2; "
        "nginx-tests http_host.t).",
        hostIs(b"[::1]:8080"),
    ),
    accepted(
        "control_extension_method", "control",
        msg(b"PROPFIND /dav HTTP/1.1", HOST, b"Depth: 0"),
        "Any token is a method (RFC 9110 9.1); unknown ones are forwarded.",
        methodIs(b"PROPFIND"),
    ),
    accepted(
        "control_lowercase_method_token", "control",
        msg(b"get / HTTP/1.1", HOST),
        "Methods are case-sensitive tokens: 'get' is a valid (unknown) method, "
        "forwarded as is (RFC 9110 9.1; Apache answers 501 in http_strict.t).",
        methodIs(b"get"),
    ),
    accepted(
        "control_connection_close", "control",
        msg(b"GET / HTTP/1.1", HOST, b"Connection: close"),
        "Connection: close from the client: answered, then closed (RFC 9112 9.6).",
        None,
        closes=True,
    ),
    accepted(
        "control_request_line_8000", "control",
        msg(b"GET /" + b"a" * 7986 + b" HTTP/1.1", HOST),
        "Boundary: an 8000-byte request line is under the 8192 limit.",
        targetIs(b"/" + b"a" * 7986),
    ),
    accepted(
        "control_header_line_8000", "control",
        msg(b"GET / HTTP/1.1", HOST, b"X-Big: " + b"b" * 7993),
        "Boundary: an 8000-byte header line is under the 8192 limit.",
        headerIs(b"X-Big", b"b" * 7993),
    ),
    accepted(
        "control_header_block_60k", "control",
        msg(b"GET / HTTP/1.1", HOST, *[b"X-H%d: " % i + b"v" * 7500 for i in range(8)]),
        "Boundary: eight 7.5 KB fields (about 60 KB) are under the 65536-byte "
        "header block limit (twisted.web alone refuses over 16 KB).",
        headerIs(b"X-H7", b"v" * 7500),
    ),
    accepted(
        "control_100_fields", "control",
        msg(b"GET / HTTP/1.1", HOST, *[b"X-F%d: %d" % (i, i) for i in range(99)]),
        "Boundary: exactly 100 header fields (Host and 99 others) is allowed.",
        headerIs(b"X-F98", b"98"),
    ),
    accepted(
        "control_expect_100_continue", "expect",
        msg(b"POST /e HTTP/1.1", HOST, b"Expect: 100-continue", b"Content-Length: 11", body=BODY),
        "Expect: 100-continue gets an interim 100 (or none, since the body came "
        "at once) and then the member's 200 (RFC 9110 10.1.1; nginx-tests "
        "http_expect_100_continue.t).  The body must reach the member.",
        bodyIs(BODY),
    ),
    accepted(
        "control_expect_100_continue_case", "expect",
        msg(b"POST /e HTTP/1.1", HOST, b"Expect: 100-Continue", b"Content-Length: 11", body=BODY),
        "The Expect value is case-insensitive (RFC 9110 10.1.1).",
        bodyIs(BODY),
    ),
    # ---------------------------------------------- hop-by-hop normalization
    accepted(
        "hop_upgrade_h2c", "hop-by-hop",
        msg(b"GET / HTTP/1.1", HOST, b"Connection: Upgrade, HTTP2-Settings",
            b"Upgrade: h2c", b"HTTP2-Settings: " + H2_SETTINGS),
        "An h2c upgrade is never forwarded: the request goes to the member "
        "without Upgrade/HTTP2-Settings and the client gets HTTP/1.1 200 (RFC "
        "9113 3.1 dropped h2c; h2c smuggling, Bishop Fox 2020).",
        allOf(lacks(b"Upgrade", b"HTTP2-Settings"), connectionLacks(b"upgrade", b"http2-settings")),
    ),
    accepted(
        "hop_upgrade_h2c_unlisted", "hop-by-hop",
        msg(b"GET / HTTP/1.1", HOST, b"Upgrade: h2c", b"HTTP2-Settings: " + H2_SETTINGS),
        "Upgrade: h2c and HTTP2-Settings are dropped even when Connection does not "
        "name them (the policy: never forwarded).",
        lacks(b"Upgrade", b"HTTP2-Settings"),
    ),
    accepted(
        "hop_te_trailers", "hop-by-hop",
        msg(b"GET / HTTP/1.1", HOST, b"TE: trailers", b"Connection: TE"),
        "TE is hop-by-hop (RFC 9110 10.1.4, 7.6.1) and not forwarded (HAProxy "
        "reg-test http_transfer_encoding.vtc checks its TE handling).",
        allOf(lacks(b"TE"), connectionLacks(b"te")),
    ),
    accepted(
        "hop_te_unlisted", "hop-by-hop",
        msg(b"GET / HTTP/1.1", HOST, b"TE: gzip"),
        "TE is not forwarded even when Connection does not list it (the policy).",
        lacks(b"TE"),
    ),
    accepted(
        "hop_proxy_connection_keep_alive", "hop-by-hop",
        msg(b"GET / HTTP/1.1", HOST, b"Proxy-Connection: keep-alive", b"Keep-Alive: timeout=5"),
        "Proxy-Connection and Keep-Alive are not forwarded (RFC 9112 9.3.1, C.2.2).",
        lacks(b"Proxy-Connection", b"Keep-Alive"),
    ),
    accepted(
        "hop_connection_named_header", "hop-by-hop",
        msg(b"GET / HTTP/1.1", HOST, b"Connection: X-Secret, keep-alive", b"X-Secret: 1",
            b"X-Kept: 2"),
        "A field named in Connection is removed before forwarding (RFC 9110 "
        "7.6.1); a client can use this to strip headers the proxy adds, so the "
        "proxy's own X-Forwarded-* must survive, and others must pass.",
        allOf(lacks(b"X-Secret"), headerIs(b"X-Kept", b"2")),
    ),
    # --------------------------------------------------- CL/TE framing: 400
    refused(
        "cl_te_both", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: 6", b"Transfer-Encoding: chunked",
            body=b"0\r\n\r\nX"),
        "CL.TE: both framings (RFC 9112 6.3 point 3: ought to be handled as an "
        "error; Kettle 2019).  HAProxy drops CL and closes after (reg-test "
        "http_transfer_encoding.vtc); the policy refuses.",
    ),
    refused(
        "te_cl_both", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", b"Content-Length: 3",
            body=b"8\r\nSMUGGLED\r\n0\r\n\r\n"),
        "TE.CL: the same pair in the other order (Kettle 2019).",
    ),
    refused(
        "cl_te_smuggled_request", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: %d" % (5 + len(SMUGGLED)),
            b"Transfer-Encoding: chunked", body=b"0\r\n\r\n" + SMUGGLED),
        "The classic smuggled request behind a zero chunk, CL covering it.",
    ),
    refused(
        "cl_duplicate_equal", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: 5", b"Content-Length: 5", body=b"hello"),
        "Repeated Content-Length, even equal (RFC 9110 8.6 allows collapsing equal "
        "values; the policy refuses any repetition).",
    ),
    refused(
        "cl_duplicate_different", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"),
        "Conflicting Content-Length values (RFC 9112 6.3 point 5: MUST 400).",
    ),
    refused(
        "cl_list", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: 5, 5", body=b"hello"),
        "A Content-Length list (RFC 9110 8.6; Apache contentlength.t).",
    ),
    refused(
        "cl_plus_sign", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: +5", body=b"hello"),
        "A sign is not a DIGIT (Python's int() accepts '+5').",
    ),
    refused(
        "cl_negative", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: -1"),
        "A negative length.",
    ),
    refused(
        "cl_hex", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: 0x5", body=b"hello"),
        "Content-Length is decimal only.",
    ),
    refused(
        "cl_inner_space", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length:  5 5", body=b"hello"),
        "A space inside the value: '5 5' (after OWS trimming) is not digits.",
    ),
    refused(
        "cl_empty", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length:"),
        "An empty Content-Length.",
    ),
    accepted(
        "cl_19_digits", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: 0000000000000000005", body=b"hello"),
        "More than 18 digits, but a small value: the value is limited, not the "
        "digits (HAProxy and nginx accept it too).",
        bodyIs(b"hello"),
    ),
    refused(
        "cl_overflow", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: 18446744073709551621", body=b"hello"),
        "2**64 + 5: wraps to 5 in a 64-bit parser (Apache contentlength.t checks overflow).",
    ),
    refused(
        "cl_underscore", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: 1_1", body=BODY),
        "Python's int() accepts '1_1' as 11: a CL parser built on int() must not.",
    ),
    refused(
        "cl_unicode_digit", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: \xd9\xa5", body=b"hello"),
        "ARABIC-INDIC DIGIT FIVE in UTF-8: int() of the decoded text is 5; not DIGIT.",
    ),
    refused(
        "cl_trailing_garbage", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: 5abc", body=b"hello"),
        "Digits then garbage (strtol-style parsers stop at 'a').",
    ),
    refused(
        "cl_space_before_colon", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length : 5", body=b"hello"),
        "Whitespace before the colon (RFC 9112 5.1: MUST 400); a lenient hop "
        "could see no Content-Length at all (Kettle 2019).",
    ),
    refused(
        "te_space_before_colon", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding : chunked", body=chunked(BODY)),
        "Whitespace before the colon on Transfer-Encoding (RFC 9112 5.1; "
        "Kettle 2019 TE obfuscation).",
    ),
    refused(
        "te_not_chunked", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: gzip", body=b"hello"),
        "Final coding not chunked: the body length cannot be determined (RFC 9112 "
        "6.3 point 4: MUST 400 and close; HAProxy reg-test http_transfer_encoding.vtc).",
    ),
    refused(
        "te_chunked_then_gzip", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked, gzip", body=chunked(BODY)),
        "chunked not last (RFC 9112 6.1: chunked MUST be the final coding).",
    ),
    refused(
        "te_identity", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: identity", body=b"hello"),
        "identity (removed in RFC 7230) is not chunked: 400 (nginx-tests "
        "body_chunked.t answers 501).",
    ),
    refused(
        "te_chunked_twice_list", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked, chunked", body=chunked(BODY)),
        "chunked applied twice (RFC 9112 6.1: MUST NOT; HAProxy "
        "http_transfer_encoding.vtc c6).",
    ),
    refused(
        "te_chunked_twice_lines", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            b"Transfer-Encoding: chunked", body=chunked(BODY)),
        "Two Transfer-Encoding lines combine to 'chunked, chunked' (RFC 9110 5.3; "
        "nginx-tests body_chunked.t 'transfer encoding repeat').",
    ),
    refused(
        "te_chunked_then_identity_lines", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            b"Transfer-Encoding: identity", body=chunked(BODY)),
        "Kettle 2019: a second TE line a lenient hop ignores; the combined "
        "final coding is identity, not chunked.",
    ),
    refused(
        "te_empty", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding:", body=b"0\r\n\r\n"),
        "An empty Transfer-Encoding has no final chunked coding.",
    ),
    refused(
        "te_xchunked", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: xchunked", body=chunked(BODY)),
        "A substring match on 'chunked' would frame this as chunked (Kettle 2019).",
    ),
    refused(
        "te_quoted", "framing",
        msg(b"POST / HTTP/1.1", HOST, b'Transfer-Encoding: "chunked"', body=chunked(BODY)),
        "A quoted coding name is not the token chunked.",
    ),
    refused(
        "te_vertical_tab", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding:\x0bchunked", body=chunked(BODY)),
        "VT is not OWS (a control character in a field value; Kettle 2019).",
    ),
    refused(
        "te_obs_fold", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding:", b" chunked", body=chunked(BODY)),
        "Transfer-Encoding continued by obs-fold (RFC 9112 5.2; Kettle 2019).",
    ),
    refused(
        "te_http10", "framing",
        msg(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked", body=chunked(BODY)),
        "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 6.1: the recipient "
        "MUST treat the framing as faulty; nginx-tests body_chunked.t).  HAProxy "
        "accepts it (http_transfer_encoding.vtc c2).",
    ),
    Vector(
        "te_gzip_chunked", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: gzip, chunked", body=chunked(BODY)),
        501, True, 0,
        "A coding before chunked that we do not decode (RFC 9112 6.1: SHOULD 501; "
        "HAProxy http_transfer_encoding.vtc answers 422).",
    ),
    Vector(
        "te_gzip_chunked_lines", "framing",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: gzip",
            b"Transfer-Encoding: chunked", body=chunked(BODY)),
        501, True, 0,
        "The same as two lines, combined in order (RFC 9110 5.3).",
    ),
    # ------------------------------------------------ chunked syntax: 400
    refused(
        "chunk_size_plus", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b"+5\r\nhello\r\n0\r\n\r\n"),
        "A sign before the chunk size (int(x, 16) accepts it).",
    ),
    refused(
        "chunk_size_minus", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b"-5\r\nhello\r\n0\r\n\r\n"),
        "A negative chunk size.",
    ),
    refused(
        "chunk_size_0x", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b"0x5\r\nhello\r\n0\r\n\r\n"),
        "A 0x prefix (int(x, 16) accepts '0x5').",
    ),
    refused(
        "chunk_size_leading_space", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b" 5\r\nhello\r\n0\r\n\r\n"),
        "Whitespace before the chunk size.",
    ),
    refused(
        "chunk_size_trailing_space", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b"5 \r\nhello\r\n0\r\n\r\n"),
        "Whitespace after the chunk size.",
    ),
    refused(
        "chunk_size_inner_space", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b"5 5\r\nhello\r\n0\r\n\r\n"),
        "Two numbers on a chunk size line.",
    ),
    accepted(
        "chunk_size_space_before_ext", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b"5 ;a=b\r\nhello\r\n0\r\n\r\n"),
        "BWS before a chunk extension: RFC 9112 7.1.1's grammar allows it.",
        bodyIs(b"hello"),
    ),
    refused(
        "chunk_size_garbage", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b"zz\r\nhello\r\n0\r\n\r\n"),
        "A chunk size that is not hex.",
    ),
    refused(
        "chunk_size_empty", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b"\r\nhello\r\n0\r\n\r\n"),
        "An empty chunk size line.",
    ),
    accepted(
        "chunk_size_17_digits", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            body=b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
        "More than 16 hex digits, but a small value: the value is limited, not the digits.",
        bodyIs(b"hello"),
    ),
    refused(
        "chunk_size_overflow", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            body=b"10000000000000005\r\nhello\r\n0\r\n\r\n"),
        "2**64 + 5: wraps to 5 in a 64-bit parser.",
    ),
    refused(
        "chunk_data_too_long", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            body=b"4\r\nSEE-THIS\r\n0\r\n\r\n"),
        "More data than the chunk size: no CRLF after the declared 4 bytes "
        "(nginx-tests body_chunked.t 'runaway chunk').",
    ),
    refused(
        "chunk_data_too_short", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            body=b"5\r\nabc\r\n0\r\n\r\n"),
        "Less data than declared: the 5 bytes 'abc\\r\\n' are followed by '0\\r', "
        "not CRLF.",
    ),
    refused(
        "chunk_size_bare_lf", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b"5\nhello\r\n0\r\n\r\n"),
        "A chunk size line ended by bare LF (Weikop 2025 'funky chunks': "
        "LF-only line terminators).",
    ),
    refused(
        "chunk_data_bare_lf", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b"5\r\nhello\n0\r\n\r\n"),
        "Chunk data ended by bare LF instead of CRLF (funky chunks).",
    ),
    refused(
        "chunk_data_no_crlf", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b"5\r\nhelloXX0\r\n\r\n"),
        "Two arbitrary bytes where the CRLF after chunk data belongs: some parsers "
        "skip two bytes unchecked (funky chunks 'TERM.SPILL').",
    ),
    refused(
        "chunk_size_bare_cr", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b"5\rhello\r\n0\r\n\r\n"),
        "A bare CR ending a chunk size line (RFC 9112 2.2).",
    ),
    refused(
        "chunk_ext_bare_lf", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            body=b"5;a\nhello\r\n0\r\n\r\n"),
        "A bare LF inside a chunk extension: one parser ends the line there, "
        "another skips to the next CRLF (funky chunks 'EXT.TERM').",
    ),
    refused(
        "chunk_ext_bare_cr", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            body=b"5;a\rb\r\nhello\r\n0\r\n\r\n"),
        "A bare CR inside a chunk extension (RFC 9112 2.2).",
    ),
    refused(
        "last_chunk_bare_lf", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\n\n"),
        "The last chunk and the end of the trailer section with bare LFs.",
    ),
    refused(
        "trailer_no_colon", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            body=b"5\r\nhello\r\n0\r\nnot a field\r\n\r\n"),
        "A malformed trailer line (RFC 9112 7.1.2: trailer-section is field lines).",
    ),
    refused(
        "trailer_space_before_colon", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            body=b"5\r\nhello\r\n0\r\nX-T : v\r\n\r\n"),
        "Whitespace before the colon in a trailer field (RFC 9112 5.1).",
    ),
    refused(
        "trailer_obs_fold", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            body=b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n"),
        "obs-fold in the trailer section (RFC 9112 5.2).",
    ),
    refused(
        "trailer_bare_lf", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            body=b"5\r\nhello\r\n0\r\nX-T: v\n\r\n"),
        "A trailer line ended by bare LF.",
    ),
    accepted(
        "trailer_framing_fields_not_merged", "chunked",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            body=chunked(b"hello", trailers=[b"Content-Length: 99", b"Host: evil.example",
                                             b"Transfer-Encoding: gzip"])),
        "Trailers naming framing and routing fields: never merged into the "
        "header section (RFC 9110 6.5.1: MUST NOT merge fields that affect "
        "framing or routing; HAProxy reg-test drop_trailers.vtc).",
        allOf(bodyIs(b"hello"), hostIs(b"a.example")),
    ),
    # -------------------------------------------- line endings and whitespace
    refused(
        "bare_lf_everywhere", "line-ending",
        b"GET / HTTP/1.1\nHost: a.example\n\n",
        "Bare LF line endings throughout.  RFC 9112 2.2 lets a recipient accept "
        "bare LF; the policy refuses (Apache http_strict.t 'GET / HTTP/1.0\\n\\n' => 400).",
    ),
    refused(
        "bare_lf_request_line", "line-ending",
        b"GET / HTTP/1.1\nHost: a.example\r\n\r\n",
        "Only the request line ends with bare LF.",
    ),
    refused(
        "bare_lf_header_line", "line-ending",
        b"GET / HTTP/1.1\r\nHost: a.example\nX-A: b\r\n\r\n",
        "One header line ends with bare LF: a CRLF-only splitter sees one field "
        "'Host: a.example\\nX-A: b'.",
    ),
    refused(
        "bare_lf_end_of_head", "line-ending",
        b"GET / HTTP/1.1\r\nHost: a.example\r\n\n",
        "The empty line ending the head is a bare LF.",
    ),
    refused(
        "bare_lf_smuggles_cl", "line-ending",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nX-A: b\nContent-Length: 5\r\n\r\nhello",
        "A Content-Length hidden behind a bare LF: one parser sees a body, "
        "another a header value.",
    ),
    refused(
        "bare_cr_request_line", "line-ending",
        b"GET / HTTP/1.1\rHost: a.example\r\n\r\n",
        "A bare CR ends the request line (RFC 9112 2.2: a bare CR MUST be treated "
        "as invalid or replaced by SP).",
    ),
    refused(
        "bare_cr_header_value", "line-ending",
        msg(b"GET / HTTP/1.1", HOST, b"X-A: a\rb"),
        "A bare CR inside a field value (RFC 9110 5.5: MUST reject or replace "
        "with SP; Apache http_strict.t 'Fo: bar\\r\\r\\n').",
    ),
    refused(
        "bare_cr_header_name", "line-ending",
        msg(b"GET / HTTP/1.1", HOST, b"X\rA: b"),
        "A bare CR inside a field name (Apache http_strict.t 'F\\ro: bar').",
    ),
    refused(
        "cr_cr_lf", "line-ending",
        b"GET / HTTP/1.1\r\r\nHost: a.example\r\n\r\n",
        "CR CR LF ending the request line.",
    ),
    refused(
        "whitespace_line_after_request_line", "line-ending",
        b"GET / HTTP/1.1\r\n \r\nHost: a.example\r\n\r\n",
        "A whitespace-only line between the request line and the first field "
        "(RFC 9112 2.2: MUST reject or ignore such lines).",
    ),
    refused(
        "first_header_leading_space", "line-ending",
        msg(b"GET / HTTP/1.1", b" Host: a.example"),
        "The first field line starts with SP: obs-fold of nothing, or a hidden "
        "Host (RFC 9112 2.2; Apache http_strict.t ' Foo:bar' => 400).",
    ),
    refused(
        "obs_fold_space", "line-ending",
        msg(b"GET / HTTP/1.1", HOST, b"X-A: a", b" b"),
        "obs-fold (RFC 9112 5.2: a server MUST reject with 400 or replace with "
        "SP; the policy refuses).",
    ),
    refused(
        "obs_fold_tab", "line-ending",
        msg(b"GET / HTTP/1.1", HOST, b"X-A: a", b"\tb"),
        "obs-fold with HTAB.",
    ),
    refused(
        "obs_fold_host", "line-ending",
        msg(b"GET / HTTP/1.1", b"Host: a.example", b" .evil.example"),
        "A folded Host: unfolded it is 'a.example .evil.example'.",
    ),
    # ------------------------------------------------ header field syntax
    refused(
        "header_space_before_colon", "header-syntax",
        msg(b"GET / HTTP/1.1", HOST, b"X-A : b"),
        "Whitespace between field name and colon (RFC 9112 5.1: MUST 400; Apache "
        "http_strict.t 'Foo :bar').",
    ),
    refused(
        "header_tab_before_colon", "header-syntax",
        msg(b"GET / HTTP/1.1", HOST, b"X-A\t: b"),
        "HTAB between field name and colon.",
    ),
    refused(
        "host_space_before_colon", "header-syntax",
        msg(b"GET / HTTP/1.1", b"Host : a.example"),
        "A Host hidden from a strict parser, seen by a lenient one.",
    ),
    refused(
        "header_no_colon", "header-syntax",
        msg(b"GET / HTTP/1.1", HOST, b"X-A b"),
        "A field line without a colon (Apache http_strict.t 'Foo bar').",
    ),
    refused(
        "header_empty_name", "header-syntax",
        msg(b"GET / HTTP/1.1", HOST, b": b"),
        "An empty field name (Apache http_strict.t ': bar').",
    ),
    refused(
        "header_name_space_inside", "header-syntax",
        msg(b"GET / HTTP/1.1", HOST, b"X A: b"),
        "SP inside a field name is not a tchar.",
    ),
    refused(
        "header_name_separator", "header-syntax",
        msg(b"GET / HTTP/1.1", HOST, b"X(A): b"),
        "A delimiter in a field name (RFC 9110 5.6.2; nginx "
        "ignore_invalid_headers.t ignores such fields instead).",
    ),
    refused(
        "header_name_nul", "header-syntax",
        msg(b"GET / HTTP/1.1", HOST, b"X\x00A: b"),
        "NUL in a field name.",
    ),
    refused(
        "header_name_ctl", "header-syntax",
        msg(b"GET / HTTP/1.1", HOST, b"F\x01o: b"),
        "A control character in a field name (Apache http_strict.t 'F\\x01o').",
    ),
    refused(
        "header_name_non_ascii", "header-syntax",
        msg(b"GET / HTTP/1.1", HOST, b"X-\xc3\xa9: b"),
        "Non-ASCII bytes in a field name.",
    ),
    refused(
        "header_value_nul", "header-syntax",
        msg(b"GET / HTTP/1.1", HOST, b"X-A: a\x00b"),
        "NUL in a field value (RFC 9110 5.5: MUST reject or replace; Apache "
        "http_strict.t 'Foo: b\\0ar').",
    ),
    refused(
        "header_value_soh", "header-syntax",
        msg(b"GET / HTTP/1.1", HOST, b"X-A: a\x01b"),
        "0x01 in a field value (Apache http_strict.t).",
    ),
    refused(
        "header_value_esc", "header-syntax",
        msg(b"GET / HTTP/1.1", HOST, b"X-A: \x1b[31mred"),
        "ESC (0x1B) in a field value: log injection into terminals.",
    ),
    refused(
        "header_value_del", "header-syntax",
        msg(b"GET / HTTP/1.1", HOST, b"X-A: a\x7fb"),
        "DEL (0x7F) in a field value.",
    ),
    refused(
        "header_value_form_feed", "header-syntax",
        msg(b"GET / HTTP/1.1", HOST, b"X-A: a\x0cb"),
        "FF (0x0C) in a field value.",
    ),
    # ----------------------------------------------------------- request line
    refused(
        "http09_no_version", "request-line",
        b"GET /\r\n\r\n",
        "HTTP/0.9 style: no version (RFC 9112 2.3 no longer supports 0.9; Apache "
        "http_strict.t refuses).",
    ),
    refused(
        "no_version_with_headers", "request-line",
        msg(b"GET /", HOST),
        "Two parts and header lines.",
    ),
    refused(
        "request_line_double_space_after_method", "request-line",
        msg(b"GET  / HTTP/1.1", HOST),
        "Two spaces between method and target (RFC 9112 3: exactly one SP).",
    ),
    refused(
        "request_line_double_space_after_target", "request-line",
        msg(b"GET /  HTTP/1.1", HOST),
        "Two spaces between target and version.",
    ),
    refused(
        "request_line_tabs", "request-line",
        msg(b"GET\t/\tHTTP/1.1", HOST),
        "HTAB as the separator (RFC 9112 3 allows lenient parsers to accept it; "
        "the policy does not).",
    ),
    refused(
        "request_line_four_parts", "request-line",
        msg(b"GET / x HTTP/1.1", HOST),
        "A space inside the target makes four parts (Apache http_strict.t "
        "'GET / HTTP/1.0 x').",
    ),
    refused(
        "request_line_leading_space", "request-line",
        msg(b" GET / HTTP/1.1", HOST),
        "Whitespace before the method: an empty method.",
    ),
    refused(
        "version_trailing_space", "version",
        msg(b"GET / HTTP/1.1 ", HOST),
        "A trailing space after the version (Apache http_strict.t 'HTTP/1.0  ').",
    ),
    refused(
        "version_lowercase", "version",
        msg(b"GET / http/1.1", HOST),
        "HTTP-name is case-sensitive (RFC 9112 2.3).",
    ),
    refused(
        "version_missing_minor", "version",
        msg(b"GET / HTTP/1", HOST),
        "HTTP/1 is not DIGIT '.' DIGIT.",
    ),
    refused(
        "version_leading_zero", "version",
        msg(b"GET / HTTP/01.1", HOST),
        "Two digits before the dot (Apache http_strict.t 'HTTP/10.0' => 400).",
    ),
    refused(
        "version_two_digit_minor", "version",
        msg(b"GET / HTTP/1.10", HOST),
        "Two digits after the dot: not well-formed, so 400 rather than 505 "
        "(Apache http_strict.t 'HTTP/1.11' => 400).",
    ),
    refused(
        "version_garbage", "version",
        msg(b"GET / HTTPS/1.1", HOST),
        "Not HTTP-name.",
    ),
    refused(
        "version_nul", "version",
        msg(b"GET / HTTP/1.1\x00", HOST),
        "NUL after the version (Apache http_strict.t 'HTTP/1.0\\0').",
    ),
    Vector(
        "version_2_0", "version", msg(b"GET / HTTP/2.0", HOST), 505, True, 0,
        "A well-formed version we do not speak (RFC 9110 15.6.6: 505).",
    ),
    Vector(
        "version_1_2", "version", msg(b"GET / HTTP/1.2", HOST), 505, True, 0,
        "HTTP/1.2: RFC 9110 2.5 says a server may treat a higher minor version "
        "as the highest it supports (Apache answers 200); the policy answers 505.",
    ),
    Vector(
        "version_3_0", "version", msg(b"GET / HTTP/3.0", HOST), 505, True, 0,
        "HTTP/3.0 over TCP.",
    ),
    Vector(
        "version_0_9_explicit", "version", msg(b"GET / HTTP/0.9", HOST), 505, True, 0,
        "'HTTP/0.9' is well-formed and not 1.0/1.1: 505 by the policy (Apache "
        "http_strict.t refuses it with some error).",
    ),
    Vector(
        "h2_prior_knowledge_preface", "version",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, True, 0,
        "The HTTP/2 connection preface on an HTTP/1.1 port (RFC 9113 3.4).",
    ),
    # ----------------------------------------------------------- targets
    refused(
        "target_relative", "target",
        msg(b"GET admin HTTP/1.1", HOST),
        "A target that does not start with '/' (HAProxy reg-test "
        "h1_request_target_validation.vtc c13).",
    ),
    refused(
        "target_asterisk_get", "target",
        msg(b"GET * HTTP/1.1", HOST),
        "Asterisk-form is for OPTIONS only (RFC 9112 3.2.4; HAProxy "
        "h1_request_target_validation.vtc c5).",
    ),
    refused(
        "target_asterisk_path", "target",
        msg(b"OPTIONS */x HTTP/1.1", HOST),
        "'*' followed by more (HAProxy h1_request_target_validation.vtc c4).",
    ),
    refused(
        "target_authority_form_get", "target",
        msg(b"GET a.example:80 HTTP/1.1", HOST),
        "Authority-form is for CONNECT only (RFC 9112 3.2.3; HAProxy "
        "h1_request_target_validation.vtc c12).",
    ),
    refused(
        "target_other_scheme", "target",
        msg(b"GET ftp://a.example/x HTTP/1.1", HOST),
        "Absolute-form with a scheme other than http/https.",
    ),
    refused(
        "target_fragment", "target",
        msg(b"GET /a#b HTTP/1.1", HOST),
        "A fragment is never sent (RFC 9112 3.2; Apache http_strict.t "
        "'GET /#frag'; HAProxy h1_authority_fragment_char.vtc).",
    ),
    refused(
        "target_nul", "target",
        msg(b"GET /a\x00b HTTP/1.1", HOST),
        "NUL in the target (Apache http_strict.t 'GET /\\0').",
    ),
    refused(
        "target_ctl", "target",
        msg(b"GET /a\x01b HTTP/1.1", HOST),
        "A control character in the target (Apache http_strict.t 'GET /\\x01').",
    ),
    refused(
        "target_del", "target",
        msg(b"GET /a\x7fb HTTP/1.1", HOST),
        "DEL in the target.",
    ),
    refused(
        "target_absolute_userinfo", "target",
        msg(b"GET http://user@a.example/ HTTP/1.1", HOST),
        "userinfo in an http(s) URI: RFC 9110 4.2.4 says treat it as an error "
        "(Apache http_strict.t 'http://foo@localhost:80/' => 400).  The "
        "authority would become Host, and '@' in Host is 400.",
    ),
    refused(
        "target_absolute_empty_authority", "target",
        msg(b"GET http:///x HTTP/1.1", HOST),
        "An http URI with an empty host (RFC 9110 4.2.1: MUST reject): the Host "
        "it would give the member is empty.",
    ),
    # ----------------------------------------------------------- Host
    refused(
        "host_missing_http11", "host",
        msg(b"GET / HTTP/1.1", b"X-A: b"),
        "HTTP/1.1 without Host (RFC 9112 3.2: MUST 400).",
    ),
    refused(
        "host_missing_absolute_form", "host",
        msg(b"GET http://a.example/ HTTP/1.1"),
        "HTTP/1.1 with an absolute-form target but no Host field: RFC 9112 3.2 "
        "still requires the field (MUST 400 'any HTTP/1.1 request that lacks a "
        "Host header field').",
    ),
    refused(
        "host_twice_different", "host",
        msg(b"GET / HTTP/1.1", b"Host: a.example", b"Host: b.example"),
        "Two Host fields (RFC 9112 3.2: MUST 400; nginx-tests http_host.t "
        "'host repeat').",
    ),
    refused(
        "host_twice_equal", "host",
        msg(b"GET / HTTP/1.1", HOST, HOST),
        "Two equal Host fields: still two field lines.",
    ),
    refused(
        "host_twice_http10", "host",
        msg(b"GET / HTTP/1.0", b"Host: a.example", b"Host: b.example"),
        "Two Host fields in HTTP/1.0: RFC 9112 3.2 says 'any request message' "
        "(Apache http_strict.t tests it with HTTP/1.0).",
    ),
    refused(
        "host_list", "host",
        msg(b"GET / HTTP/1.1", b"Host: a.example, b.example"),
        "A list in Host (it contains a space).",
    ),
    refused(
        "host_empty", "host",
        msg(b"GET / HTTP/1.1", b"Host:"),
        "An empty Host.  RFC 9112 3.2 allows an empty Host when the target URI "
        "has no authority; the policy refuses it.",
    ),
    refused(
        "host_space", "host",
        msg(b"GET / HTTP/1.1", b"Host: a example"),
        "A space inside Host (Apache http_strict.t 'Host: localhost:80 x').",
    ),
    refused(
        "host_slash", "host",
        msg(b"GET / HTTP/1.1", b"Host: a.example/evil"),
        "A path separator in Host (nginx-tests http_host.t 'domain w/ path separators').",
    ),
    refused(
        "host_at", "host",
        msg(b"GET / HTTP/1.1", b"Host: user@a.example"),
        "userinfo in Host: 'user@a.example' and 'a.example' disagree between parsers.",
    ),
    refused(
        "host_ctl", "host",
        msg(b"GET / HTTP/1.1", b"Host: a.example\x02"),
        "A control character in Host (nginx-tests http_host.t 'control').",
    ),
    refused(
        "host_backslash", "host",
        msg(b"GET / HTTP/1.1", b"Host: a.example\\evil"),
        "A backslash in Host: not allowed in uri-host (RFC 3986 3.2.2; Apache "
        "http_strict.t 'abc\\\\foo' and nginx-tests http_host.t => 400).  The policy "
        "names spaces, '/', '@' and controls; this is the 'invalid' catch-all.",
    ),
    # ----------------------------------------------------------- methods
    refused(
        "method_not_token", "method",
        msg(b"G(ET / HTTP/1.1", HOST),
        "A delimiter in the method (Apache http_strict.t 'G/T').",
    ),
    refused(
        "method_nul", "method",
        msg(b"G\x00ET / HTTP/1.1", HOST),
        "NUL in the method (Apache http_strict.t 'G\\0ET').",
    ),
    refused(
        "method_non_ascii", "method",
        msg(b"G\xc9T / HTTP/1.1", HOST),
        "A non-ASCII byte in the method.",
    ),
    Vector(
        "method_connect", "method",
        msg(b"CONNECT a.example:443 HTTP/1.1", b"Host: a.example:443"),
        405, True, 0,
        "CONNECT: a reverse proxy does not tunnel (RFC 9110 9.3.6; HAProxy "
        "connect_tunnels.vtc is the forward-proxy view).",
    ),
    Vector(
        "method_connect_origin_form", "method",
        msg(b"CONNECT / HTTP/1.1", HOST),
        405, True, 0,
        "CONNECT with an origin-form target: 405 (the method decides first).  "
        "HAProxy answers 400 (h1_request_target_validation.vtc c8).",
    ),
    Vector(
        "method_trace", "method",
        msg(b"TRACE / HTTP/1.1", HOST, b"Cookie: secret=1"),
        405, True, 0,
        "TRACE would reflect the request's headers (cross-site tracing; RFC 9110 "
        "9.3.8 says a client MUST NOT send sensitive fields): 405.",
    ),
    # ----------------------------------------------------------- limits
    Vector(
        "limit_request_line", "limits",
        msg(b"GET /" + b"a" * 9000 + b" HTTP/1.1", HOST), 414, True, 0,
        "A request line over 8192 bytes (RFC 9112 3: SHOULD 414 for a too-long "
        "target; Apache limits.t LimitRequestLine).",
    ),
    Vector(
        "limit_header_line", "limits",
        msg(b"GET / HTTP/1.1", HOST, b"X-Big: " + b"b" * 9000), 431, True, 0,
        "One field line over 8192 bytes (RFC 6585 5; Apache limits.t "
        "LimitRequestFieldSize).",
    ),
    Vector(
        "limit_header_block", "limits",
        msg(b"GET / HTTP/1.1", HOST, *[b"X-H%d: " % i + b"v" * 8000 for i in range(11)]),
        431, True, 0,
        "Eleven 8 KB fields (88 KB): a header block well over 65536 bytes, each "
        "line under 8192 (Apache limits.t; nginx large_client_header_buffers).",
    ),
    Vector(
        "limit_header_block_72k", "limits",
        msg(b"GET / HTTP/1.1", HOST, *[b"X-H%d: " % i + b"v" * 8000 for i in range(9)]),
        431, True, 0,
        "Nine 8 KB fields: the header fields alone are about 72 KB, over the "
        "policy's 65536-byte header block, though the whole head is under "
        "65536 + 8192 (a limit that also counts the request line's allowance "
        "lets this through).",
    ),
    Vector(
        "limit_field_count", "limits",
        msg(b"GET / HTTP/1.1", HOST, *[b"X-F%d: %d" % (i, i) for i in range(100)]),
        431, True, 0,
        "101 header fields (Apache limits.t LimitRequestFields).",
    ),
    # ----------------------------------------------------------- Expect
    Vector(
        "expect_unknown", "expect",
        msg(b"GET / HTTP/1.1", HOST, b"Expect: bogus"), 417, True, 0,
        "An expectation we cannot meet (RFC 9110 10.1.1: MAY 417).  The policy "
        "does not say whether 417 closes; this corpus assumes it does, like "
        "every other refusal.",
    ),
    Vector(
        "expect_obfuscated_100", "expect",
        msg(b"POST / HTTP/1.1", HOST, b"Expect: y 100-continue", b"Content-Length: 5",
            body=b"hello"),
        417, True, 0,
        "An obfuscated 100-continue (Kettle 2025 'HTTP/1.1 must die': Expect-based "
        "desync).  Not 100-continue, so 417.",
    ),
    # ------------------------------------------------------- pipelines
    Vector(
        "pipeline_good_then_bad", "pipeline",
        msg(b"GET /a HTTP/1.1", HOST) + msg(b"GET /b HTTP/1.1 x", HOST),
        200, True, 1,
        "A good request then a malformed one: the first is answered, the second "
        "refused with 400 and the connection closed; only the first is forwarded.",
        targetsAre(b"/a"), 2, (200, 400),
    ),
    Vector(
        "pipeline_bad_then_good", "pipeline",
        msg(b"GET /a HTTP/1.1", b"Host : a.example") + msg(b"GET /b HTTP/1.1", HOST),
        400, True, 0,
        "A malformed request then a good one: nothing after the refusal is read, "
        "so nothing is forwarded.",
    ),
    Vector(
        "pipeline_after_te_cl", "pipeline",
        msg(b"POST /a HTTP/1.1", HOST, b"Transfer-Encoding: chunked", b"Content-Length: 5",
            body=b"0\r\n\r\n") + SMUGGLED,
        400, True, 0,
        "TE.CL with a smuggled request right after the zero chunk: neither "
        "request reaches the member.",
    ),
    # ------------------------------------------------------- max body (413)
    Vector(
        "maxbody_content_length_over", "max-body",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: 17", body=b"x" * 17),
        413, True, 0,
        "A Content-Length over a configured max body of 16 bytes: 413 at once.",
        maxBody=16,
    ),
    Vector(
        "maxbody_chunked_over", "max-body",
        msg(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
            body=chunked(b"x" * 10, b"y" * 10)),
        413, True, 0,
        "A chunked body passing the 16-byte limit in its second chunk (nginx-tests "
        "body_chunked.t 'too large in multiple chunks').",
        maxBody=16,
    ),
    Vector(
        "maxbody_expect_over", "max-body",
        msg(b"POST / HTTP/1.1", HOST, b"Expect: 100-continue", b"Content-Length: 17"),
        413, True, 0,
        "Expect: 100-continue with a Content-Length over the limit, body not "
        "sent: 413 at once, without waiting for the body.",
        maxBody=16,
    ),
    Vector(
        "maxbody_at_limit", "max-body",
        msg(b"POST / HTTP/1.1", HOST, b"Content-Length: 16", body=b"x" * 16),
        200, False, 1,
        "Boundary: a body of exactly the limit is forwarded.",
        bodyIs(b"x" * 16),
        maxBody=16,
    ),
]


def _validate(vectors):
    names = set()
    for v in vectors:
        if not v.name.isidentifier() or v.name in names:
            raise ValueError(f"bad or repeated vector name {v.name!r}")
        names.add(v.name)
        if v.statuses is not None and len(v.statuses) != v.responses:
            raise ValueError(f"{v.name}: statuses and responses disagree")
        if v.statuses is not None and v.statuses[0] != v.status:
            raise ValueError(f"{v.name}: statuses[0] is not status")


_validate(VECTORS)

BY_NAME = {v.name: v for v in VECTORS}
