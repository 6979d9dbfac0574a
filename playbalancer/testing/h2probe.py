"""
Runs one HTTP/2 conformance case over a real connection: plain blocking
sockets with timeouts (non-blocking plus C{select} underneath), TLS with
ALPN C{h2} through the C{ssl} module (the certificate is not verified: a
test bench) or prior-knowledge h2c on cleartext.

A case's steps are a generator of L{Send}, L{WaitEnd}, L{WaitHeaders} and
L{Window} items given a L{Context}; L{runCase} plays them and returns an
L{Outcome}.
"""

from __future__ import annotations

import select
import socket
import ssl
import time

from hpack import Encoder

from playbalancer.testing import h2frames as f
from playbalancer.testing.h2answer import Outcome, ServerView

__all__ = ["Case", "Context", "NotApplicable", "Send", "WaitEnd", "WaitHeaders",
           "Window", "runCase", "connectionError", "streamError", "MALFORMED"]

CHUNK = 16384

#: The client's SETTINGS unless a case says otherwise: no server push.
CLIENT_SETTINGS = ((f.ENABLE_PUSH, 0),)


def connectionError(code):
    """
    The tokens of a connection error: GOAWAY with C{code}, or a close
    without GOAWAY (RFC 9113 section 5.4.1 says SHOULD send GOAWAY).
    """
    return ("GOAWAY:" + code, "closed")


def streamError(code):
    """
    The tokens of a stream error: RST_STREAM with C{code}, or the same
    as a connection error (an endpoint MAY treat a stream error as a
    connection error, RFC 9113 section 5.4).
    """
    return ("RST:" + code,) + connectionError(code)


#: A malformed request (RFC 9113 section 8.1.1): a stream error of type
#: PROTOCOL_ERROR, which a server MAY precede by an HTTP response; a 4xx
#: answer is that response, and is accepted as the safe equivalent.
MALFORMED = streamError("PROTOCOL_ERROR") + ("4xx",)


class Case:
    """
    One conformance case.

    @ivar name: unique, C{section/what}.
    @ivar section: where the rule is, e.g. C{"RFC 9113 6.5"}.
    @ivar summary: what the client sends and what the RFC requires.
    @ivar steps: callable taking a L{Context}, giving the steps.
    @ivar accept: the acceptable outcome tokens (L{h2answer}).
    @ivar probe: the stream whose fate decides the case, C{"ping"} or
        C{"settings"} for an acknowledgement, or C{None} for the
        connection's (GOAWAY or close).
    @ivar until: C{"answer"} to stop at the probe stream's end, C{"error"}
        to wait for an error even after a response.
    @ivar level: C{"MUST"} or C{"SHOULD"} for RFC rules; C{"record"} for
        the attack classes, where no RFC text decides and any safe outcome
        is accepted.
    """

    def __init__(self, name, section, summary, steps, accept, probe=1,
                 until="answer", level="MUST", preface=True,
                 clientSettings=CLIENT_SETTINGS, autoWindow=True, timeoutFactor=1.0):
        self.name = name
        self.section = section
        self.summary = summary
        self.steps = steps
        self.accept = tuple(accept)
        self.probe = probe
        self.until = until
        self.level = level
        self.preface = preface
        self.clientSettings = tuple(clientSettings)
        self.autoWindow = autoWindow
        self.timeoutFactor = timeoutFactor

    def __repr__(self):
        return "<Case %s (%s)>" % (self.name, self.section)


def caseList():
    """
    A list of cases and a decorator C{register(name, section, accept,
    **options)} that adds the decorated steps function to it as a
    L{Case}, its docstring as the summary.
    """
    cases = []

    def register(name, section, accept, **options):
        def add(steps):
            summary = " ".join((steps.__doc__ or "").split())
            cases.append(Case(name, section, summary, steps, accept, **options))
            return steps
        return add

    return cases, register


class NotApplicable(Exception):
    """
    Raised by a case's steps when the server's settings make the case
    meaningless (e.g. it allows the largest frame there is).
    """


class Send:
    """
    Send C{payload}; the client reads meanwhile unless C{read} is false
    (a client that does not read, for the flood cases).
    """

    def __init__(self, payload, read=True):
        self.payload = payload
        self.read = read


class WaitEnd:
    """
    Wait until the response on C{streamId} ends, or the stream or the
    connection fails.
    """

    def __init__(self, streamId):
        self.streamId = streamId


class WaitHeaders:
    """
    Wait until the response head on C{streamId} arrives, or the stream or
    the connection fails.
    """

    def __init__(self, streamId):
        self.streamId = streamId


