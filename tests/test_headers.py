"""
Tests for L{playbalancer.headers}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

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
    b"HTTP2-Settings",
]


def forMember(
    incoming,
    address=b"10.0.0.7",
    secure=False,
    host=b"app:9999",
    preserve=True,
    trusted=False,
):
    """
    The pairs sent to the member for the client's C{incoming} pairs, as the
    front end calls it: the client's Host and Connection tokens found first.
    """
    clientHost = next((v for n, v in incoming if n.lower() == b"host"), None)
    listed = connectionTokens([v for n, v in incoming if n.lower() == b"connection"])
    return requestHeadersForMember(
        incoming, address, secure, host, preserve, clientHost, frozenset(listed), trusted
    )


def asDict(pairs):
    """
    Lower-cased name to list of values.
    """
    result = {}
    for name, value in pairs:
        result.setdefault(name.lower(), []).append(value)
    return result


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
    def test_exactOutput(self):
        """
        A plain request: Host first, the client's end-to-end headers in
        order, then ours.
        """
        self.assertEqual(
            forMember([(b"Host", b"www.example.com"), (b"Accept", b"*/*")]),
            [
                (b"Host", b"www.example.com"),
                (b"Accept", b"*/*"),
                (b"X-Forwarded-For", b"10.0.0.7"),
                (b"X-Forwarded-Proto", b"http"),
                (b"X-Forwarded-Host", b"www.example.com"),
                (b"Forwarded", b'for=10.0.0.7;proto=http;host="www.example.com"'),
            ],
        )

    def test_hopByHopRemoved(self):
        pairs = [(b"Host", b"h")] + [(name, b"v") for name in HOP_NAMES]
        pairs += [(b"keep-ALIVE", b"5"), (b"Accept", b"text/html")]
        result = asDict(forMember(pairs))
        for name in HOP_NAMES:
            self.assertNotIn(name.lower(), result)
        self.assertEqual(result[b"accept"], [b"text/html"])

    def test_connectionListed(self):
        """
        Every header the Connection header names is removed, whatever its
        case, including our own forwarding headers; ours are added after.
        """
        result = asDict(
            forMember(
                [
                    (b"Host", b"h"),
                    (b"Connection", b"close, X-Secret, X-Forwarded-For"),
                    (b"Connection", b"x-other"),
                    (b"X-Secret", b"1"),
                    (b"X-Other", b"2"),
                    (b"X-Kept", b"3"),
                ]
            )
        )
        self.assertNotIn(b"connection", result)
        self.assertNotIn(b"x-secret", result)
        self.assertNotIn(b"x-other", result)
        self.assertEqual(result[b"x-kept"], [b"3"])
        self.assertEqual(result[b"x-forwarded-for"], [b"10.0.0.7"])

    def test_framingAndExpectRemoved(self):
        result = asDict(
            forMember(
                [
                    (b"Host", b"h"),
                    (b"Content-Length", b"12"),
                    (b"Expect", b"100-continue"),
                    (b"Transfer-Encoding", b"chunked"),
                    (b"HTTP2-Settings", b"AAMAAABkAAQAAP__"),
                    (b"Upgrade", b"h2c"),
                ]
            )
        )
        for name in [b"content-length", b"expect", b"transfer-encoding", b"http2-settings", b"upgrade"]:
            self.assertNotIn(name, result)

    def test_repeatedKeptInOrder(self):
        result = forMember(
            [(b"Host", b"h"), (b"X-A", b"1"), (b"x-b", b"2"), (b"X-A", b"3")]
        )
        self.assertEqual(result[1:4], [(b"X-A", b"1"), (b"x-b", b"2"), (b"X-A", b"3")])

    def test_hostPreservedOrReplaced(self):
        self.assertEqual(asDict(forMember([(b"Host", b"front")]))[b"host"], [b"front"])
        replaced = asDict(forMember([(b"Host", b"front")], preserve=False))
        self.assertEqual(replaced[b"host"], [b"app:9999"])
        self.assertEqual(replaced[b"x-forwarded-host"], [b"front"])

    def test_noClientHost(self):
        result = asDict(forMember([(b"X-Forwarded-Host", b"evil.example")]))
        self.assertEqual(result[b"host"], [b"app:9999"])
        self.assertNotIn(b"x-forwarded-host", result)
        self.assertEqual(result[b"forwarded"], [b"for=10.0.0.7;proto=http"])

    def test_untrustedForwardingReplaced(self):
        """
        A client that is not a trusted proxy cannot say who asked, nor by
        which scheme or host.
        """
        result = asDict(
            forMember(
                [
                    (b"Host", b"real.example"),
                    (b"X-Forwarded-For", b"1.1.1.1"),
                    (b"X-Forwarded-Proto", b"https"),
                    (b"X-Forwarded-Host", b"evil.example"),
                    (b"Forwarded", b"for=1.1.1.1"),
                    (b"X-Real-IP", b"1.1.1.1"),
                ],
                address=b"3.3.3.3",
            )
        )
        self.assertEqual(result[b"x-forwarded-for"], [b"3.3.3.3"])
        self.assertEqual(result[b"x-forwarded-proto"], [b"http"])
        self.assertEqual(result[b"x-forwarded-host"], [b"real.example"])
        self.assertEqual(result[b"forwarded"], [b'for=3.3.3.3;proto=http;host="real.example"'])
        self.assertNotIn(b"x-real-ip", result)

    def test_trustedForwardingExtended(self):
        result = asDict(
            forMember(
                [
                    (b"Host", b"h"),
                    (b"X-Forwarded-For", b"1.1.1.1, 2.2.2.2"),
                    (b"x-forwarded-for", b"4.4.4.4"),
                    (b"X-Forwarded-Proto", b"https"),
                    (b"Forwarded", b"for=1.1.1.1"),
                ],
                address=b"::1",
                trusted=True,
            )
        )
        self.assertEqual(result[b"x-forwarded-for"], [b"1.1.1.1, 2.2.2.2, 4.4.4.4, ::1"])
        self.assertEqual(result[b"x-forwarded-proto"], [b"https"])
        self.assertEqual(
            result[b"forwarded"], [b'for=1.1.1.1, for="[::1]";proto=http;host="h"']
        )

    def test_secure(self):
        result = asDict(forMember([(b"Host", b"h")], secure=True))
        self.assertEqual(result[b"x-forwarded-proto"], [b"https"])


def rewriteWith(mapping):
    def rewrite(value):
        return mapping.get(value, b"unexpected:" + value)

    return rewrite


def forClient(memberHeaders, rewrite=None, listed=frozenset()):
    return asDict(
        responseHeadersForClient(
            memberHeaders, rewrite or (lambda v: b"R(" + v + b")"), listed
        )
    )


class ResponseHeadersTests(SynchronousTestCase):
    def test_hopByHopAndLengthDropped(self):
        pairs = [(name, b"v") for name in HOP_NAMES] + [
            (b"Content-Type", b"text/html"),
            (b"Content-Length", b"5"),
        ]
        self.assertEqual(forClient(pairs), {b"content-type": [b"text/html"]})

    def test_connectionListedDropped(self):
        result = forClient(
            [(b"X-Internal", b"secret"), (b"Server", b"app")], listed=frozenset([b"x-internal"])
        )
        self.assertEqual(result, {b"server": [b"app"]})

    def test_setCookieRepeated(self):
        result = forClient(
            [
                (b"Set-Cookie", b"a=1; Path=/"),
                (b"Set-Cookie", b"b=2, c=3"),
                (b"Set-Cookie", b"d=4"),
            ]
        )
        self.assertEqual(result, {b"set-cookie": [b"a=1; Path=/", b"b=2, c=3", b"d=4"]})

    def test_locationsRewritten(self):
        result = forClient(
            [
                (b"Location", b"http://m/a"),
                (b"Content-Location", b"http://m/b"),
                (b"URI", b"http://m/c"),
                (b"Link", b"<http://m/d>"),
                (b"Refresh", b"0; url=http://m/e"),
            ]
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
            [(b"Location", b"one"), (b"Location", b"two")],
            rewriteWith({b"one": b"1", b"two": b"2"}),
        )
        self.assertEqual(result, {b"location": [b"1", b"2"]})


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
