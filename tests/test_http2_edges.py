"""
The HTTP/2 front's edge cases found by its review: each test here failed
on the code as first written (its docstring says how).  Real sockets on
127.0.0.1 only.
"""

from __future__ import annotations

from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, RstStreamFrame
from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.http.front import FrontSettings
from playbalancer.http.wire import HTTPError, Limits
from playbalancer.http2.budget import FloodLimits
from playbalancer.http2.translate import requestHeadOf
from playbalancer.testing import waitUntil

from tests.h2client import H2TestClient, connectH2
from tests.test_http2 import HTTP2Case

MiB = 2**20


def _sleep(seconds):
    d = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


# A member that reads requests the way many servers do (Go's net/http,
# nginx with an early "return", Node): it may answer as soon as it has a
# head, then drains the body the head declared before reading the next
# request on the same keep-alive connection.


class _RawMemberProtocol(Protocol):
    def __init__(self, server):
        self.server = server
        self.buffer = b""
        self.skip = 0
        self.bodyFor = None
        self.bodyLeft = 0
        self.bodyGot = 0

    def connectionMade(self):
        self.server.connections += 1

    def _respond(self, body):
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    def dataReceived(self, data):
        self.buffer += data
        while True:
            if self.skip:
                taken = min(self.skip, len(self.buffer))
                self.buffer, self.skip = self.buffer[taken:], self.skip - taken
                if self.skip:
                    return
            if self.bodyFor is not None:
                taken = min(self.bodyLeft, len(self.buffer))
                self.buffer, self.bodyLeft = self.buffer[taken:], self.bodyLeft - taken
                self.bodyGot += taken
                if self.bodyLeft:
                    return
                self._respond(self.bodyFor + b" %d" % self.bodyGot)
                self.bodyFor = None
            end = self.buffer.find(b"\r\n\r\n")
            if end == -1:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            lines = head.split(b"\r\n")
            line = lines[0]
            self.server.lines.append(line)
            parts = line.split(b" ")
            if len(parts) != 3 or parts[1][:1] != b"/" or parts[2] != b"HTTP/1.1":
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                self.transport.loseConnection()
                return
            length = 0
            for field in lines[1:]:
                name, _, value = field.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            path = parts[1]
            if path.startswith(b"/stall"):
                # Never reads again: its kernel buffers fill, and the
                # balancer's writes to it back up.
                self.transport.pauseProducing()
                self.server.stalled.append(self)
                return
            if path.startswith(b"/early"):
                # Answers at once, then drains the declared body.
                self._respond(line)
                self.skip = length
                continue
            self.bodyFor, self.bodyLeft, self.bodyGot = line, length, 0


class RawMember(Factory):
    def __init__(self):
        self.lines = []
        self.stalled = []
        self.connections = 0

    def buildProtocol(self, addr):
        return _RawMemberProtocol(self)

    def start(self, testCase):
        port = reactor.listenTCP(0, self, interface="127.0.0.1")
        testCase.addCleanup(port.stopListening)

        def cut():
            for p in self.stalled:
                p.transport.abortConnection()

        testCase.addCleanup(cut)
        self.url = f"http://127.0.0.1:{port.getHost().port}"
        return self


class PacedClient(H2TestClient):
    """
    An L{H2TestClient} that uploads bodies as the server's windows allow.
    """

    def __init__(self, **kwargs):
        H2TestClient.__init__(self, **kwargs)
        self.uploads = {}

    def upload(self, streamId, body, end=True):
        self.uploads[streamId] = [memoryview(body), end]
        self.pump()

    def cancel(self, streamId):
        self.uploads.pop(streamId, None)
        self.h2.reset_stream(streamId, ErrorCodes.CANCEL)
        self.flush()

    def pump(self):
        h2 = self.h2
        for streamId, upload in list(self.uploads.items()):
            view, end = upload
            while view:
                size = min(len(view), h2.max_outbound_frame_size, h2.local_flow_control_window(streamId))
                if size <= 0:
                    break
                h2.send_data(streamId, view[:size].tobytes())
                view = view[size:]
            upload[0] = view
            if not view:
                del self.uploads[streamId]
                if end:
                    h2.end_stream(streamId)
        self.flush()

    def dataReceived(self, data):
        H2TestClient.dataReceived(self, data)
        if not self.closed:
            self.pump()


def _connectPaced(port):
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    return connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), PacedClient())


