#!/usr/bin/env python3
"""
The response-side corpus: a scripted member sends odd but real responses
(and a few broken ones), and each is run through playbalancer, HAProxy and
nginx in turn.  For every case the script records what the client got
(interim and final status lines, headers of note, body, stray bytes,
whether the connection closed, how long it took), then sends a normal
follow-up request to see whether the balancer still uses the member, and
whether it reused the member connection.

    python benchmarks/response_corpus.py                     # all three, about 3 minutes
    python benchmarks/response_corpus.py --only playbalancer --match 304 -v
    python benchmarks/response_corpus.py --json benchmarks/results/response-corpus.json

Each balancer has two members: the scripted one ("primary") and a plain
one that answers everything with 200 "backup" (playbalancer ``standby =
true``, HAProxy ``backup``, nginx ``backup``).  A follow-up answered by
"backup" means the balancer took the primary out of rotation.  Every case
gets a freshly started balancer, so nothing (a member marked down, a
pooled connection) carries over from one case to the next.

Run it with the Python that has playbalancer installed (``--python``
names another; playbalancer runs as ``twistd -n --pidfile= playbalancer
--config FILE`` under that interpreter).  Everything listens on 127.0.0.1, on ports
22000-22999; config files and logs go in a temporary directory (removed
unless --keep); every process the script starts is a child, stopped by
its PID.  It installs nothing: a missing haproxy/nginx gives a "skipped"
column.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus_compare  # noqa: E402  (its plumbing: ports, children, binaries)
from corpus_compare import findBinary, log, stopChild, tail, waitListening  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PORT_RANGE = range(22000, 23000)
BALANCERS = ("playbalancer", "haproxy", "nginx")
#: Every balancer gets the same member timeouts (seconds).
MEMBER_TIMEOUT = 5
#: The client gives up on a response after this long (longer than the
#: balancers' member timeouts, so their 504s show).
CLIENT_TIMEOUT = 8.0
#: After a complete final response: how long to watch for stray bytes or a
#: close.
LINGER = 0.4




# ---------------------------------------------------------------------------
# The cases


@dataclass
class Case:
    """
    One scripted response.

    @ivar response: the exact bytes the member sends, or a tuple of pieces
        sent 0.2 s apart.
    @ivar after: C{"keep"} (the member keeps the connection and reads the
        next request) or C{"close"} (it closes after sending).
    @ivar expect: what RFC 9110/9112 ask of a proxy: C{"pass"} (the final
        response reaches the client, its body whole), C{"refuse"} (502), or
        C{"either"} (the RFC lets a recipient do both).
    @ivar status, body, interim: the final status and body the client must
        get when it passes, and the interim statuses a proxy must forward.
    @ivar notable: header names (lower case) whose fate is reported.
    @ivar repeat: how many times the case's request is sent before the
        follow-up (each on a new client connection).
    @ivar downExpected: whether the member should be out of rotation after
        the case (our policy, not the RFC's).
    """

    name: str
    response: object
    rfc: str
    why: str
    method: str = "GET"
    requestHeaders: Tuple[Tuple[str, str], ...] = ()
    after: str = "keep"
    expect: str = "pass"
    status: Optional[int] = 200
    body: bytes = b"hello"
    interim: Tuple[int, ...] = ()
    notable: Tuple[str, ...] = ()
    repeat: int = 1
    downExpected: bool = False
    forbid: Tuple[str, ...] = ()
    version: str = "HTTP/1.1"

    def pieces(self):
        if isinstance(self.response, tuple):
            return self.response
        return (self.response,)


OK5 = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED_HELLO = b"5\r\nhello\r\n0\r\n\r\n"
ETAG = (("If-None-Match", '"v1"'),)
LONG_REASON = b"OK " + b"very long reason phrase " * 83  # 2,000 bytes

CASES: List[Case] = [
    # Bodiless responses whatever their framing headers say.
    Case(
        "head-te-chunked",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
        "9112 6.1, 6.3(1): TE allowed on a HEAD response; it ends at its head",
        "a HEAD response has no body whatever it announces",
        method="HEAD", body=b"", notable=("transfer-encoding", "content-length"),
    ),
    Case(
        "head-cl",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
        "9110 8.6, 9112 6.3(1): CL on HEAD is the GET's length; no body",
        "the length is information, not framing",
        method="HEAD", body=b"", notable=("content-length",),
    ),
    Case(
        "304-te-chunked",
        b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nTransfer-Encoding: chunked\r\n\r\n',
        "9112 6.1, 6.3(1): TE allowed on 304; it ends at its head",
        "a 304 has no body whatever it announces",
        requestHeaders=ETAG, status=304, body=b"", notable=("etag", "transfer-encoding"),
    ),
    Case(
        "304-cl",
        b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 5\r\n\r\n',
        "9110 8.6, 15.4.5: CL on 304 is the 200's length; no body",
        "a 304 has no body; its CL may be passed on",
        requestHeaders=ETAG, status=304, body=b"", notable=("etag", "content-length"),
    ),
    Case(
        "204-cl0",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        "9110 8.6 (sender MUST NOT), 9112 6.3(1): ends at its head",
        "a recipient reads it as bodiless",
        status=204, body=b"", notable=("content-length",),
    ),
    # Lengths
    Case(
        "cl-duplicate-identical",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "9110 8.6, 9112 6.3(5): identical values MAY be taken as one",
        "one length, stated twice, frames the same body",
        notable=("content-length",),
    ),
    Case(
        "cl-list-identical",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
        "9110 8.6: MAY reject or take as one; 9112 6.3(5): processed as one",
        "the same as two identical lines (9110 5.3)",
        expect="either", notable=("content-length",),
    ),
    Case(
        "cl-leading-zeros",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0005\r\n\r\nhello",
        "9110 8.6: Content-Length = 1*DIGIT",
        "0005 is a valid 5",
        notable=("content-length",),
    ),
    Case(
        "cl-different",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "9112 6.3(5): a proxy MUST close the member connection and answer 502",
        "two lengths: no safe framing",
        expect="refuse", body=b"hello!", notable=("content-length",),
    ),
    Case(
        "cl-and-te",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        + CHUNKED_HELLO,
        "9112 6.3(3): ought to be handled as an error; an intermediary that "
        "forwards it MUST drop CL and use TE",
        "the classic desync shape; refusing cannot be misread",
        expect="either", notable=("content-length", "transfer-encoding"),
        forbid=("content-length",),
    ),
    Case(
        "cl-and-te-x3",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        + CHUNKED_HELLO,
        "as cl-and-te, three times in a row (our policy: then the member is out)",
        "a member that keeps sending malformed heads is broken",
        expect="either", notable=("content-length", "transfer-encoding"), repeat=3,
        forbid=("content-length",),
        downExpected=True,
    ),
    # Bodies framed by the close
    Case(
        "read-until-close",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello, until the close",
        "9112 6.3(8): no CL, no TE: the body ends at the close",
        "the whole body, re-framed for a keep-alive client",
        after="close", body=b"hello, until the close",
        notable=("content-length", "transfer-encoding", "connection"),
    ),
    Case(
        "http10-read-until-close",
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello from 1.0",
        "9112 6.3(8), 9.3: an HTTP/1.0 member, body to the close",
        "as above",
        after="close", body=b"hello from 1.0",
        notable=("content-length", "transfer-encoding", "connection"),
    ),
    # Interim responses
    Case(
        "103-early-hints",
        (b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n", OK5),
        "9110 15.2: a proxy MUST forward 1xx (RFC 8297: 103)",
        "the client can preload while the member works",
        interim=(103,), notable=("link",),
    ),
    Case(
        "103-to-http10-client",
        (b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n", OK5),
        "9110 15.2: a server MUST NOT send a 1xx to an HTTP/1.0 client",
        "an HTTP/1.0 client would take the 103 as the answer",
        version="HTTP/1.0", interim=(),
    ),
    Case(
        "102-processing",
        (b"HTTP/1.1 102 Processing\r\n\r\n", OK5),
        "9110 15.2: a proxy MUST forward 1xx",
        "a 1xx is a 1xx",
        interim=(102,),
    ),
    Case(
        "100-unsolicited",
        (b"HTTP/1.1 100 Continue\r\n\r\n", OK5),
        "9110 15.2: clients MUST parse unexpected 1xx; a proxy forwards them",
        "the final response must follow",
        interim=(),
    ),
    Case(
        "103-x10",
        tuple([b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"] * 10 + [OK5]),
        "9110 15.2: forward 1xx; a proxy may bound them",
        "the final response must come through",
        interim=(), notable=("link",),
    ),
    Case(
        "101-unrequested",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "9110 7.8: a server MUST NOT switch to a protocol the client did not ask for",
        "the proxy asked for no upgrade: the member is broken",
        expect="refuse", status=101, body=b"",
    ),
    # Odd but valid heads
    Case(
        "long-reason",
        b"HTTP/1.1 200 " + LONG_REASON + b"\r\nContent-Length: 5\r\n\r\nhello",
        "9112 4: reason-phrase = 1*(HTAB / SP / VCHAR / obs-text), no limit",
        "a 2,000-byte reason is valid; clients SHOULD ignore it",
    ),
    Case(
        "header-underscore",
        b"HTTP/1.1 200 OK\r\nX_Custom_Header: yes\r\nContent-Length: 5\r\n\r\nhello",
        "9110 5.1, 5.6.2: _ is a tchar, the name is valid",
        "the spoofing risk is in request headers (CGI), not responses",
        notable=("x_custom_header",),
    ),
    Case(
        "chunk-ext-bws",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 ;a=b\r\nhello\r\n0\r\n\r\n",
        "9112 7.1.1: chunk-ext = *( BWS \";\" BWS chunk-ext-name ... )",
        "whitespace before ; is allowed",
    ),
    # Broken heads
    Case(
        "bare-lf",
        b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 5\n\nhello",
        "9112 2.2: a recipient MAY take a lone LF as a line end",
        "either is allowed; refusing keeps one strict parser for both sides",
        expect="either",
    ),
    Case(
        "head-over-64k",
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"X-Pad-%04d: %s\r\n" % (i, b"p" * 90) for i in range(700))
        + b"Content-Length: 5\r\n\r\nhello",
        "9110 2.3: no limit in the RFC; a recipient parses defensively",
        "a 70 KB head is refused by all (limits differ)",
        expect="refuse",
    ),
    # Bytes after a bodiless response on a kept-alive connection
    Case(
        "204-stray-body",
        b"HTTP/1.1 204 No Content\r\n\r\nhello",
        "9112 6.3(1): the 204 ends at its head; the rest is not a response",
        "the stray bytes must not reach the client nor be read as the next response",
        status=204, body=b"",
    ),
    Case(
        "304-stray-body",
        b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 5\r\n\r\nhello',
        "9112 6.3(1): the 304 ends at its head; the rest is not a response",
        "as above",
        requestHeaders=ETAG, status=304, body=b"", notable=("content-length",),
    ),
    Case(
        "204-then-response",
        (b"HTTP/1.1 204 No Content\r\n\r\n",
         b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"),
        "9112 6.3(1); 9112 9.3: a stray response is no answer to the next request",
        "a pooled connection with bytes waiting must not serve the next request",
        status=204, body=b"",
    ),
    Case(
        "head-then-response",
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
         b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"),
        "as above, after a HEAD",
        "as above",
        method="HEAD", body=b"", notable=("content-length",),
    ),
    Case(
        "head-stray-body",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        "9112 6.3(1): a HEAD response ends at its head; the rest is not a response",
        "as above",
        method="HEAD", body=b"", notable=("content-length",),
    ),
]


# ---------------------------------------------------------------------------
# Ports and processes


class Ports(corpus_compare.Ports):
    """
    Ports of 22000-22999, apart from the request corpus's.
    """

    def __init__(self):
        corpus_compare.Ports.__init__(self, PORT_RANGE)


# ---------------------------------------------------------------------------
# The members


class Member:
    """
    A member on 127.0.0.1:C{port}.  It reads request heads (the balancers
    send no request bodies here) and answers C{/case/NAME} with that case's
    exact bytes; anything else gets a plain 200 whose body is the member's
    C{name}.  Every request is recorded with the number of the connection
    it came on.
    """

    def __init__(self, port, name, case=None):
        self.port = port
        self.name = name
        self.case = case
        self.requests = []
        self._lock = threading.Lock()
        self._sockets = []
        self._connections = 0
        self._stopping = False
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self._thread = threading.Thread(target=self._accept, name=name, daemon=True)
        self._thread.start()

    def snapshot(self):
        with self._lock:
            return list(self.requests)

    def _accept(self):
        self._listener.settimeout(0.1)
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self._sockets.append(conn)
                self._connections += 1
                number = self._connections
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _plain(self, method):
        body = self.name.encode()
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body))
        return head if method == "HEAD" else head + body

    def _serve(self, conn, number):
        buffer = b""
        try:
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                    continue
                head, buffer = buffer[:end], buffer[end + 4:]
                lines = head.split(b"\r\n")
                parts = lines[0].split(b" ")
                method = parts[0].decode("latin-1")
                target = parts[1].decode("latin-1") if len(parts) > 1 else ""
                headers = []
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
                with self._lock:
                    self.requests.append({"connection": number, "method": method,
                                          "target": target, "headers": headers})
                case = self.case
                if case is not None and target == "/case/" + case.name:
                    pieces = case.pieces()
                    for index, piece in enumerate(pieces):
                        if index:
                            time.sleep(0.2)
                        conn.sendall(piece)
                    if case.after == "close":
                        conn.shutdown(socket.SHUT_WR)
                        time.sleep(0.2)
                        return
                else:
                    conn.sendall(self._plain(method))
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def stop(self):
        self._stopping = True
        self._thread.join(2)
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


# ---------------------------------------------------------------------------
# The client side: a lenient response reader that knows HEAD


@dataclass
class Response:
    version: str
    status: int
    reason: bytes
    headers: List[Tuple[bytes, bytes]]
    head: bytes
    body: bytes = b""
    framing: str = "none"
    complete: bool = False

    def values(self, name):
        return [v for n, v in self.headers if n.lower() == name]


def readResponses(data, method, closed):
    """
    Read C{data} as responses to one request: any 1xx, then a final one.
    Lines may end in CRLF or a lone LF (to see what a peer passes on).

    @return: (responses, rest): C{rest} are bytes after the final
        response (stray bytes, or what could not be read).
    """
    responses = []
    while data:
        end = data.find(b"\r\n\r\n")
        endLF = data.find(b"\n\n")
        if end < 0 and endLF < 0:
            if not data.startswith(b"HTTP/"[: len(data)]) or closed:
                return responses, data
            return responses, data  # incomplete
        if end < 0 or (0 <= endLF < end):
            head, rest = data[: endLF + 2], data[endLF + 2:]
        else:
            head, rest = data[: end + 4], data[end + 4:]
        lines = head.replace(b"\r\n", b"\n").split(b"\n")
        status = lines[0].split(b" ", 2)
        if len(status) < 2 or not status[0].startswith(b"HTTP/") or not status[1].isdigit():
            return responses, data
        headers = []
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(b":")
            headers.append((name.strip(), value.strip()))
        response = Response(status[0].decode("latin-1"), int(status[1]),
                            status[2] if len(status) > 2 else b"", headers, head)
        responses.append(response)
        data = rest
        code = response.status
        if 100 <= code < 200 and code != 101:
            response.complete = True
            continue
        if method == "HEAD" or code in (101, 204, 304):
            response.complete = True
            return responses, data
        te = b",".join(response.values(b"transfer-encoding")).lower()
        lengths = response.values(b"content-length")
        if b"chunked" in te:
            response.framing = "chunked"
            body, data, complete = _dechunk(data)
            response.body, response.complete = body, complete
            return responses, data
        if lengths:
            response.framing = "length"
            try:
                length = int(lengths[0].split(b",")[0])
            except ValueError:
                return responses, data
            response.body, data = data[:length], data[length:]
            response.complete = len(response.body) == length
            return responses, data
        response.framing = "close"
        response.body, data = data, b""
        response.complete = closed
        return responses, data
    return responses, data


def _dechunk(data):
    body = b""
    while True:
        end = data.find(b"\n")
        if end < 0:
            return body, data, False
        line = data[:end].rstrip(b"\r")
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            return body, data, False
        rest = data[end + 1:]
        if size == 0:
            # trailers, then an empty line
            while True:
                end = rest.find(b"\n")
                if end < 0:
                    return body, rest, False
                line, rest = rest[:end].rstrip(b"\r"), rest[end + 1:]
                if not line:
                    return body, rest, True
        if len(rest) < size + 2:
            return body, data, False
        body += rest[:size]
        after = rest[size:]
        if after.startswith(b"\r\n"):
            data = after[2:]
        elif after.startswith(b"\n"):
            data = after[1:]
        else:
            return body, data, False


def request(case, path=None, method=None, extra=()):
    method = method or case.method
    path = path or "/case/" + case.name
    version = case.version if path.startswith("/case/") else "HTTP/1.1"
    lines = [f"{method} {path} {version}", "Host: corpus.test"]
    lines += [f"{n}: {v}" for n, v in (case.requestHeaders if path.startswith("/case/") else ())]
    lines += [f"{n}: {v}" for n, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def exchange(sock, payload, method, timeout):
    """
    Send C{payload} on C{sock} and read until a final response is complete
    (then watch L{LINGER} seconds more for stray bytes or a close), the
    connection closes, or C{timeout}.

    @return: dict with responses, rest, closed, timedOut, seconds.
    """
    sock.setblocking(False)
    began = time.monotonic()
    deadline = began + timeout
    pending = payload
    data = b""
    closed = reset = False
    doneAt = None
    finalAt = None
    while True:
        now = time.monotonic()
        if now >= deadline or (doneAt is not None and now - doneAt >= LINGER):
            break
        readable, writable, _ = select.select([sock], [sock] if pending else [], [], 0.02)
        if writable and pending:
            try:
                pending = pending[sock.send(pending):]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                pending = b""
        if readable:
            try:
                chunk = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                closed = reset = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
            responses, _ = readResponses(data, method, False)
            finals = [r for r in responses if not 100 <= r.status < 200 or r.status == 101]
            if finals and finalAt is None:
                finalAt = time.monotonic() - began
            if doneAt is None and finals and finals[-1].complete:
                doneAt = time.monotonic()
    responses, rest = readResponses(data, method, closed)
    finals = [r for r in responses if not 100 <= r.status < 200 or r.status == 101]
    if finals and finalAt is None:
        finalAt = time.monotonic() - began
    return {
        "responses": responses,
        "rest": rest,
        "closed": closed,
        "reset": reset,
        "timedOut": not finals and not closed,
        "seconds": round(finalAt if finalAt is not None else time.monotonic() - began, 2),
        "raw": data,
    }


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=2)


# ---------------------------------------------------------------------------
# Balancers


class Balancer:
    name = "?"
    setup = ""

    def __init__(self, options):
        self.options = options
        self.child = None
        self.port = None
        self.logPath = None

    def missing(self):
        return None

    def version(self):
        return ""

    def spawn(self, argv, workdir, logname, env=None):
        self.logPath = os.path.join(workdir, logname)
        with open(self.logPath, "ab") as out:
            self.child = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=workdir, env=env,
            )

    def start(self, workdir, ports, primary, backup):
        raise NotImplementedError

    def ready(self):
        return waitListening(self.port, 30, self.child)

    def stop(self):
        stopChild(self.child)
        self.child = None


class Playbalancer(Balancer):
    name = "playbalancer"
    setup = (f"twistd -n playbalancer, scheduler standby, the backup member standby = true, "
             f"timeout = connect_timeout = {MEMBER_TIMEOUT}, retry 60 (the default)")

    def env(self):
        source = self.options.playbalancer_path
        if not source:
            return None
        return dict(os.environ, PYTHONPATH=os.path.abspath(source))

    def version(self):
        source = self.options.playbalancer_path
        try:
            out = subprocess.run(
                [self.options.python, "-c",
                 "import playbalancer; print(playbalancer.__version__, playbalancer.__file__)"],
                capture_output=True, text=True, timeout=30, cwd=tempfile.gettempdir(),
                env=self.env(),
            ).stdout.strip()
            if source:
                return f"playbalancer {out}"
            commit = subprocess.run(
                ["git", "-C", ROOT, "describe", "--always", "--dirty"],
                capture_output=True, text=True, timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "playbalancer ?"
        return f"playbalancer {out.split(' ')[0]}" + (f" ({commit})" if commit else "")

    def start(self, workdir, ports, primary, backup):
        self.port = ports.take()
        config = os.path.join(workdir, "playbalancer.toml")
        with open(config, "w") as f:
            f.write(
                f"""
[[listen]]
endpoint = "tcp:{self.port}:interface=127.0.0.1"
balancer = "corpus"

[balancer.corpus]
scheduler = "standby"
timeout = {MEMBER_TIMEOUT}
connect_timeout = {MEMBER_TIMEOUT}

[[balancer.corpus.member]]
name = "primary"
url = "http://127.0.0.1:{primary}"

[[balancer.corpus.member]]
name = "backup"
url = "http://127.0.0.1:{backup}"
standby = true
"""
            )
        self.spawn(
            [self.options.python, "-c", "import sys; from twisted.scripts.twistd import run; "
             "sys.argv[0] = 'twistd'; run()", "-n", "--pidfile=", "playbalancer",
             "--config", config],
            workdir, "playbalancer.log", self.env(),
        )


class HAProxy(Balancer):
    name = "haproxy"
    setup = (f"haproxy -db, mode http, option http-keep-alive, http-reuse always, "
             f"timeouts connect/client/server {MEMBER_TIMEOUT}s, the backup member 'backup', "
             f"no checks")

    def missing(self):
        self.binary = findBinary("haproxy", self.options.haproxy)
        return None if self.binary else "haproxy not found (apt-get install haproxy)"

    def version(self):
        out = subprocess.run([self.binary, "-v"], capture_output=True, text=True).stdout
        return out.splitlines()[0] if out else "haproxy ?"

    def start(self, workdir, ports, primary, backup):
        self.port = ports.take()
        config = os.path.join(workdir, "haproxy.cfg")
        with open(config, "w") as f:
            f.write(
                f"""
global
    maxconn 256

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect {MEMBER_TIMEOUT}s
    timeout client {MEMBER_TIMEOUT}s
    timeout server {MEMBER_TIMEOUT}s

frontend fe
    bind 127.0.0.1:{self.port}
    default_backend be

backend be
    server primary 127.0.0.1:{primary}
    server backup 127.0.0.1:{backup} backup
"""
            )
        self.spawn([self.binary, "-db", "-f", config], workdir, "haproxy.log")


class Nginx(Balancer):
    name = "nginx"
    setup = (f"nginx, 1 worker, upstream keepalive 32 with the backup member 'backup', "
             f"proxy_http_version 1.1, Connection \"\", Host $host, "
             f"proxy connect/read/send timeouts {MEMBER_TIMEOUT}s, the rest default")

    def missing(self):
        self.binary = findBinary("nginx", self.options.nginx)
        return None if self.binary else "nginx not found (apt-get install nginx)"

    def version(self):
        out = subprocess.run([self.binary, "-v"], capture_output=True, text=True)
        return (out.stderr or out.stdout).strip() or "nginx ?"

    def start(self, workdir, ports, primary, backup):
        self.port = ports.take()
        temp = os.path.join(workdir, "nginx-temp")
        os.makedirs(temp, exist_ok=True)
        config = os.path.join(workdir, "nginx.conf")
        user = "user root root;" if os.geteuid() == 0 else ""
        with open(config, "w") as f:
            f.write(
                f"""
{user}
worker_processes 1;
daemon off;
error_log {workdir}/nginx-error.log info;
pid {workdir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    upstream members {{
        server 127.0.0.1:{primary};
        server 127.0.0.1:{backup} backup;
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
            proxy_pass http://members;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_connect_timeout {MEMBER_TIMEOUT}s;
            proxy_read_timeout {MEMBER_TIMEOUT}s;
            proxy_send_timeout {MEMBER_TIMEOUT}s;
        }}
    }}
}}
"""
            )
        self.spawn(
            [self.binary, "-e", os.path.join(workdir, "nginx-early.log"), "-p", workdir,
             "-c", config],
            workdir, "nginx.log",
        )


# ---------------------------------------------------------------------------
# Running one case


def describeResponse(result):
    """
    A compact JSON-able view of one exchange.
    """
    return {
        "statuses": [r.status for r in result["responses"]],
        "heads": [r.head.decode("latin-1")[:600] for r in result["responses"]],
        "body": (result["responses"][-1].body.decode("latin-1")[:200]
                 if result["responses"] else ""),
        "framing": result["responses"][-1].framing if result["responses"] else None,
        "rest": result["rest"][:200].decode("latin-1"),
        "closed": result["closed"],
        "reset": result["reset"],
        "timedOut": result["timedOut"],
        "seconds": result["seconds"],
        "raw": result["raw"][:800].decode("latin-1"),
    }


def runCase(balancer, case, options, ports, workdir):
    primary = Member(ports.take(), "primary", case)
    backup = Member(ports.take(), "backup")
    outcome = {}
    try:
        balancer.start(workdir, ports, primary.port, backup.port)
        if not balancer.ready():
            return {"error": "did not start: " + tail(balancer.logPath, 3).strip()}
        attempts = []
        sock = None
        for index in range(case.repeat):
            if sock is not None:
                sock.close()
            sock = connect(balancer.port)
            attempts.append(exchange(sock, request(case), case.method, options.timeout))
        first = attempts[-1]
        time.sleep(0.1)
        caseRequests = primary.snapshot()
        caseConnections = {
            r["connection"] for r in caseRequests if r["target"].startswith("/case/")
        }
        # The follow-up: on the same client connection if it is still open
        # and clean, else on a new one.
        clean = not first["closed"] and not first["rest"] and not first["timedOut"]
        if clean:
            followConnection = "same"
        else:
            sock.close()
            sock = connect(balancer.port)
            followConnection = "new"
        try:
            follow = exchange(sock, request(case, "/next", "GET"), "GET", options.timeout)
        finally:
            sock.close()
        time.sleep(0.1)
        after = primary.snapshot()
        nextRequests = [r for r in after if r["target"] == "/next"]
        backupRequests = [r for r in backup.snapshot() if r["target"] == "/next"]
        servedBy = "primary" if nextRequests else "backup" if backupRequests else None
        memberConnection = None
        if nextRequests:
            memberConnection = ("reused" if nextRequests[0]["connection"] in caseConnections
                                else "new")
        outcome = {
            "attempts": [describeResponse(a) for a in attempts],
            "memberSaw": [{"method": r["method"], "target": r["target"],
                           "connection": r["connection"]} for r in caseRequests],
            "followUp": {
                "clientConnection": followConnection,
                **describeResponse(follow),
                "servedBy": servedBy,
                "memberConnection": memberConnection,
            },
        }
        outcome.update(judge(case, first, outcome))
    except OSError as e:
        outcome = {"error": f"{type(e).__name__}: {e}"}
    finally:
        balancer.stop()
        primary.stop()
        backup.stop()
    return outcome


def judge(case, result, outcome):
    """
    Classify one balancer's handling of a case: C{kind} is one of passed,
    normalized, refused, hung, closed; C{details} say what changed; C{ok}
    whether that is what the case expects (RFC and our policy).
    """
    responses = result["responses"]
    interim = [r for r in responses if 100 <= r.status < 200 and r.status != 101]
    finals = [r for r in responses if r not in interim]
    details = []
    if result["timedOut"] and not finals:
        kind = "hung"
    elif not finals:
        kind = "closed"
        details.append("reset, no response" if result["reset"] else "closed, no response")
        if result["seconds"] >= 1:
            details.append(f"after {result['seconds']:.1f} s")
        if interim:
            details.insert(0, "only " + ",".join(str(r.status) for r in interim))
    else:
        final = finals[0]
        if final.status == 101:
            details.append("switched protocols")
        if final.status != case.status and final.status in (500, 502, 503, 504):
            kind = "refused"
            details.append(str(final.status))
            if final.status == 504 or result["seconds"] >= MEMBER_TIMEOUT - 0.5:
                details.append(f"after {result['seconds']:.1f} s")
        elif final.status != case.status:
            kind = "changed"
            details.append(f"status {final.status}")
        else:
            kind = "passed"
            member = _memberResponse(case)
            if final.body != case.body:
                kind = "damaged"
                details.append(f"body {final.body[:30]!r}" + ("" if final.complete else " (cut)"))
            if not final.complete and final.framing != "none":
                kind = "damaged"
                details.append("incomplete")
            got = [r.status for r in interim]
            sent = [r.status for r in member if 100 <= r.status < 200 and r.status != 101]
            if got != sent:
                if not got:
                    details.append("1xx dropped")
                else:
                    details.append(f"1xx {','.join(map(str, got))} of {len(sent)}")
            finalMember = [r for r in member if r not in member[: len(sent)]]
            if finalMember:
                m = finalMember[0]
                if final.reason != m.reason:
                    details.append(
                        f"reason rewritten ({len(m.reason)} to {len(final.reason)} bytes)"
                    )
                for name in case.notable:
                    theirs = [v for v in m.values(name.encode())]
                    ours = [v for v in final.values(name.encode())]
                    if theirs != ours:
                        details.append(f"{name}: {_show(theirs)} to {_show(ours)}")
            if case.method != "HEAD" and final.status not in (204, 304) and finalMember:
                if final.framing != finalMember[0].framing:
                    details.append(f"{finalMember[0].framing} to {final.framing}")
            if details and kind == "passed":
                kind = "normalized"
        if result["rest"]:
            details.append(f"stray bytes to the client {result['rest'][:20]!r}")
            if kind in ("passed", "normalized"):
                kind = "damaged"
    follow = outcome["followUp"]
    down = follow["servedBy"] == "backup"
    followStatuses = [s for s in follow["statuses"] if not 100 <= s < 200]
    followBroken = follow["servedBy"] is None or followStatuses[:1] != [200] or follow["rest"]
    if follow["body"] not in ("primary", "backup"):
        followBroken = True
        details.append(f"follow-up got the body {follow['body'][:20]!r} (desync)")
    if down:
        details.append("member marked down")
    elif followBroken:
        details.append("follow-up " + (",".join(map(str, followStatuses)) or "no response")
                       + (" with stray bytes" if follow["rest"] else ""))
    if result["closed"] and kind in ("passed", "normalized"):
        details.append("client connection closed")
    if follow["memberConnection"] == "reused":
        details.append("member connection reused")
    if case.expect == "pass":
        ok = kind in ("passed", "normalized")
        if case.interim and ok:
            ok = [r.status for r in interim] == list(case.interim)
    elif case.expect == "refuse":
        ok = kind == "refused" and not any(d.startswith("after") for d in details)
    else:
        ok = kind in ("passed", "normalized", "refused")
    if case.version == "HTTP/1.0" and interim:
        ok = False
        details.append("1xx sent to an HTTP/1.0 client")
    if finals and kind in ("passed", "normalized"):
        for name in case.forbid:
            if finals[0].values(name.encode()):
                ok = False
                details.append(f"{name} passed on")
    if case.downExpected:
        # Our policy, for what is refused: out after the third in a row.
        ok = ok and (down or kind != "refused")
    else:
        ok = ok and not down
    ok = ok and not (followBroken and not down)
    return {"kind": kind, "details": details, "ok": ok, "markedDown": down}


def _memberResponse(case):
    data = b"".join(case.pieces())
    responses, _ = readResponses(data, case.method, True)
    return responses


def _show(values):
    if not values:
        return "none"
    return "/".join(v.decode("latin-1") for v in values)


def runBalancer(balancer, cases, options, ports, root):
    reason = balancer.missing()
    if reason:
        log(f"{balancer.name}: skipped: {reason}")
        return {"skipped": reason}
    results = {}
    for case in cases:
        workdir = os.path.join(root, balancer.name, case.name)
        os.makedirs(workdir)
        os.chmod(workdir, 0o755)
        results[case.name] = result = runCase(balancer, case, options, ports, workdir)
        if options.verbose:
            log(f"  {balancer.name:12} {case.name:26} {cell(result)}")
    return {"results": results}


# ---------------------------------------------------------------------------
# Output


def cell(result):
    if result is None:
        return "n/a"
    if "error" in result:
        return "error: " + result["error"][:60]
    text = result["kind"]
    if result["details"]:
        text += ": " + "; ".join(result["details"])
    return ("" if result["ok"] else "! ") + text


def table(cases, columns):
    lines = []
    for case in cases:
        lines.append(f"{case.name}  (expect {case.expect}"
                     + (", member down" if case.downExpected else "") + f"; {case.rfc})")
        for name, outcome in columns:
            if "skipped" in outcome:
                lines.append(f"    {name:13} skipped")
            else:
                lines.append(f"    {name:13} {cell(outcome['results'].get(case.name))}")
    return "\n".join(lines)


def parseArguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--only", default=",".join(BALANCERS),
        help="comma-separated balancers to run (default: %(default)s)")
    add("--match", default="", help="only cases whose name contains this")
    add("--timeout", type=float, default=CLIENT_TIMEOUT,
        help="longest wait for one response, seconds (default: %(default)s)")
    add("--python", default=sys.executable,
        help="the interpreter that has playbalancer (default: this one)")
    add("--playbalancer-path", metavar="DIR",
        help="run playbalancer from this source tree (put first on PYTHONPATH), e.g. "
             "a commit's files from git archive")
    add("--haproxy", metavar="PATH")
    add("--nginx", metavar="PATH")
    add("--json", metavar="FILE", help="write every result here")
    add("--keep", action="store_true", help="keep the temporary directory")
    add("-v", "--verbose", action="store_true", help="one line per case as it runs")
    options = parser.parse_args(argv)
    options.only = [n.strip() for n in options.only.split(",") if n.strip()]
    unknown = set(options.only) - set(BALANCERS)
    if unknown:
        parser.error(f"unknown balancer(s): {', '.join(sorted(unknown))}")
    return options


def main(argv=None):
    options = parseArguments(argv)
    cases = [c for c in CASES if options.match in c.name]
    classes = {"playbalancer": Playbalancer, "haproxy": HAProxy, "nginx": Nginx}
    ports = Ports()
    root = tempfile.mkdtemp(prefix="response-corpus-")
    os.chmod(root, 0o755)
    columns = []
    versions = {}
    began = time.monotonic()
    try:
        for name in options.only:
            balancer = classes[name](options)
            if balancer.missing() is None:
                versions[name] = balancer.version()
            log(f"{name}: {len(cases)} cases")
            started = time.monotonic()
            outcome = runBalancer(balancer, cases, options, ports, root)
            outcome["seconds"] = round(time.monotonic() - started, 1)
            outcome["setup"] = balancer.setup
            columns.append((name, outcome))
    finally:
        if options.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(table(cases, columns))
    print()
    print("passed: as the member sent it; normalized: the same status and body, re-framed "
          "or with headers changed; refused: a 5xx of the balancer's own; hung: nothing "
          "within the client's timeout; damaged: the body or stream differs; ! = not what "
          "the case expects")
    for name, outcome in columns:
        if "skipped" in outcome:
            continue
        results = outcome["results"].values()
        good = sum(1 for r in results if r.get("ok"))
        print(f"{name}: {good}/{len(cases)} as expected, {outcome['seconds']} s")
    for name, version in versions.items():
        print(f"{name}: {version}")
    print(f"{len(cases)} cases, {time.monotonic() - began:.0f} s")
    if options.json:
        data = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "versions": versions,
            "cases": [
                {
                    "name": c.name, "method": c.method, "expect": c.expect, "rfc": c.rfc,
                    "why": c.why, "markedDownExpected": c.downExpected, "repeat": c.repeat,
                    "response": b"".join(c.pieces()).decode("latin-1")[:2000],
                    "after": c.after,
                    "results": {
                        name: (None if "skipped" in outcome
                               else outcome["results"].get(c.name))
                        for name, outcome in columns
                    },
                }
                for c in cases
            ],
            "balancers": {
                name: {k: outcome[k] for k in ("setup", "seconds", "skipped") if k in outcome}
                for name, outcome in columns
            },
        }
        with open(options.json, "w") as f:
            json.dump(data, f, indent=1)
        log(f"wrote {options.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
