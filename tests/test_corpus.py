"""
The malformed-request corpus (L{tests.corpus.VECTORS}) against the
balancer's front end: one test per vector, named C{test_<vector name>}.

Each test starts a L{RecordingMember} and a balancer in front of it, warms
the balancer's member pool with one request, sends the vector's bytes on a
fresh raw TCP connection, reads the response(s)
for a bounded time, and checks the first final status, whether the
balancer closed the connection, how many requests reached the member and,
where the vector says, what they looked like.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater

from tests.corpus import VECTORS, Vector
from tests.proxyharness import ProxyTestCase
from tests.recording import RecordingMember, ResponseParser

#: Longest wait for the response(s) to a vector.
RESPONSE_TIMEOUT = 5.0
#: After the expected responses: how long to wait for the balancer to
#: close, when it must ...
CLOSE_WAIT = 1.0
#: ... and how long to watch that it does not, when it must not.
OPEN_WAIT = 0.3
#: Time for a request the balancer forwards late to reach the member.
SETTLE = 0.1
POLL = 0.01


class _RawClient(Protocol):
    """
    Sends bytes, parses whatever comes back, notes who closed.
    """

    def __init__(self):
        self.parser = ResponseParser()
        self.closed = False
        self.lost = defer.Deferred()

    def dataReceived(self, data):
        self.parser.feed(data)

    def connectionLost(self, reason):
        self.closed = True
        self.parser.close()
        self.lost.callback(None)


def _show(data: bytes, limit: int = 200) -> str:
    text = repr(data[:limit])
    return text + ("..." if len(data) > limit else "")


async def exchange(port: int, vector: Vector):
    """
    Send C{vector.request} to 127.0.0.1:C{port}; return the client protocol
    (its C{parser} holds the responses) and whether the server closed the
    connection.
    """
    client = _RawClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), client)
    client.transport.write(vector.request)
    now = reactor.seconds
    deadline = now() + RESPONSE_TIMEOUT
    answeredAt = None
    linger = CLOSE_WAIT if vector.closes else OPEN_WAIT
    while not client.closed and now() < deadline:
        if answeredAt is None and len(client.parser.completeFinals) >= vector.responses:
            answeredAt = now()
        if answeredAt is not None and now() - answeredAt >= linger:
            break
        await deferLater(reactor, POLL, lambda: None)
    closedByServer = client.closed
    if not client.closed:
        client.transport.abortConnection()
        await client.lost
    return client, closedByServer


def describe(vector: Vector, client, closedByServer, member) -> list:
    """
    Every way the outcome differs from what C{vector} expects.
    """
    parser = client.parser
    problems = []
    finals = parser.finals
    status = parser.firstStatus
    if status != vector.status:
        problems.append(f"status {status}, expected {vector.status}")
    if vector.statuses is not None:
        statuses = tuple(r.status for r in finals)
        if statuses != vector.statuses:
            problems.append(f"statuses {statuses}, expected {vector.statuses}")
    if closedByServer != vector.closes:
        problems.append(
            "the balancer closed the connection" if closedByServer
            else "the connection was left open"
        )
    if (
        vector.status is not None
        and vector.status >= 400
        and vector.forwarded == 0
        and finals
        and finals[0].status == vector.status
        and not finals[0].closes
    ):
        problems.append("the refusal has no Connection: close")
    seen = len(member.requests)
    if seen != vector.forwarded:
        targets = [r.method + b" " + r.target[:60] for r in member.requests]
        problems.append(f"the member saw {seen} request(s), expected {vector.forwarded}: {targets!r}")
    elif vector.normalized is not None:
        problems.extend(vector.normalized(member.requests))
    if parser.garbage:
        problems.append(f"unparseable response bytes: {_show(parser.garbage)}")
    if problems:
        answer = b"".join(r.head for r in parser.responses) or b"(nothing)"
        problems.append(f"response heads: {_show(answer, 400)}")
        problems.append(f"sent: {_show(vector.request)}")
    return problems


class CorpusTests(ProxyTestCase):
    """
    One test method per corpus vector (added below).  The balancer's pool
    holds an idle member connection when a vector arrives, as a running
    balancer's does (an idle connection takes a request head at once, so
    only then does a test see what reaches a member too early).
    """

    timeout = 30

    async def warm(self, member):
        from playbalancer.testing import rawExchange, waitUntil

        raw = await rawExchange(
            reactor, self.port, b"GET /warm HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw[:200])
        pool = self.pools.forMember(self.balancer.member("app1"))
        await waitUntil(lambda: len(pool.idle) == 1, reactor)
        del member.requests[:]

    async def runVector(self, vector: Vector):
        member = RecordingMember(reactor).start()
        self.addCleanup(member.stop)
        self.startBalancer([member.url], maxBody=vector.maxBody)
        await self.warm(member)
        client, closedByServer = await exchange(self.port, vector)
        await deferLater(reactor, SETTLE, lambda: None)
        problems = describe(vector, client, closedByServer, member)
        if problems:
            self.fail(
                f"{vector.name} ({vector.category}; expected {vector.expected}):\n  "
                + "\n  ".join(problems)
                + f"\n  why: {vector.note}"
            )


def _makeTest(vector: Vector):
    async def test(self):
        await self.runVector(vector)

    test.__name__ = f"test_{vector.name}"
    test.__qualname__ = f"CorpusTests.test_{vector.name}"
    test.__doc__ = f"{vector.category}: expect {vector.expected}.  {vector.note}"
    return test


for _vector in VECTORS:
    setattr(CorpusTests, f"test_{_vector.name}", _makeTest(_vector))
del _vector
