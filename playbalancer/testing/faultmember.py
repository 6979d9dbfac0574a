"""
A member that fails on purpose, for tests: an HTTP server on 127.0.0.1 that
reads each request itself and then answers well, late, wrongly or not at
all, as its behaviour says.

It works at the protocol level (no C{twisted.web}), so it can send bytes no
real web server would.  Each request head is read up to its blank line and
recorded; a body (C{Content-Length} or chunked) is read and thrown away;
several requests can follow one another on a connection.  The behaviour in
force when a head has been read decides what happens to that request:

  - C{"ok"}: C{200} with C{Content-Length} and the body C{"<name>\\n"};
    the connection stays open.
  - C{"status"}: the same with the code of option C{status} (C{503}
    unless told) and the body C{"<status> from <name>\\n"}.
  - C{"slow"}: answers as C{"ok"} after option C{delay} seconds.
  - C{"hang"}: reads on and never answers, never closes.
  - C{"stall"}: sends C{200}, C{Content-Length: <size>} and the first
    C{after} body bytes, then nothing more; the connection stays open.
  - C{"reset"}: sends the first C{after} bytes of a valid C{200} response
    with a C{size}-byte body (the whole response if it is shorter), then
    resets the connection: the peer sees a reset (RST), not an orderly
    close.
  - C{"close"}: closes the connection as soon as the head is read (before
    any body), without answering.
  - C{"refuse"}: nothing listens on the port, so connecting is refused.
    A member started as C{"refuse"} takes a port that was free and closes
    it again: another program could take it meanwhile (a small race; the
    same as L{playbalancer.testing.client.freePort}).
  - Responses no client ought to accept (see L{MALFORMED} for the exact
    bytes): C{"both-cl-te"}, C{"bad-cl"}, C{"two-cl"}, C{"body-204"},
    C{"body-304"}, C{"garbage-status"}, C{"bare-lf"}, C{"bad-chunk"},
    C{"short-cl"} (C{Content-Length: 100}, 10 bytes, close),
    C{"truncated-chunked"} (two chunks, close before the last-chunk) and
    C{"huge-header"} (a 100 KiB header value).  The member closes the
    connection after each, except after C{"body-204"} and C{"body-304"},
    whose stray body bytes are left on a connection that stays open.

C{"ok"}, C{"status"} and C{"slow"} answer a C{HEAD} without a body, close
after answering when the request asks to (C{Connection: close}, or
HTTP/1.0 without C{keep-alive}), and send C{100 Continue} to a request
that expects it.  The answering behaviours act once the whole request,
body included, is read.  A request the member cannot parse gets C{400}
and the connection is closed.

Usage, in a trial test::

    member = FaultMember(reactor, "stall", size=1000, after=10).start()
    self.addCleanup(member.stop)
    ...                            # point a balancer at member.url
    member.behaviour = "ok"        # from the next request on
"""

from __future__ import annotations

import socket
from http import HTTPStatus

from zope.interface import implementer

from twisted.internet import defer
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from playbalancer.testing.faultparse import MAX_HEAD, BadRequest, Request

__all__ = ["MALFORMED", "BEHAVIOURS", "MAX_HEAD", "FaultMember"]

_log = Logger()

#: The malformed responses, by behaviour: the bytes sent and whether the
#: connection is closed afterwards.
MALFORMED = {
    "both-cl-te": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        True,
    ),
    "bad-cl": (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello", True),
    "two-cl": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        True,
    ),
    "body-204": (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", False),
    "body-304": (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello", False),
    "garbage-status": (b"NOT-HTTP what is this\r\nContent-Length: 5\r\n\r\nhello", True),
    "bare-lf": (b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", True),
    "bad-chunk": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\nzz\r\nhello\r\n0\r\n\r\n",
        True,
    ),
    "short-cl": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"s" * 10, True),
    "truncated-chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n",
        True,
    ),
    "huge-header": (
        b"HTTP/1.1 200 OK\r\nX-Huge: "
        + b"h" * (100 * 1024)
        + b"\r\nContent-Length: 5\r\n\r\nhello",
        True,
    ),
}

#: Every behaviour a L{FaultMember} knows.
BEHAVIOURS = frozenset(
    ["ok", "status", "slow", "hang", "stall", "reset", "close", "refuse"] + list(MALFORMED)
)

_ANSWERING = frozenset(["ok", "status", "slow"])

