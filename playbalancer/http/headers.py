"""
Header rules for a reverse proxy: hop-by-hop headers stay on their own
connection, X-Forwarded-* and Forwarded tell the member who asked, and
redirects that name a member are turned back into the address the client
used (Apache's C{ProxyPassReverse}).

Headers are lists of C{(name, value)} pairs, in the order sent, names as
sent (compare them lower-cased).
"""

from __future__ import annotations

#: Headers that describe one connection and never cross the proxy
#: (RFC 9110 section 7.6.1), plus the proxy's own framing.
HOP_BY_HOP = frozenset(
    [
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"proxy-connection",
        b"http2-settings",
    ]
)

#: Headers about who asked, which only a trusted proxy in front may set.
FORWARDING = frozenset(
    [b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"x-real-ip"]
)

#: Request headers the proxy replaces: framing is recomputed for the member,
#: C{Expect} is sent only when the client asked for it.
_REQUEST_REPLACED = HOP_BY_HOP | frozenset(
    [b"content-length", b"expect", b"host", b"x-request-id"]
)

#: Response headers the proxy recomputes.
_RESPONSE_REPLACED = HOP_BY_HOP | frozenset([b"content-length"])

#: Response headers that may carry a member's URL.
_LOCATION_HEADERS = frozenset([b"location", b"content-location", b"uri"])


def connectionTokens(values):
    """
    The header names listed in C{Connection} header values, lower-cased.
    """
    tokens = set()
    for value in values:
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                tokens.add(token)
    return tokens


def _forwardedNode(address):
    if b":" in address:
        return b'"[' + address + b']"'
    return address


def requestHeadersForMember(
    incoming,
    clientAddress,
    secure,
    memberHostHeader,
    preserveHost,
    clientHost,
    listed=frozenset(),
    trusted=False,
    requestId=None,
    underscores=False,
):
    """
    The headers sent to a member.

    @param incoming: the client's C{(name, value)} pairs.
    @param clientAddress: the client's IP address as bytes.
    @param secure: whether the client reached us over TLS.
    @param memberHostHeader: the I{Host} value naming the member, used when
        C{preserveHost} is false or the client sent none.
    @param clientHost: the authority the client asked for, or L{None}.
    @param listed: the lower-case header names the client's I{Connection}
        header lists; they are dropped before ours are added.
    @param trusted: whether the client is a proxy we trust to say who asked
        it: its X-Forwarded-For and Forwarded are extended, not replaced.
    @param requestId: the C{X-Request-Id} to send, if any (the client's own
        is dropped: the caller passes it here when it is valid).
    @param underscores: pass on header names with C{_}.  By default they
        are dropped (nginx's C{underscores_in_headers off}): CGI, WSGI and
        PHP map C{X_Real_IP} and C{X-Real-IP} to the same variable, so a
        client could set what only we may.
    @return: a new list of pairs.
    """
    dropped = _REQUEST_REPLACED | listed if listed else _REQUEST_REPLACED
    outgoing = []
    forwardedFor = []
    forwarded = []
    proto = host = None
    for name, value in incoming:
        lowered = name.lower()
        if lowered in dropped or (b"_" in lowered and not underscores):
            continue
        if lowered in FORWARDING:
            if trusted:
                if lowered == b"x-forwarded-for":
                    forwardedFor.append(value)
                elif lowered == b"forwarded":
                    forwarded.append(value)
                elif lowered == b"x-forwarded-proto":
                    proto = value
                elif lowered == b"x-forwarded-host":
                    host = value
                else:
                    outgoing.append((name, value))
            continue
        outgoing.append((name, value))
    if preserveHost and clientHost:
        outgoing.insert(0, (b"Host", clientHost))
    else:
        outgoing.insert(0, (b"Host", memberHostHeader))
    scheme = b"https" if secure else b"http"
    forwardedFor.append(clientAddress)
    outgoing.append((b"X-Forwarded-For", b", ".join(forwardedFor)))
    outgoing.append((b"X-Forwarded-Proto", proto or scheme))
    if host or clientHost:
        outgoing.append((b"X-Forwarded-Host", host or clientHost))
    ours = b"for=" + _forwardedNode(clientAddress) + b";proto=" + scheme
    if clientHost:
        ours += b';host="' + clientHost + b'"'
    forwarded.append(ours)
    outgoing.append((b"Forwarded", b", ".join(forwarded)))
    if requestId is not None:
        outgoing.append((b"X-Request-Id", requestId))
    return outgoing


def responseHeadersForClient(memberHeaders, rewriteLocation, listed=frozenset()):
    """
    Yield the C{(name, value)} pairs of a member's response that go to the
    client, with C{Location}-type headers passed through
    C{rewriteLocation}.

    @param listed: more header names to drop (lower-case): those the
        member's I{Connection} header lists.
    """
    dropped = _RESPONSE_REPLACED | listed if listed else _RESPONSE_REPLACED
    for name, value in memberHeaders:
        lowered = name.lower()
        if lowered in dropped:
            continue
        if lowered in _LOCATION_HEADERS:
            value = rewriteLocation(value)
        yield name, value


class LocationRewriter:
    """
    Turn absolute URLs that point at a member into URLs at the address the
    client used (Apache's C{ProxyPassReverse}).

    @param memberBases: the members' base URLs as bytes, e.g.
        C{b"http://127.0.0.1:9999"} or C{b"http://app:80/prefix"}.
    """

    def __init__(self, memberBases):
        self._bases = sorted(set(memberBases), key=len, reverse=True)

    def rewrite(self, value, clientBase):
        """
        Rewrite C{value} if it starts with a member base.

        @param clientBase: what replaces the member base, e.g.
            C{b"https://www.example.com"} (plus the mount path, if any).
        """
        for base in self._bases:
            if value.startswith(base):
                rest = value[len(base) :]
                if not rest or rest[:1] in b"/?#":
                    return clientBase + rest
        return value
