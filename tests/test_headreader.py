"""
Unit tests for L{playbalancer.http.headreader.HeadReader}, the front's
request-head finder (the same limits over real sockets are in
L{tests.test_limits}).
"""

from twisted.trial.unittest import SynchronousTestCase

from playbalancer.http.headreader import HeadReader
from playbalancer.http.wire import HTTPError, Limits


class HeadReaderTests(SynchronousTestCase):
    def reader(self, maxBody=0, **limits):
        return HeadReader(Limits(**limits), maxBody)

    def refusal(self, reader, data):
        with self.assertRaises(HTTPError) as caught:
            reader.read(data)
        return caught.exception.status

    def test_incompleteThenWhole(self):
        """
        An incomplete head gives L{None} and marks the reader started; the
        whole head gives the request, its bytes and what follows, and the
        reader is ready for the next one.
        """
        reader = self.reader()
        self.assertIsNone(reader.read(b"GET /a HTTP/1.1\r\nHost: x\r\n"))
        self.assertTrue(reader.started)
        request, raw, rest = reader.read(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b")
        self.assertEqual((request.method, request.path), (b"GET", b"/a"))
        self.assertEqual(raw, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(rest, b"GET /b")
        self.assertFalse(reader.started)

    def test_requestLineTooLong(self):
        """
        A request line longer than its limit, still without its end: 414.
        """
        reader = self.reader(maxRequestLine=64)
        self.assertEqual(self.refusal(reader, b"GET /" + b"a" * 100), 414)

    def test_headTooLarge(self):
        """
        A head past the head limit: 431, whether or not its end came.
        """
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 300 + b"\r\n"
        self.assertEqual(self.refusal(self.reader(maxHeaderBytes=100, maxRequestLine=64), head), 431)
        self.assertEqual(
            self.refusal(self.reader(maxHeaderBytes=100, maxRequestLine=64), head + b"\r\n"), 431
        )

    def test_bareLF(self):
        """
        A bare LF line ending in an incomplete head: 400 at once.
        """
        self.assertEqual(self.refusal(self.reader(), b"GET / HTTP/1.1\nHost: x\n"), 400)

    def test_bodyAnnouncedTooBig(self):
        """
        A I{Content-Length} over C{maxBody}: 413 before any body byte.
        """
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"
        self.assertEqual(self.refusal(self.reader(maxBody=10), head), 413)
        request, _, _ = self.reader(maxBody=11).read(head)
        self.assertEqual(request.length, 11)