class BodyFramingTests(HTTP2Case):
    async def test_trailersEndBodyShortOfContentLength(self):
        """
        A request whose body is ended by a trailers HEADERS frame before
        its content-length is reached must not reach a member as if it
        were complete.  (The h2 library checks content-length only on
        DATA frames; trailers reset its count.)  Today the member gets
        "Content-Length: 9" and 5 bytes, the member connection goes back
        to the pool, and the member reads the first 4 bytes of the next
        request on it -- another client's -- as the rest of that body.
        """
        member = RawMember().start(self)
        self.startBalancer([member.url], settings=FrontSettings(protocols=("http/1.1", "h2c")))
        attacker = await connectH2(self.port, tls=False)
        self.addCleanup(attacker.transport.loseConnection)
        first = attacker.request(
            b"POST", b"/early", headers=[(b"content-length", b"9")], body=b"hello", end=False
        )
        attacker.h2.send_headers(first.streamId, [(b"x-trailer", b"1")], end_stream=True)
        attacker.flush()
        await first.done
        victim = await connectH2(self.port, tls=False)
        self.addCleanup(victim.transport.loseConnection)
        second = victim.request(b"GET", b"/victim")
        await second.done
        self.assertIn(b"GET /victim HTTP/1.1", member.lines, member.lines)
        self.assertEqual(second.status, 200)


class ConnectionWindowTests(HTTP2Case):
    async def _stallOneUpload(self):
        """
        A connection whose stream 1 uploads to a member that stopped
        reading, until the front paused that stream.
        """
        member = RawMember().start(self)
        self.startBalancer([member.url], settings=FrontSettings(protocols=("http/1.1", "h2c")))
        client = await _connectPaced(self.port)
        self.addCleanup(client.transport.loseConnection)
        stalled = client.request(
            b"POST", b"/stall", headers=[(b"content-length", b"%d" % (64 * MiB))], end=False
        )
        client.upload(stalled.streamId, b"s" * (64 * MiB))

        def paused():
            for connection in self.front.connections:
                stream = getattr(connection, "streams", {}).get(stalled.streamId)
                if stream is not None and stream.paused:
                    return True
            return False

        await waitUntil(paused, reactor, timeout=20)
        await _sleep(0.5)  # (the client sends what its windows still allow)
        return client, stalled

    async def test_oneStalledUploadStarvesTheOthers(self):
        """
        A stream whose member is slow holds its window shut; it must not
        hold the whole connection's window shut too.  Today the bytes a
        paused stream holds are not acknowledged on the connection either
        (acknowledge_received_data does both), so one stalled upload
        (65,535 bytes, the default connection window) stops every other
        upload on the connection.
        """
        client, stalled = await self._stallOneUpload()
        other = client.request(b"POST", b"/other", headers=[(b"content-length", b"100000")], end=False)
        client.upload(other.streamId, b"o" * 100000)
        await other.done  # (stalled, it would time out)
        self.assertEqual(other.status, 200)

    async def test_resetStreamGivesBackConnectionWindow(self):
        """
        Bytes a stream held unacknowledged (paused) count against the
        connection window; when the stream is reset they must be given
        back.  Today _forget() drops `unacknowledged`: the connection's
        window is lost for good and no upload on it ever finishes.
        """
        client, stalled = await self._stallOneUpload()
        client.cancel(stalled.streamId)
        await _sleep(0.2)
        other = client.request(b"POST", b"/other", headers=[(b"content-length", b"100000")], end=False)
        client.upload(other.streamId, b"o" * 100000)
        await other.done  # (stalled, it would time out)
        self.assertEqual(other.status, 200)


class ResetBudgetTests(HTTP2Case):
    async def test_serverResetByMalformedTrailersIsBudgeted(self):
        """
        Rapid reset without RST_STREAM: each stream is started (a member
        attempt for a body over 64 KiB) and then reset by us because its
        trailers carry a pseudo-header.  The reset budget only counts the
        client's RST_STREAM, so this goes unchecked.
        """
        (member,) = await self.startH2("app1", floods=FloodLimits(resets=(5, 1.0)))
        client = await self.client()
        fields = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":path", b"/hold"),
            (b":authority", b"localhost"),
            (b"content-length", b"100000"),
        ]
        for batch in range(6):
            for _ in range(20):
                streamId = client.h2.get_next_available_stream_id()
                # (Raw frames: our client's state machine would take the
                # stream as open; keep it in step by opening it.)
                client.h2.send_headers(streamId, fields)
                client.h2.send_headers(streamId, [(b":x", b"1")], end_stream=True)
            client.flush()
            await _sleep(0.1)
            if client.closed:
                break
        await waitUntil(lambda: client.goAways(), reactor)
        self.assertIn(
            ErrorCodes.ENHANCE_YOUR_CALM,
            [code for _, code in client.goAways()],
            f"120 started-then-reset streams went unbudgeted; member connections: {member.connections}",
        )


