"""
Tests for the HTTP/2 conformance corpus (L{playbalancer.testing.h2corpus})
itself: its frames are built as intended, its classifier names the right
outcome, its cases are complete, and its runner finishes every case
against a small HTTP/2 server made with the C{h2} library.
"""

from __future__ import annotations

import socket
import ssl
import struct
import tempfile
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from hpack import Decoder
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hyperframe.frame import DataFrame, Frame, HeadersFrame, PingFrame, SettingsFrame
from twisted.trial.unittest import TestCase

from playbalancer.testing import h2frames as f
from playbalancer.testing.certs import writeSelfSigned
from playbalancer.testing.h2answer import Outcome, ServerView
from playbalancer.testing.h2corpus import CASES, runCorpus
from playbalancer.testing.h2probe import Context, Send, WaitEnd, WaitHeaders, Window


def parseAll(raw):
    """
    Every frame in C{raw}, parsed with hyperframe.
    """
    frames = []
    while raw:
        frame, length = Frame.parse_frame_header(memoryview(raw[:9]))
        frame.parse_body(memoryview(raw[9:9 + length]))
        frames.append(frame)
        raw = raw[9 + length:]
    return frames


def caseNamed(name):
    return [case for case in CASES if case.name == name][0]


def sentBytes(case, settings=None):
    """
    The bytes C{case} sends against a server with C{settings}.
    """
    ctx = Context("localhost:443", "https", settings or {})
    out = []
    for step in case.steps(ctx):
        if isinstance(step, Send):
            step = step.payload
        if isinstance(step, bytes):
            out.append(step)
    return b"".join(out)


class FrameBuildingTests(TestCase):
    """
    The frame builders make the frames they say.
    """

    def test_validRequestDecodes(self):
        """
        A case's valid request is a HEADERS frame hyperframe decodes, with a
        field block hpack decodes to the request asked for.
        """
        frames = parseAll(sentBytes(caseNamed("stream-id/skipping")))
        self.assertEqual(len(frames), 1)
        self.assertIsInstance(frames[0], HeadersFrame)
        self.assertEqual(frames[0].stream_id, 7)
        self.assertEqual(frames[0].flags, {"END_STREAM", "END_HEADERS"})
        fields = Decoder().decode(frames[0].data)
        self.assertEqual(fields, [(":method", "GET"), (":scheme", "https"),
                                  (":path", "/"), (":authority", "localhost:443")])

    def test_paddedData(self):
        """
        The padded DATA case sends a PADDED frame hyperframe reads back.
        """
        frames = parseAll(sentBytes(caseNamed("data/padded")))
        self.assertIsInstance(frames[1], DataFrame)
        self.assertEqual((frames[1].data, frames[1].pad_length), (b"hello", 8))

    def test_pingBadLength(self):
        """
        The short PING really is 6 octets long.
        """
        raw = sentBytes(caseNamed("ping/bad-length"))
        self.assertEqual(struct.unpack(">I", b"\0" + raw[:3])[0], 6)
        self.assertEqual((raw[3], len(raw)), (f.PING, 9 + 6))

    def test_settingsBadLength(self):
        """
        The bad SETTINGS has a length that is not a multiple of 6.
        """
        raw = sentBytes(caseNamed("settings/bad-length"))
        self.assertEqual((raw[3], int.from_bytes(raw[:3], "big") % 6), (f.SETTINGS, 3))

    def test_dataTooLarge(self):
        """
        The oversized DATA frame is one octet over the server's maximum.
        """
        raw = sentBytes(caseNamed("frame-size/data-too-large"), {f.MAX_FRAME_SIZE: 20000})
        frames = parseAll(raw)
        self.assertEqual(len(frames[1].data), 20001)

    def test_reservedBit(self):
        """
        rawFrame sets the reserved bit only when asked.
        """
        self.assertEqual(f.rawFrame(f.PING, 0, 0, b"", reserved=True)[5] & 0x80, 0x80)
        self.assertEqual(f.rawFrame(f.PING, 0, 0, b"")[5], 0)

    def test_hpackInteger(self):
        """
        HPACK integers follow RFC 7541 C.1's examples.
        """
        self.assertEqual(f.hpackInteger(10, 5), b"\x0a")
        self.assertEqual(f.hpackInteger(1337, 5), b"\x1f\x9a\x0a")
        self.assertEqual(f.hpackInteger(42, 8), b"\x2a")

    def test_literalFieldDecodes(self):
        """
        A valid literal field decodes; an invalid name goes out unchanged.
        """
        self.assertEqual(Decoder().decode(f.literalField("x-a", "b")), [("x-a", "b")])
        self.assertIn(b"X-Upper", f.literalField("X-Upper", "1"))

    def test_huffmanPaddingIsBroken(self):
        """
        The Huffman cases start from the real code of 'a', so only their
        padding (or EOS) is wrong.
        """
        self.assertEqual(HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode(b"a"),
                         b"\x1f")
        for name in ("hpack/huffman-eos", "hpack/huffman-padding-too-long",
                     "hpack/huffman-padding-zeros"):
            block = parseAll(sentBytes(caseNamed(name)))[0].data
            self.assertRaises(Exception, Decoder().decode, block)

    def test_continuationFlood(self):
        """
        The CONTINUATION flood is thousands of frames, none ending the block.
        """
        frames = parseAll(sentBytes(caseNamed("continuation/flood")))
        self.assertGreater(len(frames), 5000)
        self.assertFalse(any("END_HEADERS" in frame.flags for frame in frames))

    def test_rapidReset(self):
        """
        The rapid reset opens and cancels thousands of streams.
        """
        frames = parseAll(sentBytes(caseNamed("attack/rapid-reset")))
        resets = [frame for frame in frames if frame.type == 3]
        self.assertGreaterEqual(len(resets), 1000)


