"""
Tests for L{playbalancer.headers}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from playbalancer.headers import (
    HOP_BY_HOP,
    LocationRewriter,
    connectionTokens,
    requestHeadersForMember,
    responseHeadersForClient,
)

HOP_NAMES = [
    b"Connection",
    b"Keep-Alive",
    b"TE",
    b"Trailer",
    b"Transfer-Encoding",
    b"Upgrade",
    b"Proxy-Authorization",
    b"Proxy-Authenticate",
    b"Proxy-Connection",
]


def headers(*pairs):
    """
    L{Headers} from C{(name, value)} pairs, added in order.
    """
    result = Headers()
    for name, value in pairs:
        result.addRawHeader(name, value)
    return result


def asDict(h):
    """
    Lower-cased name to list of values.
    """
    return {name.lower(): list(values) for name, values in h.getAllRawHeaders()}


def forMember(incoming, address=b"10.0.0.7", secure=False, host=b"app:9999", preserve=True):
    return asDict(requestHeadersForMember(incoming, address, secure, host, preserve))


class ConnectionTokensTests(SynchronousTestCase):
    def test_tokens(self):
        self.assertEqual(
            connectionTokens([b"close, X-Foo", b" ,keep-alive ,, X-BAR "]),
            {b"close", b"x-foo", b"keep-alive", b"x-bar"},
        )
        self.assertEqual(connectionTokens([]), set())
        self.assertEqual(connectionTokens([b" , "]), set())

    def test_hopByHop(self):
        self.assertEqual(HOP_BY_HOP, frozenset(n.lower() for n in HOP_NAMES))


class RequestHeadersTests(SynchronousTestCase):
    def test_minimal(self):
        """
        A request with just a Host gets Host, X-Forwarded-Host, -Proto and
        -For, and nothing else.
        """
        self.assertEqual(
            forMember(headers((b"Host", b"www.example.com"))),
            {
                b"host": [b"www.example.com"],
                b"x-forwarded-host": [b"www.example.com"],
                b"x-forwarded-proto": [b"http"],
                b"x-forwarded-for": [b"10.0.0.7"],
            },
        )

    def test_returnsNewHeaders(self):
        incoming = headers((b"Host", b"h"), (b"Accept", b"*/*"))
        outgoing = requestHeadersForMember(incoming, b"1.2.3.4", False, b"m", True)
        self.assertIsInstance(outgoing, Headers)
        self.assertIsNot(outgoing, incoming)
        self.assertEqual(
            asDict(incoming), {b"host": [b"h"], b"accept": [b"*/*"]}
        )

    def test_hopByHopRemoved(self):
        pairs = [(b"Host", b"h")] + [(name, b"v") for name in HOP_NAMES]
        pairs.append((b"Accept", b"text/html"))
        result = forMember(headers(*pairs))
        for name in HOP_NAMES:
            self.assertNotIn(name.lower(), result)
        self.assertEqual(result[b"accept"], [b"text/html"])

    def test_hopByHopAnyCase(self):
        result = forMember(
            headers((b"host", b"h"), (b"keep-ALIVE", b"5"), (b"transfer-encoding", b"chunked"))
        )
        self.assertNotIn(b"keep-alive", result)
        self.assertNotIn(b"transfer-encoding", result)

    def test_connectionListed(self):
        """
        Every header the Connection header names is removed, whatever its
        case; others stay.
        """
        result = forMember(
            headers(
                (b"Host", b"h"),
                (b"Connection", b"close, X-Secret"),
                (b"Connection", b"x-other"),
                (b"X-Secret", b"1"),
                (b"X-Other", b"2"),
                (b"X-Kept", b"3"),
            )
        )
        self.assertNotIn(b"connection", result)
        self.assertNotIn(b"x-secret", result)
        self.assertNotIn(b"x-other", result)
        self.assertEqual(result[b"x-kept"], [b"3"])

    def test_framingAndExpectRemoved(self):
        result = forMember(
            headers(
                (b"Host", b"h"),
                (b"Content-Length", b"12"),
                (b"Expect", b"100-continue"),
                (b"Content-Type", b"text/plain"),
            )
        )
        self.assertNotIn(b"content-length", result)
        self.assertNotIn(b"expect", result)
        self.assertEqual(result[b"content-type"], [b"text/plain"])

    def test_repeatedKeptInOrder(self):
        result = forMember(
            headers(
                (b"Host", b"h"),
                (b"Cookie", b"a=1"),
                (b"Accept", b"x"),
                (b"Cookie", b"b=2"),
                (b"Cookie", b"c=3"),
            )
        )
        self.assertEqual(result[b"cookie"], [b"a=1", b"b=2", b"c=3"])
        self.assertEqual(result[b"accept"], [b"x"])

    def test_endToEndUntouched(self):
        result = forMember(
            headers(
                (b"Host", b"h"),
                (b"Authorization", b"Basic eA=="),
                (b"User-Agent", b"ua, with comma"),
            )
        )
        self.assertEqual(result[b"authorization"], [b"Basic eA=="])
        self.assertEqual(result[b"user-agent"], [b"ua, with comma"])

    def test_hostPreserved(self):
        result = forMember(headers((b"Host", b"www.example.com:8080")), preserve=True)
        self.assertEqual(result[b"host"], [b"www.example.com:8080"])
        self.assertEqual(result[b"x-forwarded-host"], [b"www.example.com:8080"])

    def test_hostReplaced(self):
        result = forMember(
            headers((b"Host", b"www.example.com")), host=b"[::1]:9999", preserve=False
        )
        self.assertEqual(result[b"host"], [b"[::1]:9999"])
        self.assertEqual(result[b"x-forwarded-host"], [b"www.example.com"])

    def test_noClientHost(self):
        """
        Without a client Host, the member's is used even when preserving,
        and there is no X-Forwarded-Host.
        """
        result = forMember(headers((b"Accept", b"x")), host=b"app:9999", preserve=True)
        self.assertEqual(result[b"host"], [b"app:9999"])
        self.assertNotIn(b"x-forwarded-host", result)

    def test_severalHostsFirstWins(self):
        result = forMember(headers((b"Host", b"one"), (b"Host", b"two")))
        self.assertEqual(result[b"host"], [b"one"])
        self.assertEqual(result[b"x-forwarded-host"], [b"one"])

    def test_forwardedForAppended(self):
        result = forMember(
            headers((b"Host", b"h"), (b"X-Forwarded-For", b"1.1.1.1, 2.2.2.2")),
            address=b"3.3.3.3",
        )
        self.assertEqual(result[b"x-forwarded-for"], [b"1.1.1.1, 2.2.2.2, 3.3.3.3"])

    def test_forwardedForSeveralHeaders(self):
        result = forMember(
            headers(
                (b"Host", b"h"),
                (b"X-Forwarded-For", b"1.1.1.1"),
                (b"x-forwarded-for", b"2.2.2.2"),
            ),
            address=b"::1",
        )
        self.assertEqual(result[b"x-forwarded-for"], [b"1.1.1.1, 2.2.2.2, ::1"])

    def test_forwardedProto(self):
        self.assertEqual(
            forMember(headers((b"Host", b"h")), secure=False)[b"x-forwarded-proto"],
            [b"http"],
        )
        self.assertEqual(
            forMember(headers((b"Host", b"h")), secure=True)[b"x-forwarded-proto"],
            [b"https"],
        )

    def test_clientForwardedReplaced(self):
        """
        A client cannot choose X-Forwarded-Proto or -Host.
        """
        result = forMember(
            headers(
                (b"Host", b"real.example"),
                (b"X-Forwarded-Proto", b"https"),
                (b"X-Forwarded-Proto", b"gopher"),
                (b"X-Forwarded-Host", b"evil.example"),
            ),
            secure=False,
        )
        self.assertEqual(result[b"x-forwarded-proto"], [b"http"])
        self.assertEqual(result[b"x-forwarded-host"], [b"real.example"])

    def test_clientForwardedHostDroppedWithoutHost(self):
        result = forMember(headers((b"X-Forwarded-Host", b"evil.example")))
        self.assertNotIn(b"x-forwarded-host", result)

    def test_exactOutput(self):
        """
        Everything together.
        """
        result = forMember(
            headers(
                (b"Host", b"front:8443"),
                (b"Connection", b"keep-alive, X-Hop"),
                (b"Keep-Alive", b"timeout=5"),
                (b"X-Hop", b"1"),
                (b"Accept", b"a"),
                (b"Accept", b"b"),
                (b"Content-Length", b"3"),
                (b"X-Forwarded-For", b"9.9.9.9"),
            ),
            address=b"10.1.1.1",
            secure=True,
            host=b"app:81",
            preserve=False,
        )
        self.assertEqual(
            result,
            {
                b"accept": [b"a", b"b"],
                b"host": [b"app:81"],
                b"x-forwarded-host": [b"front:8443"],
                b"x-forwarded-proto": [b"https"],
                b"x-forwarded-for": [b"9.9.9.9, 10.1.1.1"],
            },
        )


def rewriteWith(mapping):
    def rewrite(value):
        return mapping.get(value, b"unexpected:" + value)

    return rewrite


def forClient(memberHeaders, rewrite=None):
    result = {}
    for name, values in responseHeadersForClient(
        memberHeaders, rewrite or (lambda v: b"R(" + v + b")")
    ):
        result.setdefault(name.lower(), []).extend(values)
    return result


class ResponseHeadersTests(SynchronousTestCase):
    def test_hopByHopDropped(self):
        pairs = [(name, b"v") for name in HOP_NAMES] + [
            (b"Content-Type", b"text/html"),
            (b"Content-Length", b"5"),
        ]
        self.assertEqual(
            forClient(headers(*pairs)),
            {b"content-type": [b"text/html"], b"content-length": [b"5"]},
        )

    def test_connectionListedDropped(self):
        result = forClient(
            headers(
                (b"Connection", b"X-Internal, close"),
                (b"X-Internal", b"secret"),
                (b"Server", b"app"),
            )
        )
        self.assertEqual(result, {b"server": [b"app"]})

    def test_setCookieRepeated(self):
        result = forClient(
            headers(
                (b"Set-Cookie", b"a=1; Path=/"),
                (b"Set-Cookie", b"b=2, c=3"),
                (b"Set-Cookie", b"d=4"),
            )
        )
        self.assertEqual(result, {b"set-cookie": [b"a=1; Path=/", b"b=2, c=3", b"d=4"]})

    def test_locationsRewritten(self):
        result = forClient(
            headers(
                (b"Location", b"http://m/a"),
                (b"Content-Location", b"http://m/b"),
                (b"URI", b"http://m/c"),
                (b"Link", b"<http://m/d>"),
                (b"Refresh", b"0; url=http://m/e"),
            )
        )
        self.assertEqual(
            result,
            {
                b"location": [b"R(http://m/a)"],
                b"content-location": [b"R(http://m/b)"],
                b"uri": [b"R(http://m/c)"],
                b"link": [b"<http://m/d>"],
                b"refresh": [b"0; url=http://m/e"],
            },
        )

    def test_rewriteEachValue(self):
        result = forClient(
            headers((b"Location", b"one"), (b"Location", b"two")),
            rewriteWith({b"one": b"1", b"two": b"2"}),
        )
        self.assertEqual(result, {b"location": [b"1", b"2"]})

    def test_names(self):
        """
        Names come out as Headers gives them, once each.
        """
        names = [
            name.lower()
            for name, values in responseHeadersForClient(
                headers((b"X-A", b"1"), (b"X-B", b"2"), (b"X-A", b"3")), lambda v: v
            )
        ]
        self.assertEqual(sorted(names), [b"x-a", b"x-b"])


class LocationRewriterTests(SynchronousTestCase):
    client = b"https://www.example.com"

    def rewrite(self, bases, value, client=None):
        return LocationRewriter(bases).rewrite(value, client or self.client)

    def test_prefix(self):
        bases = [b"http://127.0.0.1:9999"]
        self.assertEqual(
            self.rewrite(bases, b"http://127.0.0.1:9999/x"),
            b"https://www.example.com/x",
        )
        self.assertEqual(
            self.rewrite(bases, b"http://127.0.0.1:99990/x"), b"http://127.0.0.1:99990/x"
        )
        self.assertEqual(
            self.rewrite(bases, b"http://127.0.0.1:9999.evil/x"),
            b"http://127.0.0.1:9999.evil/x",
        )
        self.assertEqual(
            self.rewrite(bases, b"http://127.0.0.1:9999"), b"https://www.example.com"
        )

    def test_queryAndFragment(self):
        bases = [b"http://127.0.0.1:9999"]
        self.assertEqual(
            self.rewrite(bases, b"http://127.0.0.1:9999?a=1"),
            b"https://www.example.com?a=1",
        )
        self.assertEqual(
            self.rewrite(bases, b"http://127.0.0.1:9999#top"),
            b"https://www.example.com#top",
        )

    def test_pathBase(self):
        bases = [b"http://app:80/prefix"]
        client = b"https://www.example.com/mount"
        self.assertEqual(
            self.rewrite(bases, b"http://app:80/prefix/x?y=1", client),
            b"https://www.example.com/mount/x?y=1",
        )
        self.assertEqual(
            self.rewrite(bases, b"http://app:80/prefix?y", client),
            b"https://www.example.com/mount?y",
        )
        self.assertEqual(
            self.rewrite(bases, b"http://app:80/prefixed/x", client),
            b"http://app:80/prefixed/x",
        )
        self.assertEqual(
            self.rewrite(bases, b"http://app:80/other", client), b"http://app:80/other"
        )

    def test_longestWins(self):
        bases = [b"http://app:80", b"http://app:80/prefix/deeper", b"http://app:80/prefix"]
        self.assertEqual(
            self.rewrite(bases, b"http://app:80/prefix/x"), b"https://www.example.com/x"
        )
        self.assertEqual(
            self.rewrite(bases, b"http://app:80/prefix/deeper/x"),
            b"https://www.example.com/x",
        )
        self.assertEqual(
            self.rewrite(bases, b"http://app:80/prefixed"),
            b"https://www.example.com/prefixed",
        )

    def test_severalMembers(self):
        bases = [b"http://a:1", b"http://b:2", b"http://a:1"]
        self.assertEqual(self.rewrite(bases, b"http://b:2/z"), b"https://www.example.com/z")
        self.assertEqual(self.rewrite(bases, b"http://a:1/z"), b"https://www.example.com/z")
        self.assertEqual(self.rewrite(bases, b"http://c:3/z"), b"http://c:3/z")

    def test_unrelatedUntouched(self):
        bases = [b"http://127.0.0.1:9999"]
        for value in [b"/relative", b"", b"https://127.0.0.1:9999/x", b"x http://127.0.0.1:9999/"]:
            self.assertEqual(self.rewrite(bases, value), value)

    def test_noBases(self):
        self.assertEqual(self.rewrite([], b"http://a/"), b"http://a/")