class ExceptionSafetyTests(HTTP2Case):
    async def test_answerOnStreamResetInSameRead(self):
        """
        DATA that passes max_body and the client's RST_STREAM for the same
        stream, in one read: the library has closed the stream by the time
        we answer 413, send_headers raises StreamClosedError, and it
        escapes dataReceived: the whole connection (here with another
        stream under way) is dropped, with a traceback logged.
        """
        (member,) = await self.startH2("app1", maxBody=1000)
        client = await self.client()
        held = client.request(b"GET", b"/hold")
        await waitUntil(lambda: member.hold.held, reactor)
        post = client.request(b"POST", b"/echo", end=False)
        await _sleep(0.2)
        data = DataFrame(post.streamId)
        data.data = b"d" * 2000
        reset = RstStreamFrame(post.streamId)
        reset.error_code = ErrorCodes.CANCEL
        client.write(data.serialize() + reset.serialize())
        await _sleep(0.3)
        member.hold.release()
        await held.done
        self.flushLoggedErrors()
        self.assertFalse(client.closed, "the connection was dropped")
        self.assertEqual(held.status, 200)


class TranslateReviewTests(SynchronousTestCase):
    def test_pseudoHeaderAfterTe(self):
        """
        RFC 9113 8.3: every pseudo-header field comes before the regular
        ones.  A `te: trailers` field is not counted as a regular field by
        the check, so `:path` after it is accepted.
        """
        fields = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"x"),
            (b"te", b"trailers"),
            (b":path", b"/late"),
        ]
        self.assertRaises(HTTPError, requestHeadOf, fields, True, Limits())


class BodyRateTests(HTTP2Case):
    async def test_bodyMinRateHoldsPerStream(self):
        """
        body_min_rate (and body_deadline) bound a dripping request body on
        HTTP/1.1 (BodyReader); H2Stream only restarts body_timeout on every
        DATA frame, so a stream that drips a byte just inside body_timeout
        holds its exchange -- and, for a body over 64 KiB, a member
        connection -- for ever (100 of them per connection).
        """
        await self.startH2("app1", bodyTimeout=0.5, minBodyRate=1000.0)
        client = await self.client()
        drip = client.request(b"POST", b"/echo", headers=[(b"content-length", b"100000")], end=False)
        for _ in range(10):
            if drip.done.called:
                break
            client.sendBody(drip.streamId, b"x", end=False)
            await _sleep(0.3)
        self.assertTrue(
            drip.done.called,
            "a body dripping 3 bytes a second at body_min_rate = 1000 was never cut off",
        )


class EarlyAnswerTests(HTTP2Case):
    async def test_tooLargeStreamedBodyStopsTheUpload(self):
        """
        A streamed body that passes max_body gets 413, but no RST_STREAM
        (NO_ERROR): _tooLarge clears bodyExpected before finishing, so the
        client is never told to stop, and every further DATA frame is
        read and acknowledged (HTTP/1.1 closes the connection instead).
        """
        await self.startH2("app1", maxBody=1000)
        client = await self.client()
        big = client.request(b"POST", b"/echo", end=False)
        client.sendBody(big.streamId, b"b" * 2000, end=False)
        await big.done
        self.assertEqual(big.status, 413)
        await waitUntil(lambda: big.reset is not None, reactor)
        self.assertEqual(big.reset, ErrorCodes.NO_ERROR)


class _Log:
    def __init__(self):
        self.statuses = []

    def request(self, request, status, *rest):
        self.statuses.append((request.target, status))

    def refused(self, *args):
        pass


class LostResetTests(HTTP2Case):
    async def test_resetWhileWindowOpensReachesTheExchange(self):
        """
        A WINDOW_UPDATE and the client's RST_STREAM for a stream whose
        response waits, in one read: the WindowUpdated event comes first,
        sendSome() meets StreamClosedError and only _forget()s the stream
        (removing it from `streams`), so the StreamReset event finds no
        stream and the exchange is never told: it reads the member's whole
        response (its pauser was resumed) and logs 200, not 499.
        """
        from hyperframe.frame import WindowUpdateFrame

        await self.startH2("app1")
        log = self.front.accessLog = _Log()
        client = await self.client(acknowledge=False)
        stalled = client.request(b"GET", b"/large?size=%d" % (8 * MiB))
        await waitUntil(lambda: len(stalled.body) >= 65535, reactor)
        await _sleep(0.2)
        frames = b""
        for streamId in (stalled.streamId, 0):
            update = WindowUpdateFrame(streamId)
            update.window_increment = 1000
            frames += update.serialize()
        reset = RstStreamFrame(stalled.streamId)
        reset.error_code = ErrorCodes.CANCEL
        client.write(frames + reset.serialize())
        await waitUntil(lambda: log.statuses, reactor)
        self.assertEqual(log.statuses, [(b"/large?size=%d" % (8 * MiB), 499)])
