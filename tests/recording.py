"""
A recording member for front-end tests, and the small HTTP/1.1 parsers it
and the raw test client use.

L{RecordingMember} listens on 127.0.0.1 (port 0) and parses every request
itself (the head, then a Content-Length or chunked body), so that a test
sees exactly what the balancer sent: the raw head, the method, the target,
the header lines in order, and the payload.  It answers each request with
C{200}, C{Content-Length: 2} and C{ok}, and keeps the connection open unless
the request asked to close it.

L{RequestParser} and L{ResponseParser} use only the standard library (the
comparison script in benchmarks/ uses them in plain threads).  They are
lenient on purpose (bare LF is accepted as a line end): they record what
arrived, they do not judge it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import WrappingFactory

_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
_LINE = re.compile(rb"\r?\n")

#: The member's answer to every request.
OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
OK_RESPONSE_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

#: Largest head either parser buffers before giving up.
MAX_HEAD = 1 << 20


class ParseError(Exception):
    """
    The bytes cannot be parsed even leniently.
    """


def _headerList(lines: List[bytes]) -> List[Tuple[bytes, bytes]]:
    headers = []
    for line in lines:
        name, colon, value = line.partition(b":")
        # Leading OWS is not part of the value; trailing whitespace is kept so
        # that a test can tell whether the balancer trimmed it.
        headers.append((name, value.lstrip(b" \t") if colon else b""))
    return headers


def _values(headers, name: bytes) -> List[bytes]:
    name = name.lower()
    return [v for (n, v) in headers if n.lower() == name]


def _tokens(values: List[bytes]) -> List[bytes]:
    tokens = []
    for value in values:
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                tokens.append(token)
    return tokens


@dataclass
class RecordedRequest:
    """
    One request as the member saw it.

    @ivar head: the raw request line and header lines, with the empty line.
    @ivar headers: C{(name, value)} pairs in order; the value without its
        leading whitespace, trailing whitespace kept.
    @ivar body: the payload (de-chunked when it came chunked).
    @ivar chunked: whether it came chunked.
    @ivar trailers: the trailer fields of a chunked body.
    @ivar complete: whether the whole body arrived.
    """

    head: bytes
    method: bytes
    target: bytes
    version: bytes
    headers: List[Tuple[bytes, bytes]]
    body: bytes = b""
    chunked: bool = False
    trailers: List[Tuple[bytes, bytes]] = field(default_factory=list)
    complete: bool = False

    def values(self, name: bytes) -> List[bytes]:
        return _values(self.headers, name)

    @property
    def wantsClose(self) -> bool:
        tokens = _tokens(self.values(b"connection"))
        if self.version == b"HTTP/1.0":
            return b"keep-alive" not in tokens
        return b"close" in tokens

    @property
    def expectsContinue(self) -> bool:
        return b"100-continue" in _tokens(self.values(b"expect"))


class RequestParser:
    """
    Incremental request parser.  C{onHead(request)} is called when a head
    has arrived (the body may still be coming), C{onComplete(request)} when
    the body has too.  Set C{stopped} to ignore everything after.
    """

    def __init__(
        self,
        onHead: Callable[[RecordedRequest], None],
        onComplete: Callable[[RecordedRequest], None],
    ):
        self.onHead = onHead
        self.onComplete = onComplete
        self.stopped = False
        self._buffer = b""
        self._state = "head"
        self._current: Optional[RecordedRequest] = None
        self._remaining = 0
        self._body: List[bytes] = []

    @property
    def bodyPending(self) -> bool:
        return self._state != "head"

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while not self.stopped and self._step():
            pass

    def _step(self) -> bool:
        state = self._state
        if state == "head":
            return self._head()
        if state == "length":
            if not self._remaining:
                return self._finish()
            piece = self._buffer[: self._remaining]
            if not piece:
                return False
            self._buffer = self._buffer[len(piece):]
            self._remaining -= len(piece)
            self._body.append(piece)
            return True
        if state == "size":
            match = _LINE.search(self._buffer)
            if match is None:
                if len(self._buffer) > MAX_HEAD:
                    raise ParseError("chunk size line too long")
                return False
            line = self._buffer[: match.start()]
            self._buffer = self._buffer[match.end():]
            text = line.split(b";", 1)[0].strip()
            try:
                size = int(text, 16)
            except ValueError:
                raise ParseError(f"bad chunk size {line!r}")
            if size < 0:
                raise ParseError(f"bad chunk size {line!r}")
            if size == 0:
                self._state = "trailers"
            else:
                self._state = "data"
                self._remaining = size
            return True
        if state == "data":
            if self._remaining:
                piece = self._buffer[: self._remaining]
                if not piece:
                    return False
                self._buffer = self._buffer[len(piece):]
                self._remaining -= len(piece)
                self._body.append(piece)
                return True
            match = _LINE.match(self._buffer)
            if match is None:
                if len(self._buffer) >= 2:
                    raise ParseError("no CRLF after chunk data")
                return False
            self._buffer = self._buffer[match.end():]
            self._state = "size"
            return True
        if state == "trailers":
            match = _LINE.search(self._buffer)
            if match is None:
                return False
            line = self._buffer[: match.start()]
            self._buffer = self._buffer[match.end():]
            if not line:
                return self._finish()
            self._current.trailers.extend(_headerList([line]))
            return True
        raise AssertionError(state)

    def _head(self) -> bool:
        # Empty lines before a request line are skipped (RFC 9112 2.2).
        stripped = self._buffer.lstrip(b"\r\n")
        if not stripped:
            self._buffer = b""
            return False
        self._buffer = stripped
        match = _END_OF_HEAD.search(self._buffer)
        if match is None:
            if len(self._buffer) > MAX_HEAD:
                raise ParseError("head too long")
            return False
        head = self._buffer[: match.end()]
        self._buffer = self._buffer[match.end():]
        lines = _LINE.split(head[: match.start()])
        parts = lines[0].split()
        method = parts[0] if parts else b""
        target = parts[1] if len(parts) > 1 else b""
        version = parts[2] if len(parts) > 2 else b""
        request = RecordedRequest(head, method, target, version, _headerList(lines[1:]))
        self._current = request
        self._body = []
        if b"chunked" in _tokens(request.values(b"transfer-encoding"))[-1:]:
            request.chunked = True
            self._state = "size"
        else:
            lengths = request.values(b"content-length")
            value = lengths[0].strip() if lengths else b"0"
            self._remaining = int(value) if value.isdigit() else 0
            self._state = "length"
        self.onHead(request)
        return True

    def _finish(self) -> bool:
        request = self._current
        request.body = b"".join(self._body)
        request.complete = True
        self._current = None
        self._body = []
        self._state = "head"
        self.onComplete(request)
        return True


@dataclass
class ParsedResponse:
    """
    One response as the client saw it.
    """

    status: int
    reason: bytes
    headers: List[Tuple[bytes, bytes]]
    head: bytes
    body: bytes = b""
    complete: bool = False

    @property
    def interim(self) -> bool:
        # 101 ends HTTP/1.1 on the connection, so it counts as final here.
        return 100 <= self.status < 200 and self.status != 101

    def values(self, name: bytes) -> List[bytes]:
        return _values(self.headers, name)

    @property
    def closes(self) -> bool:
        return b"close" in _tokens(self.values(b"connection"))


class ResponseParser:
    """
    Incremental response parser for the raw test client.  Bodies are framed
    by C{Content-Length}, chunked, or the end of the connection (call
    L{close} at EOF).  Responses to HEAD are not supported.

    @ivar responses: every response whose head arrived, in order.
    @ivar garbage: bytes that were not a response, if any.
    """

    def __init__(self):
        self.responses: List[ParsedResponse] = []
        self.garbage = b""
        self._buffer = b""
        self._state = "head"
        self._remaining = 0
        self._body: List[bytes] = []

    @property
    def finals(self) -> List[ParsedResponse]:
        return [r for r in self.responses if not r.interim]

    @property
    def completeFinals(self) -> List[ParsedResponse]:
        return [r for r in self.finals if r.complete]

    @property
    def firstStatus(self) -> Optional[int]:
        finals = self.finals
        return finals[0].status if finals else None

    def feed(self, data: bytes) -> None:
        if self.garbage:
            self.garbage += data
            return
        self._buffer += data
        try:
            while self._step():
                pass
        except ParseError:
            self.garbage = self._buffer or b"?"
            self._buffer = b""

    def close(self) -> None:
        """
        The connection ended: a body framed by the close is complete.
        """
        if self._state == "eof":
            self._body.append(self._buffer)
            self._buffer = b""
            self._done()

    def _step(self) -> bool:
        state = self._state
        if state == "head":
            if not self._buffer:
                return False
            match = _END_OF_HEAD.search(self._buffer)
            if match is None:
                if self._buffer[:5] != b"HTTP/"[: len(self._buffer)] or len(self._buffer) > MAX_HEAD:
                    raise ParseError("not a response")
                return False
            head = self._buffer[: match.end()]
            self._buffer = self._buffer[match.end():]
            lines = _LINE.split(head[: match.start()])
            parts = lines[0].split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                raise ParseError(f"bad status line {lines[0]!r}")
            response = ParsedResponse(
                int(parts[1]), parts[2] if len(parts) > 2 else b"", _headerList(lines[1:]), head
            )
            self.responses.append(response)
            self._body = []
            if 100 <= response.status < 200 or response.status in (204, 304):
                return self._done()
            if b"chunked" in _tokens(response.values(b"transfer-encoding"))[-1:]:
                self._state = "size"
                return True
            lengths = response.values(b"content-length")
            if lengths and lengths[0].strip().isdigit():
                self._remaining = int(lengths[0].strip())
                self._state = "length"
                return True
            self._state = "eof"
            return False
        if state == "length":
            if not self._remaining:
                return self._done()
            piece = self._buffer[: self._remaining]
            if not piece:
                return False
            self._buffer = self._buffer[len(piece):]
            self._remaining -= len(piece)
            self._body.append(piece)
            return True
        if state == "size":
            match = _LINE.search(self._buffer)
            if match is None:
                return False
            line = self._buffer[: match.start()]
            self._buffer = self._buffer[match.end():]
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ParseError(f"bad chunk size {line!r}")
            if size == 0:
                self._state = "trailers"
            else:
                self._remaining = size
                self._state = "data"
            return True
        if state == "data":
            if self._remaining:
                piece = self._buffer[: self._remaining]
                if not piece:
                    return False
                self._buffer = self._buffer[len(piece):]
                self._remaining -= len(piece)
                self._body.append(piece)
                return True
            match = _LINE.match(self._buffer)
            if match is None:
                return False
            self._buffer = self._buffer[match.end():]
            self._state = "size"
            return True
        if state == "trailers":
            match = _LINE.search(self._buffer)
            if match is None:
                return False
            line = self._buffer[: match.start()]
            self._buffer = self._buffer[match.end():]
            if not line:
                return self._done()
            return True
        if state == "eof":
            self._body.append(self._buffer)
            self._buffer = b""
            return False
        raise AssertionError(state)

    def _done(self) -> bool:
        response = self.responses[-1]
        response.body = b"".join(self._body)
        response.complete = True
        self._body = []
        self._state = "head"
        return True


class _MemberProtocol(Protocol):
    def connectionMade(self):
        self.factory.member.connections += 1
        self.parser = RequestParser(self._head, self._complete)

    def dataReceived(self, data):
        try:
            self.parser.feed(data)
        except ParseError as e:
            self.factory.member.errors.append(str(e))
            self.parser.stopped = True
            self.transport.loseConnection()

    def _head(self, request):
        self.factory.member.requests.append(request)
        if request.expectsContinue and self.parser.bodyPending:
            self.transport.write(CONTINUE)

    def _complete(self, request):
        if request.wantsClose:
            self.transport.write(OK_RESPONSE_CLOSE)
            self.parser.stopped = True
            self.transport.loseConnection()
        else:
            self.transport.write(OK_RESPONSE)


class RecordingMember:
    """
    A member on 127.0.0.1 that records every request that reached it.

    @ivar requests: the L{RecordedRequest}s, in arrival order (appended as
        soon as a head arrives; C{complete} once the body has too).
    @ivar connections: how many connections were made to it.
    @ivar errors: requests it could not parse (it closed the connection).
    """

    def __init__(self, reactor, port: int = 0, interface: str = "127.0.0.1"):
        self.reactor = reactor
        self.requested = port
        self.interface = interface
        self.requests: List[RecordedRequest] = []
        self.errors: List[str] = []
        self.connections = 0
        self.port = None
        self._listening = None
        self._factory = None

    @property
    def url(self) -> str:
        return f"http://{self.interface}:{self.port}"

    def start(self) -> "RecordingMember":
        factory = Factory.forProtocol(_MemberProtocol)
        factory.member = self
        self._factory = WrappingFactory(factory)
        self._listening = self.reactor.listenTCP(
            self.requested, self._factory, interface=self.interface
        )
        self.port = self._listening.getHost().port
        return self

    def stop(self) -> defer.Deferred:
        """
        Stop listening and abort every connection; fires when all are gone.
        """
        from playbalancer.testing import closeAll

        listening, self._listening = self._listening, None
        d = defer.maybeDeferred(listening.stopListening) if listening else defer.succeed(None)
        d.addCallback(lambda _: closeAll(self._factory, self.reactor))
        return d