class ClassifierTests(TestCase):
    """
    L{ServerView} and L{Outcome} name what the server did.
    """

    def outcomeOf(self, *frames, probe=1, **flags):
        view = ServerView()
        for raw in frames:
            for frame in _split(raw):
                view.receive(frame)
        outcome = Outcome()
        outcome.goaway = view.goaway[1] if view.goaway else None
        outcome.status = view.statuses.get(probe)
        outcome.ended = probe in view.ended
        outcome.rst = view.resets.get(probe)
        outcome.windowViolation = view.windowViolation
        for name, value in flags.items():
            setattr(outcome, name, value)
        return outcome

    def test_goaway(self):
        outcome = self.outcomeOf(f.goaway(0, f.ERROR_CODES["PROTOCOL_ERROR"]), closed=True)
        self.assertEqual(outcome.label(), "GOAWAY PROTOCOL_ERROR")
        self.assertTrue(outcome.matches(["GOAWAY:PROTOCOL_ERROR"]))
        self.assertFalse(outcome.matches(["GOAWAY:FRAME_SIZE_ERROR", "closed", "4xx"]))

    def test_rstStream(self):
        outcome = self.outcomeOf(f.rstStream(1, f.ERROR_CODES["REFUSED_STREAM"]))
        self.assertEqual(outcome.label(), "RST_STREAM REFUSED_STREAM")
        self.assertTrue(outcome.matches(["RST:REFUSED_STREAM"]))
        self.assertFalse(outcome.matches(["RST:PROTOCOL_ERROR", "200"]))

    def test_response(self):
        """
        A 200 with its body and END_STREAM matches "200"; a 400 matches
        "4xx" but not "200".
        """
        head = f.encodeFields([(":status", "200")])
        ok = self.outcomeOf(f.headers(1, head, endStream=False), f.data(1, b"ok"))
        self.assertEqual(ok.label(), "200")
        self.assertTrue(ok.matches(["200"]))
        bad = self.outcomeOf(f.headers(1, f.encodeFields([(":status", "400")])))
        self.assertTrue(bad.matches(["4xx"]))
        self.assertFalse(bad.matches(["200", "5xx"]))

    def test_unfinishedResponse(self):
        """
        A response head without its end is not a "200".
        """
        outcome = self.outcomeOf(f.headers(1, f.encodeFields([(":status", "200")]),
                                           endStream=False), timedOut=True)
        self.assertEqual(outcome.label(), "200 (unfinished), timeout")
        self.assertFalse(outcome.matches(["200"]))
        self.assertTrue(outcome.matches(["timeout"]))

    def test_informationalSkipped(self):
        """
        A 100 Continue is not the final status.
        """
        outcome = self.outcomeOf(
            f.headers(1, f.encodeFields([(":status", "100")]), endStream=False),
            f.headers(1, f.encodeFields([(":status", "204")])))
        self.assertEqual(outcome.status, 204)

    def test_closedWithoutGoaway(self):
        outcome = self.outcomeOf(closed=True)
        self.assertEqual(outcome.label(), "closed")
        self.assertTrue(outcome.matches(["closed"]))
        withGoaway = self.outcomeOf(f.goaway(0, 1), closed=True)
        self.assertFalse(withGoaway.matches(["closed"]))

    def test_dataBeyondWindow(self):
        """
        DATA beyond the client's window matches nothing.
        """
        view = ServerView(autoWindow=False, initialWindow=0)
        for frame in _split(f.headers(1, f.encodeFields([(":status", "200")]),
                                      endStream=False) + f.data(1, b"ok")):
            view.receive(frame)
        self.assertIsNotNone(view.windowViolation)

    def test_answersServer(self):
        """
        The client acknowledges the server's SETTINGS and PING and gives
        back the window a DATA frame used.
        """
        view = ServerView()
        reply = view.receive((f.SETTINGS, 0, 0, struct.pack(">HI", 3, 100)))
        self.assertIsInstance(parseAll(reply)[0], SettingsFrame)
        self.assertEqual(view.serverSettings, {3: 100})
        pong = parseAll(view.receive((f.PING, 0, 0, b"abcdefgh")))[0]
        self.assertIsInstance(pong, PingFrame)
        self.assertEqual((pong.opaque_data, pong.flags), (b"abcdefgh", {"ACK"}))
        updates = parseAll(view.receive((f.DATA, 0, 1, b"x" * 10)))
        self.assertEqual([(u.stream_id, u.window_increment) for u in updates],
                         [(0, 10), (1, 10)])


