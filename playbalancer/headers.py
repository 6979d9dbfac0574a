"""
Header rules for a reverse proxy: hop-by-hop headers stay on their own
connection, X-Forwarded-* tell the member who asked, and redirects that
name a member are turned back into the address the client used
(Apache's C{ProxyPassReverse}).
"""

from __future__ import annotations

from twisted.web.http_headers import Headers

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
    ]
)

#: Request headers the proxy replaces: framing is recomputed for the member,
#: and C{Expect} was already answered by the front end.
_REQUEST_REPLACED = HOP_BY_HOP | frozenset(
    [b"content-length", b"expect", b"host", b"x-forwarded-proto", b"x-forwarded-host"]
)

#: Response headers that may carry a member's URL.
_LOCATION_HEADERS = (b"location", b"content-location", b"uri")


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


def _endToEnd(headers, extraDropped):
    """
    Yield C{(name, values)} for every header of C{headers} that crosses.
    """
    dropped = extraDropped
    listed = headers.getRawHeaders(b"connection")
    if listed:
        dropped = dropped | connectionTokens(listed)
    for name, values in headers.getAllRawHeaders():
        if name.lower() not in dropped:
            yield name, values


def requestHeadersForMember(
    incoming, clientAddress, secure, memberHostHeader, preserveHost
):
    """
    Build the headers sent to a member.

    @param incoming: the client's L{Headers}.
    @param clientAddress: the client's IP address as bytes, appended to
        C{X-Forwarded-For}.
    @param secure: whether the client reached us over TLS.
    @param memberHostHeader: the I{Host} value naming the member, used when
        C{preserveHost} is false or the client sent none.
    @return: a new L{Headers}.
    """
    outgoing = Headers()
    setRaw = outgoing.setRawHeaders
    for name, values in _endToEnd(incoming, _REQUEST_REPLACED):
        setRaw(name, list(values))
    hosts = incoming.getRawHeaders(b"host")
    clientHost = hosts[0] if hosts else None
    if preserveHost and clientHost:
        setRaw(b"Host", [clientHost])
    else:
        setRaw(b"Host", [memberHostHeader])
    if clientHost:
        setRaw(b"X-Forwarded-Host", [clientHost])
    setRaw(b"X-Forwarded-Proto", [b"https" if secure else b"http"])
    forwardedFor = incoming.getRawHeaders(b"x-forwarded-for")
    if forwardedFor:
        setRaw(b"X-Forwarded-For", [b", ".join(forwardedFor + [clientAddress])])
    else:
        setRaw(b"X-Forwarded-For", [clientAddress])
    return outgoing


def responseHeadersForClient(memberHeaders, rewriteLocation, listed=frozenset()):
    """
    Yield the C{(name, values)} of a member's response that go to the
    client, with C{Location}-type headers passed through C{rewriteLocation}.

    @param listed: more header names to drop (lower-case), for when the
        member's C{Connection} header is kept apart from C{memberHeaders}.
    """
    for name, values in _endToEnd(memberHeaders, HOP_BY_HOP | listed if listed else HOP_BY_HOP):
        if name.lower() in _LOCATION_HEADERS:
            values = [rewriteLocation(v) for v in values]
        yield name, values


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