class Window:
    """
    Tell the client's bookkeeping that it has just sent
    INITIAL_WINDOW_SIZE C{size} (the case sends the SETTINGS frame itself).
    """

    def __init__(self, size):
        self.size = size


class Context:
    """
    What a case's steps may use: the request's C{authority} and C{scheme},
    the connection's HPACK C{encoder} and the server's first SETTINGS.
    Steps that only know the probe stream once they see the settings set
    C{probe}.
    """

    def __init__(self, authority, scheme, serverSettings):
        self.authority = authority
        self.scheme = scheme
        self.encoder = Encoder()
        self.serverSettings = serverSettings
        self.probe = None

    def setting(self, ident, default):
        """
        The server's value of setting C{ident}, or C{default}.
        """
        return self.serverSettings.get(ident, default)

    @property
    def maxFrameSize(self):
        """
        The largest frame payload the server accepts.
        """
        return self.setting(f.MAX_FRAME_SIZE, 16384)

    def fields(self, method="GET", path="/", extra=(), **pseudo):
        """
        The fields of a request to this server; C{pseudo} replaces
        C{authority} or C{scheme} (C{None} leaves one out).
        """
        return f.requestFields(method, path, pseudo.get("authority", self.authority),
                               pseudo.get("scheme", self.scheme), extra)

    def block(self, fields):
        """
        C{fields} encoded with the connection's encoder.
        """
        return f.encodeFields(fields, self.encoder)

    def request(self, streamId, method="GET", path="/", extra=(), endStream=True,
                **pseudo):
        """
        A HEADERS frame with a whole request head (see L{fields}).
        """
        block = self.block(self.fields(method, path, extra, **pseudo))
        return f.headers(streamId, block, endStream=endStream)


class _Connection:
    """
    One client connection: sends while reading, reads until a condition
    holds, and feeds every frame to a L{ServerView}.
    """

    def __init__(self, sock, view):
        self.sock = sock
        self.view = view
        self.reader = f.FrameReader()
        self.replies = bytearray()
        self.closed = False
        self.blocked = False

    def send(self, payload, deadline, stall, read=True):
        """
        Send C{payload}; C{False} if the connection closed or the server
        read nothing for C{stall} seconds (then C{blocked}), or C{deadline}
        passed.
        """
        pending = memoryview(payload)
        lastProgress = time.monotonic()
        while pending and not self.closed:
            now = time.monotonic()
            if now > deadline or now - lastProgress > stall:
                self.blocked = True
                return False
            readable, writable = self._wait(read, True, 0.05)
            if readable:
                self._receive()
            if writable:
                sent = self._write(pending[:CHUNK])
                if sent:
                    pending = pending[sent:]
                    lastProgress = time.monotonic()
        return not self.closed

    def pump(self, condition, deadline):
        """
        Read (and answer) until C{condition()} holds, the connection closes
        or C{deadline} passes; C{True} if the condition held.
        """
        while not condition():
            if self.closed or time.monotonic() > deadline:
                return condition()
            if self.replies:
                replies, self.replies = bytes(self.replies), bytearray()
                self._sendQuietly(replies, deadline)
                continue
            readable, _ = self._wait(True, False, min(0.2, max(0.0, deadline - time.monotonic())))
            if readable:
                self._receive()
        return True

    def _sendQuietly(self, payload, deadline):
        pending = memoryview(payload)
        while pending and not self.closed and time.monotonic() < deadline:
            readable, writable = self._wait(True, True, 0.05)
            if readable:
                self._receive()
            if writable:
                pending = pending[self._write(pending[:CHUNK]):]

    def _wait(self, read, write, timeout):
        if read and isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True, False
        try:
            readable, writable, _ = select.select(
                [self.sock] if read else [], [self.sock] if write else [], [], timeout)
        except (OSError, ValueError):
            self.closed = True
            return False, False
        return bool(readable), bool(writable)

    def _write(self, chunk):
        try:
            return self.sock.send(chunk)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            return 0
        except (OSError, ssl.SSLError) as e:
            self._lost(e)
            return 0

    def _receive(self):
        while not self.closed:
            try:
                received = self.sock.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return
            except (OSError, ssl.SSLError) as e:
                self._lost(e)
                return
            if not received:
                self.closed = True
                return
            self.reader.feed(received)
            for frame in self.reader.frames():
                self.replies += self.view.receive(frame)

    def _lost(self, error):
        self.closed = True
        self.view.note("connection lost: %s" % (type(error).__name__,))


