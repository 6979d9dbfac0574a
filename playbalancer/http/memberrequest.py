"""
The request head a member gets: the client's, with the target under the
member's base path, the header rules of L{playbalancer.http.headers}, and
framing of our own.
"""

from __future__ import annotations

from playbalancer.http.headers import requestHeadersForMember

CONNECTION_WORDS = frozenset([b"close", b"keep-alive", b"upgrade"])


def requestId(request, proxy):
    """
    The client's valid C{X-Request-Id}, or one made by C{proxy} (a
    per-process random prefix and a counter: unique without a syscall),
    kept on the request.
    """
    if request.requestId is None:
        request.requestId = proxy.nextRequestId()
    return request.requestId


def memberRequestHead(proxy, request, member, expectContinue):
    """
    The bytes of C{request}'s head for C{member}.

    @param proxy: the L{playbalancer.http.proxy.HTTPProxy} (header settings).
    @param expectContinue: whether to ask the member for a C{100 Continue}.
    """
    target = request.target
    if member.basePath and target[:1] == b"/":
        target = member.basePath + target
    listed = request.connection - CONNECTION_WORDS if request.connection else frozenset()
    address = request.client or "unknown"
    headers = requestHeadersForMember(
        request.headers,
        address.encode("ascii"),
        request.secure,
        member.hostHeader,
        proxy.preserveHost,
        request.host,
        listed,
        proxy.trusting and proxy.trusts(address),
        requestId(request, proxy),
        proxy.underscoresInHeaders,
    )
    parts = [request.method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        parts.extend((name, b": ", value, b"\r\n"))
    if request.length is None:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    elif request.length or request.method in (b"POST", b"PUT", b"PATCH"):
        parts.append(b"Content-Length: %d\r\n" % request.length)
    if expectContinue:
        parts.append(b"Expect: 100-continue\r\n")
    if request.upgrade:
        parts.append(b"Connection: upgrade\r\nUpgrade: " + request.upgrade + b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)
