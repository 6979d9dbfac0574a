"""
Unit tests for the strict message parsers: L{playbalancer.wire} and
L{playbalancer.chunked}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from playbalancer.chunked import ChunkedDecoder, LengthCounter
from playbalancer.wire import HTTPError, Limits, parseRequestHead, parseResponseHead

LIMITS = Limits()


def request(*lines):
    return parseRequestHead(b"\r\n".join(lines), LIMITS)


class RequestHeadTests(SynchronousTestCase):
    def refused(self, status, *lines):
        with self.assertRaises(HTTPError) as caught:
            request(*lines)
        self.assertEqual(caught.exception.status, status, caught.exception.reason)

    def test_plain(self):
        head = request(b"GET /a?b=1 HTTP/1.1", b"Host: example.com", b"X-A:  one  ")
        self.assertEqual(
            (head.method, head.target, head.version, head.host, head.length, head.keepAlive),
            (b"GET", b"/a?b=1", b"HTTP/1.1", b"example.com", 0, True),
        )
        self.assertEqual(head.headers, [(b"Host", b"example.com"), (b"X-A", b"one")])
        self.assertEqual(head.path, b"/a")

    def test_keepAliveRules(self):
        self.assertFalse(request(b"GET / HTTP/1.1", b"Host: a", b"Connection: close").keepAlive)
        self.assertFalse(request(b"GET / HTTP/1.0").keepAlive)
        self.assertTrue(request(b"GET / HTTP/1.0", b"Connection: Keep-Alive").keepAlive)

    def test_framing(self):
        self.assertEqual(request(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 007").length, 7)
        chunked = request(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: Chunked")
        self.assertTrue(chunked.chunked)
        self.refused(400, b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 1", b"Transfer-Encoding: chunked")
        self.refused(400, b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 1", b"Content-Length: 1")
        for bad in [b"+1", b"-1", b"0x1", b"1 1", b"", b"1" * 19]:
            self.refused(400, b"POST / HTTP/1.1", b"Host: a", b"Content-Length: " + bad)
        self.refused(400, b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked, gzip")
        self.refused(400, b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked, chunked")
        self.refused(501, b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: gzip, chunked")
        self.refused(400, b"POST / HTTP/1.0", b"Transfer-Encoding: chunked")

    def test_headerSyntax(self):
        self.refused(400, b"GET / HTTP/1.1", b"Host : a")
        self.refused(400, b"GET / HTTP/1.1", b"Host: a", b" folded")
        self.refused(400, b"GET / HTTP/1.1", b"Host: a", b"X: a\x00b")
        self.refused(400, b"GET / HTTP/1.1", b"Host: a", b"X: a\rb")
        self.refused(400, b"GET / HTTP/1.1", b"Host: a", b"X(: b")
        self.refused(400, b"GET / HTTP/1.1", b"Host: a", b"no colon")
        self.refused(400, b"GET / HTTP/1.1", b"Host: a", b": empty name")

    def test_host(self):
        self.refused(400, b"GET / HTTP/1.1")
        self.refused(400, b"GET / HTTP/1.1", b"Host: a", b"Host: b")
        self.refused(400, b"GET / HTTP/1.1", b"Host: a b")
        self.refused(400, b"GET / HTTP/1.1", b"Host: a/b")
        self.assertEqual(request(b"GET / HTTP/1.1", b"Host: [::1]:80").host, b"[::1]:80")

    def test_targets(self):
        absolute = request(b"GET http://other.example:81/p?q HTTP/1.1", b"Host: a")
        self.assertEqual((absolute.target, absolute.host), (b"/p?q", b"other.example:81"))
        bare = request(b"GET https://other.example HTTP/1.1", b"Host: a")
        self.assertEqual((bare.target, bare.host), (b"/", b"other.example"))
        self.assertEqual(request(b"OPTIONS * HTTP/1.1", b"Host: a").target, b"*")
        self.refused(400, b"GET * HTTP/1.1", b"Host: a")
        self.refused(400, b"GET foo HTTP/1.1", b"Host: a")
        self.refused(400, b"GET /a#b HTTP/1.1", b"Host: a")
        self.refused(400, b"GET http://u@h/ HTTP/1.1", b"Host: a")
        self.refused(400, b"GET ftp://h/ HTTP/1.1", b"Host: a")

    def test_requestLine(self):
        self.refused(400, b"GET  / HTTP/1.1", b"Host: a")
        self.refused(400, b"GET\t/ HTTP/1.1", b"Host: a")
        self.refused(400, b"GET /")
        self.refused(400, b"GET / http/1.1", b"Host: a")
        self.refused(400, b"G@T / HTTP/1.1", b"Host: a")
        self.refused(505, b"GET / HTTP/2.0", b"Host: a")
        self.refused(405, b"CONNECT a:443 HTTP/1.1", b"Host: a")
        self.refused(405, b"TRACE / HTTP/1.1", b"Host: a")
        self.refused(414, b"GET /" + b"a" * 9000 + b" HTTP/1.1", b"Host: a")

    def test_headerLimits(self):
        self.refused(431, b"GET / HTTP/1.1", b"Host: a", b"X: " + b"v" * 9000)
        self.refused(431, b"GET / HTTP/1.1", b"Host: a", *[b"X-%d: v" % i for i in range(100)])

    def test_expectAndUpgrade(self):
        head = request(b"POST / HTTP/1.1", b"Host: a", b"Expect: 100-Continue", b"Content-Length: 1")
        self.assertTrue(head.expectContinue)
        self.refused(417, b"POST / HTTP/1.1", b"Host: a", b"Expect: something")
        upgrade = request(
            b"GET / HTTP/1.1", b"Host: a", b"Connection: Upgrade", b"Upgrade: websocket"
        )
        self.assertEqual(upgrade.upgrade, b"websocket")
        h2c = request(b"GET / HTTP/1.1", b"Host: a", b"Connection: Upgrade", b"Upgrade: h2c")
        self.assertIsNone(h2c.upgrade)
        unlisted = request(b"GET / HTTP/1.1", b"Host: a", b"Upgrade: websocket")
        self.assertIsNone(unlisted.upgrade)


class FieldLineTests(SynchronousTestCase):
    """
    The quick split of clean header lines agrees with the exact grammar on
    every line: the same pairs where the grammar accepts, a refusal where
    it does not.
    """

    def test_quickSplitAgreesWithGrammar(self):
        import random

        from playbalancer import wire

        alphabet = [b"a", b"Z", b"-", b"!", b":", b" ", b"\t", b"\x00", b"\x0b", b"\x1f",
                    b"\x7f", b"\x80", b"\xff", b"(", b'"', b"@", b"/", b"="]
        chooser = random.Random(6)
        for _ in range(20000):
            line = b"".join(chooser.choice(alphabet) for _ in range(chooser.randint(0, 8)))
            head = b"HTTP/1.1 200 OK\r\n" + line
            found = wire._HEADER_LINE.match(line)
            try:
                headers, framing = wire._parseHeaders(head, [line], None, 502)
            except HTTPError as e:
                self.assertIsNone(found, line)
                self.assertEqual(e.status, 502)
            else:
                self.assertIsNotNone(found, line)
                self.assertEqual(headers, [found.groups()], line)


class ResponseHeadTests(SynchronousTestCase):
    def broken(self, head, method=b"GET"):
        with self.assertRaises(HTTPError) as caught:
            parseResponseHead(head, method)
        self.assertEqual(caught.exception.status, 502)

    def test_lengths(self):
        self.assertEqual(parseResponseHead(b"HTTP/1.1 200 OK\r\nContent-Length: 5", b"GET").length, 5)
        self.assertIsNone(
            parseResponseHead(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", b"GET").length
        )
        untilClose = parseResponseHead(b"HTTP/1.1 200 OK", b"GET")
        self.assertEqual((untilClose.length, untilClose.keepAlive), (-1, False))
        self.assertEqual(parseResponseHead(b"HTTP/1.1 200 OK\r\nContent-Length: 5", b"HEAD").length, 0)
        self.assertEqual(parseResponseHead(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5", b"GET").length, 0)
        self.assertEqual(parseResponseHead(b"HTTP/1.1 200", b"GET").reason, b"")

    def test_bodilessWhateverTheFraming(self):
        """
        RFC 9112 6.3: a response to HEAD, a 1xx, 204 or 304 has no body,
        whatever its framing headers say; one that spoke of a body is
        marked, so that its connection is not reused.
        """
        for status, method, framing, announced in [
            (b"200 OK", b"HEAD", b"Transfer-Encoding: chunked", False),
            (b"304 Not Modified", b"GET", b"Transfer-Encoding: chunked", False),
            (b"204 No Content", b"GET", b"Content-Length: 5", True),
            (b"204 No Content", b"GET", b"Transfer-Encoding: chunked", True),
            (b"304 Not Modified", b"GET", b"Content-Length: 5\r\nTransfer-Encoding: chunked", False),
            (b"200 OK", b"HEAD", b"Content-Length: 5", False),
        ]:
            head = parseResponseHead(b"HTTP/1.1 " + status + b"\r\n" + framing, method)
            self.assertEqual((head.length, head.announced), (0, announced), (status, framing))
        for head in [b"HTTP/1.1 204 No Content\r\nContent-Length: 0", b"HTTP/1.1 304 Not Modified"]:
            head = parseResponseHead(head, b"GET")
            self.assertEqual((head.length, head.announced), (0, False), head.status)

    def test_interopLengths(self):
        """
        Identical duplicate Content-Length (RFC 9110 8.6) and leading zeros
        are accepted from members.
        """
        for framing in [
            b"Content-Length: 5\r\nContent-Length: 5",
            b"Content-Length: 0000000000000000005",
            b"Content-Length: 5, 5",
            b"Content-Length: 5\r\nContent-Length: 05",
        ]:
            head = parseResponseHead(b"HTTP/1.1 200 OK\r\n" + framing, b"GET")
            self.assertEqual(head.length, 5)

    def test_refused(self):
        self.broken(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked")
        self.broken(b"HTTP/1.1 200 OK\r\nContent-Length: x")
        self.broken(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6")
        self.broken(b"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789")
        self.broken(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip")
        self.broken(b"ICY 200 OK")
        self.broken(b"HTTP/2 200")
        self.broken(b"HTTP/1.1 200 OK\r\nX: a\nY: b")


class ChunkedTests(SynchronousTestCase):
    BODY = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer-X: 1\r\n\r\nNEXT"

    def decode(self, pieces):
        data = []
        decoder = ChunkedDecoder(data.append)
        left = None
        for piece in pieces:
            self.assertIsNone(left)
            left = decoder.feed(piece)
        return b"".join(data), left

    def test_whole(self):
        self.assertEqual(self.decode([self.BODY]), (b"hello0123456789abcdef", b"NEXT"))

    def test_byteByByte(self):
        """
        However the bytes are split, the same body and the same rest.
        """
        body = self.BODY[:-4]
        data, left = self.decode([body[i : i + 1] for i in range(len(body))])
        self.assertEqual((data, left), (b"hello0123456789abcdef", b""))

    def test_invalid(self):
        for bad in [
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"zz\r\n",
            b"11111111111111111\r\n",
            b"5\r\nhelloXX\r\n0\r\n\r\n",
            b"5\nhello\n0\n\n",
            b"0\r\nbad trailer\r\n\r\n",
        ]:
            with self.assertRaises(HTTPError, msg=bad):
                self.decode([bad])

    def test_length(self):
        data = []
        counter = LengthCounter(data.append, 5)
        self.assertIsNone(counter.feed(b"abc"))
        self.assertEqual(counter.feed(b"defgh"), b"fgh")
        self.assertEqual(data, [b"abc", b"de"])


class ProxyHeaderTests(SynchronousTestCase):
    def test_v1(self):
        from playbalancer.proxyline import parseProxyHeader

        consumed, address = parseProxyHeader(b"PROXY TCP6 2001:db8::1 ::1 4000 80\r\nrest")
        self.assertEqual((consumed, address.host, address.port), (36, "2001:db8::1", 4000))
        self.assertEqual(parseProxyHeader(b"PROXY UNKNOWN\r\n"), (15, None))
        self.assertIsNone(parseProxyHeader(b"PROXY TCP4 1.2"))
        self.assertIsNone(parseProxyHeader(b"PRO"))

    def test_invalid(self):
        from playbalancer.proxyline import ProxyHeaderError, parseProxyHeader

        for bad in [
            b"GET / HTTP/1.1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 x 80\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4\r\n",
            b"PROXY TCP4 " + b"1" * 200,
            b"\r\n\r\n\x00\r\nQUIT\nxxxxxxx",
            b"\r\nX",
        ]:
            with self.assertRaises(ProxyHeaderError, msg=bad):
                parseProxyHeader(bad)

    def test_v2Local(self):
        from playbalancer.proxyline import parseProxyHeader

        header = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
        self.assertEqual(parseProxyHeader(header + b"x"), (16, None))
        self.assertIsNone(parseProxyHeader(header[:10]))