def connect(host, port, tls, authority, timeout):
    """
    A connected socket to C{host}:C{port}, TLS with ALPN h2 when C{tls}.

    @raise ValueError: if TLS does not negotiate h2.
    """
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        serverName = authority.rsplit(":", 1)[0] if authority else None
        try:
            sock = context.wrap_socket(sock, server_hostname=serverName)
        except (OSError, ssl.SSLError):
            sock.close()
            raise
        if sock.selected_alpn_protocol() != "h2":
            chosen = sock.selected_alpn_protocol()
            sock.close()
            raise ValueError("ALPN chose %r, not h2" % (chosen,))
    sock.setblocking(False)
    return sock


def _finished(case, probe, view, conn, baseline):
    """
    Whether the outcome of C{case} (whose probe is C{probe}) is decided.
    """
    if conn.closed or view.goaway is not None:
        return True
    if probe == "ping":
        return len(view.pingAcks) > baseline["pings"]
    if probe == "settings":
        return view.settingsAcks > baseline["settings"]
    if probe is None:
        return False
    if probe in view.resets:
        return True
    return case.until == "answer" and probe in view.ended


def runCase(case, host, port, tls=True, authority="localhost", timeout=2.0):
    """
    Play C{case} against the server at C{host}:C{port}.

    @return: the L{Outcome}; the case passes when it matches its tokens.
    """
    outcome = Outcome()
    wait = timeout * case.timeoutFactor
    initialWindow = dict(case.clientSettings).get(f.INITIAL_WINDOW_SIZE, f.DEFAULT_WINDOW)
    view = ServerView(autoWindow=case.autoWindow, initialWindow=initialWindow)
    try:
        sock = connect(host, port, tls, authority, timeout)
    except (OSError, ssl.SSLError, ValueError) as e:
        outcome.error = str(e) or type(e).__name__
        return outcome
    conn = _Connection(sock, view)
    try:
        probe = _play(case, conn, view, outcome, wait, authority,
                      "https" if tls else "http")
    finally:
        sock.close()
    outcome.closed = conn.closed
    outcome.blocked = conn.blocked
    outcome.notes = list(view.notes)
    outcome.windowViolation = view.windowViolation
    outcome.notes.append("server answered %d stream(s), reset %d" % (
        len(view.statuses), len(view.resets)))
    if view.goaway:
        outcome.goaway = view.goaway[1]
    if isinstance(probe, int):
        outcome.status = view.statuses.get(probe)
        outcome.ended = probe in view.ended
        outcome.rst = view.resets.get(probe)
    return outcome


def _play(case, conn, view, outcome, wait, authority, scheme):
    """
    Play C{case}'s steps and wait for its outcome; return its probe.
    """
    start = time.monotonic()
    if case.preface:
        conn.send(f.PREFACE + f.settings(case.clientSettings), start + wait, wait)
        if not conn.pump(lambda: view.settingsFrames > 0, start + wait):
            view.note("no SETTINGS from the server")
        conn.pump(lambda: not conn.replies, start + wait)
    baseline = {"pings": len(view.pingAcks), "settings": view.settingsAcks}
    context = Context(authority, scheme, dict(view.serverSettings))
    stepsDone = False
    try:
        for step in case.steps(context):
            if conn.closed or (view.goaway and view.goaway[1] != "NO_ERROR"):
                break
            deadline = time.monotonic() + wait
            if isinstance(step, bytes):
                step = Send(step)
            if isinstance(step, Send):
                if not conn.send(step.payload, deadline, wait, step.read):
                    break
            elif isinstance(step, (WaitEnd, WaitHeaders)):
                sid = step.streamId
                done = (lambda: sid in view.ended) if isinstance(step, WaitEnd) \
                    else (lambda: sid in view.statuses)
                conn.pump(lambda: done() or sid in view.resets or view.goaway
                          or conn.closed, deadline)
            elif isinstance(step, Window):
                view.initialWindow = max(view.initialWindow, step.size)
        else:
            stepsDone = True
    except NotApplicable as e:
        outcome.notApplicable = str(e)
        return None
    probe = case.probe if context.probe is None else context.probe
    if not stepsDone and not (conn.closed or view.goaway):
        view.note("steps stopped early")
    finished = conn.pump(lambda: _finished(case, probe, view, conn, baseline),
                         time.monotonic() + wait)
    outcome.timedOut = not finished and not conn.closed
    outcome.pingAck = case.probe == "ping" and len(view.pingAcks) > baseline["pings"]
    outcome.settingsAck = case.probe == "settings" and view.settingsAcks > baseline["settings"]
    return probe