def _split(raw):
    reader = f.FrameReader()
    reader.feed(raw)
    return reader.frames()


class CorpusShapeTests(TestCase):
    """
    The corpus is complete enough to be worth running.
    """

    def test_enoughCases(self):
        self.assertGreaterEqual(len(CASES), 70)

    def test_uniqueNames(self):
        names = [case.name for case in CASES]
        self.assertEqual(len(names), len(set(names)))

    def test_everyCaseDescribed(self):
        """
        Every case names its section, says what it sends and accepts at
        least one known kind of outcome.
        """
        known = ("GOAWAY", "RST", "closed", "blocked", "timeout", "PING_ACK",
                 "SETTINGS_ACK", "200", "4xx")
        for case in CASES:
            self.assertTrue(case.section.startswith(("RFC", "CVE")), case.name)
            self.assertTrue(case.summary, case.name)
            self.assertIn(case.level, ("MUST", "SHOULD", "record"), case.name)
            self.assertTrue(case.accept, case.name)
            for token in case.accept:
                self.assertIn(token.split(":")[0], known, case.name)

    def test_sectionsCovered(self):
        """
        Cases exist for each area the corpus promises.
        """
        prefixes = {case.name.split("/")[0] for case in CASES}
        for area in ("preface", "frame", "frame-size", "state", "stream-id", "streams",
                     "priority", "data", "headers", "rst", "settings", "ping", "goaway",
                     "window-update", "flow", "continuation", "hpack", "head", "attack"):
            self.assertIn(area, prefixes)

    def test_stepsKnown(self):
        """
        Every case's steps are things the runner knows how to play.
        """
        settings = {f.MAX_CONCURRENT_STREAMS: 10, f.MAX_FRAME_SIZE: 16384}
        for case in CASES:
            for step in case.steps(Context("localhost", "https", settings)):
                self.assertIsInstance(step, (bytes, Send, WaitEnd, WaitHeaders, Window))