class FaultMember:
    """
    A fault-injecting member listening on 127.0.0.1 (see the module
    docstring for the behaviours).

    The options are plain attributes, read when a request is acted on, so
    they too can be changed between requests.

    @ivar behaviour: what the member does with the next request; may be
        set at any time.  Setting C{"refuse"} on a started member stops
        listening (connections already open stay open, and a request on
        them is reset); setting another behaviour listens again on the same
        port.  L{settled} tells when the port has followed.
    @ivar name: named by the C{"ok"} and C{"status"} bodies.
    @ivar after: bytes sent before the fault, for C{"reset"} (of the whole
        response) and C{"stall"} (of the body, below C{size}).
    @ivar size: the body size for C{"reset"} and C{"stall"}.
    @ivar delay: seconds C{"slow"} waits before answering.
    @ivar status: the status code for C{"status"}.
    @ivar port: the port number, once started.
    @ivar requests: how many request heads it has read in full.
    @ivar connections: how many connections it has accepted.
    @ivar received: the raw request heads, blank line included, in order.
    """

    def __init__(
        self,
        reactor,
        behaviour="ok",
        *,
        name="fault",
        after=0,
        size=100,
        delay=1.0,
        status=503,
    ):
        for option, value in (("after", after), ("size", size)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{option} must be a non-negative integer, got {value!r}")
        if not isinstance(delay, (int, float)) or delay < 0:
            raise ValueError(f"delay must be a non-negative number, got {delay!r}")
        if not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(f"status must be an integer from 200 to 599, got {status!r}")
        self._reactor = reactor
        self._started = False
        self._behaviour = None
        self.behaviour = behaviour
        self.name = name
        self.after = after
        self.size = size
        self.delay = delay
        self.status = status
        #: Whether it answers C{Expect: 100-continue} with C{100 Continue}.
        self.continues = True
        self.port = None
        self.requests = 0
        self.connections = 0
        self.received = []
        self._listening = None
        self._unlistening = None
        self._settledWaiters = []
        self._protocols = set()
        self._goneWaiters = []
        self._factory = _FaultFactory(self)

    @property
    def behaviour(self):
        return self._behaviour

    @behaviour.setter
    def behaviour(self, value):
        if value not in BEHAVIOURS:
            known = ", ".join(sorted(BEHAVIOURS))
            raise ValueError(f"unknown behaviour {value!r}; known: {known}")
        self._behaviour = value
        if self._started:
            self._followBehaviour()

    @property
    def url(self):
        """
        C{"http://127.0.0.1:PORT"}.
        """
        return f"http://127.0.0.1:{self.port}"

    @property
    def openConnections(self):
        """
        How many connections to the member are open now.
        """
        return len(self._protocols)

    def start(self):
        """
        Listen (on a free port the first time, on the same port again after
        L{stop} has fired), or for C{"refuse"} only choose the port.

        @return: C{self}
        """
        if self._started:
            raise RuntimeError("FaultMember already started")
        self._started = True
        if self._behaviour == "refuse":
            if self.port is None:
                self.port = _unusedPort()
        else:
            self._listen()
        return self

    def stop(self):
        """
        Stop listening and abort every open connection.

        @return: a L{Deferred} that fires once the port and every
            connection are closed.
        """
        self._started = False
        d = self.settled()
        d.addBoth(lambda _: self._unlisten())
        d.addCallback(lambda _: self._abortAll())
        return d

    def settled(self):
        """
        @return: a L{Deferred} that fires once the port listens or not as
            the behaviour says, or fails if listening again failed.
        """
        if self._unlistening is None:
            return defer.succeed(None)
        d = defer.Deferred()
        self._settledWaiters.append(d)
        return d

    def _listen(self):
        self._listening = self._reactor.listenTCP(
            self.port or 0, self._factory, interface="127.0.0.1"
        )
        self.port = self._listening.getHost().port

    def _unlisten(self):
        listening, self._listening = self._listening, None
        if listening is None:
            return defer.succeed(None)
        return defer.maybeDeferred(listening.stopListening)

    def _followBehaviour(self):
        wanted = self._behaviour != "refuse"
        if self._unlistening is not None:
            return  # _unlistened follows the behaviour when the port is closed
        if wanted and self._listening is None:
            self._listen()
        elif not wanted and self._listening is not None:
            self._unlistening = self._unlisten()
            self._unlistening.addBoth(self._unlistened)

    def _unlistened(self, result):
        self._unlistening = None
        problem = None
        if self._started and self._behaviour != "refuse":
            try:
                self._listen()
            except Exception:
                problem = Failure()
        waiters, self._settledWaiters = self._settledWaiters, []
        for d in waiters:
            if problem is None:
                d.callback(None)
            else:
                d.errback(problem)
        if problem is not None and not waiters:
            _log.failure("FaultMember could not listen again", problem)

    def _abortAll(self):
        if not self._protocols:
            return defer.succeed(None)
        d = defer.Deferred()
        self._goneWaiters.append(d)
        for protocol in list(self._protocols):
            protocol.transport.abortConnection()
        return d

    def _opened(self, protocol):
        self.connections += 1
        self._protocols.add(protocol)

    def _closed(self, protocol):
        self._protocols.discard(protocol)
        if not self._protocols:
            waiters, self._goneWaiters = self._goneWaiters, []
            for d in waiters:
                d.callback(None)

    def _headRead(self, head):
        self.requests += 1
        self.received.append(head)


def _unusedPort():
    # Reserved against other test processes, and outside the range the
    # kernel gives outgoing connections: nothing will listen there.
    from playbalancer.testing.ports import freePort

    return freePort()


class _FaultFactory(Factory):
    noisy = False

    def __init__(self, member):
        self.member = member

    def buildProtocol(self, addr):
        return _FaultProtocol(self.member)


def _response(status, body, request, headOnly=None):
    """
    A complete response, C{Content-Length} framed, for C{request}.
    """
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    if status not in (204, 304):
        lines.append("Content-Type: text/plain; charset=utf-8")
        lines.append(f"Content-Length: {len(body)}")
    else:
        body = b""
    if request.close:
        lines.append("Connection: close")
    elif request.keepAlive10:
        lines.append("Connection: keep-alive")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if request.headOnly else head + body


def _sized(size):
    return f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode("ascii")


@implementer(IPullProducer)
class _SendThenReset:
    """
    Write some bytes, and once the transport has handed them all to the
    kernel, abort the connection (an abort drops what is still buffered).
    """

    def __init__(self, transport, data):
        self.transport = transport
        self.data = data

    def resumeProducing(self):
        data, self.data = self.data, None
        if data:
            self.transport.write(data)
        else:
            self.transport.unregisterProducer()
            self.transport.abortConnection()

    def stopProducing(self):
        self.data = None


class _FaultProtocol(Protocol):
    """
    One connection to a L{FaultMember}.

    C{state} is C{"reading"} (requests are parsed), C{"waiting"} (a slow
    answer is due; data is kept for later), C{"mute"} (everything is read
    and thrown away) or C{"over"} (closing).
    """

    def __init__(self, member):
        self.member = member
        self.state = "reading"
        self.buffer = bytearray()
        self.scanned = 0
        self.pending = None
        self.delayed = None

    def connectionMade(self):
        self.member._opened(self)

    def connectionLost(self, reason):
        self.state = "over"
        if self.delayed is not None and self.delayed.active():
            self.delayed.cancel()
        self.delayed = None
        self.member._closed(self)

    def dataReceived(self, data):
        if self.state in ("mute", "over"):
            return
        self.buffer += data
        if self.state == "reading":
            self.advance()

    def advance(self):
        while self.state == "reading":
            if self.pending is not None:
                behaviour, request = self.pending
                try:
                    if not request.body.consume(self.buffer):
                        return
                except BadRequest:
                    return self.badRequest()
                self.pending = None
                self.act(behaviour, request)
                continue
            head = self.readHead()
            if head is None:
                return
            self.member._headRead(head)
            try:
                request = Request(head)
            except BadRequest:
                return self.badRequest()
            behaviour = self.member.behaviour
            if behaviour == "close":
                return self.finish()
            if (
                request.expectsContinue
                and request.hasBody
                and behaviour in _ANSWERING
                and self.member.continues
            ):
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.pending = (behaviour, request)

    def readHead(self):
        while self.buffer[:2] == b"\r\n":
            del self.buffer[:2]
            self.scanned = 0
        end = self.buffer.find(b"\r\n\r\n", max(0, self.scanned - 3))
        if end < 0:
            self.scanned = len(self.buffer)
            if self.scanned > MAX_HEAD:
                self.finish(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                            b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            return None
        head = bytes(self.buffer[: end + 4])
        del self.buffer[: end + 4]
        self.scanned = 0
        return head

    def act(self, behaviour, request):
        member = self.member
        if behaviour == "ok":
            self.answer(request, 200, member.name.encode("utf-8") + b"\n")
        elif behaviour == "status":
            body = f"{member.status} from {member.name}\n".encode("utf-8")
            self.answer(request, member.status, body)
        elif behaviour == "slow":
            self.state = "waiting"
            self.delayed = member._reactor.callLater(member.delay, self.slowAnswer, request)
        elif behaviour == "hang":
            self.mute()
        elif behaviour == "stall":
            self.transport.write(_sized(member.size) + b"x" * min(member.after, member.size))
            self.mute()
        elif behaviour == "reset":
            self.state = "over"
            data = (_sized(member.size) + b"x" * member.size)[: member.after]
            if data:
                self.transport.registerProducer(_SendThenReset(self.transport, data), False)
            else:
                self.transport.abortConnection()
        elif behaviour == "refuse":
            self.state = "over"
            self.transport.abortConnection()
        else:
            data, close = MALFORMED[behaviour]
            if close or request.close:
                self.finish(data)
            else:
                self.transport.write(data)

    def answer(self, request, status, body):
        if request.close:
            self.finish(_response(status, body, request))
        else:
            self.transport.write(_response(status, body, request))

    def slowAnswer(self, request):
        self.delayed = None
        self.state = "reading"
        self.act("ok", request)
        self.advance()

    def mute(self):
        self.state = "mute"
        del self.buffer[:]

    def badRequest(self):
        self.finish(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def finish(self, data=b""):
        """
        Write C{data}, then close in order; read nothing more.
        """
        self.state = "over"
        del self.buffer[:]
        if data:
            self.transport.write(data)
        self.transport.loseConnection()