class ToyH2Server:
    """
    A minimal HTTP/2 server from the C{h2} library's server side, one
    thread per connection, answering every request 200 "ok" once its body
    has ended.  Not a conformant server: only something to run the corpus
    against.
    """

    def __init__(self, tlsContext=None):
        self.tlsContext = tlsContext
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.connections = []
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self.stopping = True
        self.listener.close()
        for conn in list(self.connections):
            try:
                conn.close()
            except OSError:
                pass

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            conn.settimeout(10)
            if self.tlsContext is not None:
                conn = self.tlsContext.wrap_socket(conn, server_side=True)
                self.connections.append(conn)
            h2conn = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=False))
            h2conn.initiate_connection()
            conn.sendall(h2conn.data_to_send())
            pending = {}
            while True:
                received = conn.recv(65536)
                if not received:
                    return
                try:
                    events = h2conn.receive_data(received)
                except h2.exceptions.ProtocolError:
                    conn.sendall(h2conn.data_to_send())
                    return
                for event in events:
                    if isinstance(event, h2.events.StreamEnded):
                        h2conn.send_headers(event.stream_id, [(":status", "200")])
                        pending[event.stream_id] = b"ok\n"
                self._flush(h2conn, pending)
                conn.sendall(h2conn.data_to_send())
        except (OSError, ssl.SSLError, h2.exceptions.H2Error):
            return
        finally:
            conn.close()

    def _flush(self, h2conn, pending):
        for streamId, body in list(pending.items()):
            try:
                size = min(len(body), h2conn.local_flow_control_window(streamId))
                h2conn.send_data(streamId, body[:size], end_stream=size == len(body))
            except h2.exceptions.H2Error:
                del pending[streamId]
                continue
            if size == len(body):
                del pending[streamId]
            else:
                pending[streamId] = body[size:]


class RunCorpusTests(TestCase):
    """
    The runner plays every case over a real socket and records an outcome
    for each, within a bound; the toy server's conformance is not asserted.
    """

    def startServer(self, tlsContext=None):
        server = ToyH2Server(tlsContext)
        self.addCleanup(server.stop)
        return server

    def test_wholeCorpusCleartext(self):
        """
        Against the toy server over h2c, every case ends with an outcome
        (no runner error) and the whole run stays within a bound.
        """
        server = self.startServer()
        start = time.monotonic()
        results = runCorpus("127.0.0.1", server.port, tls=False, timeout=0.5)
        elapsed = time.monotonic() - start
        self.assertEqual([r.case.name for r in results], [c.name for c in CASES])
        for result in results:
            self.assertIsNone(result.outcome.error, result.case.name)
            self.assertNotEqual(result.outcome.label(), "nothing", result.case.name)
            self.assertIn(result.passed, (True, False, None))
        self.assertLess(elapsed, len(CASES) * 0.5 * 4)
        # A runner that misread every answer would pass none of these.
        passed = {r.case.name for r in results if r.passed}
        self.assertIn("ping/answered", passed)
        self.assertIn("data/stream-0", passed)
        self.assertIn("head/cookies-split", passed)

    def test_tls(self):
        """
        Over TLS with ALPN h2 the runner negotiates h2 and gets answers.
        """
        directory = tempfile.mkdtemp()
        keyPath, certPath = writeSelfSigned(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certPath, keyPath)
        context.set_alpn_protocols(["h2"])
        server = self.startServer(context)
        cases = [caseNamed("stream-id/skipping"), caseNamed("data/stream-0")]
        results = runCorpus("127.0.0.1", server.port, tls=True, timeout=2.0, cases=cases)
        self.assertEqual([r.outcome.label() for r in results],
                         ["200", "GOAWAY PROTOCOL_ERROR"])
