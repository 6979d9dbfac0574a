"""
The exchange without sockets: an in-memory client side and in-memory
members (L{playbalancer.testing.exchange}), driving its states, attempts,
retries and outcomes; and the retry rules alone.
"""

from __future__ import annotations

import gc
import platform
from collections import Counter

from twisted.internet import reactor
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.balancer import Balancer, Member
from playbalancer.http import exchange as states
from playbalancer.http import retry
from playbalancer.http.exchange import Exchange
from playbalancer.testing.exchange import MemoryClient, memoryProxy
from playbalancer.http.requestbody import REPLAY_LIMIT, RequestBody
from playbalancer.http.responsewriter import ResponseWriter
from playbalancer.http.wire import Limits, parseRequestHead
from playbalancer.interfaces import IClientSide
from playbalancer.schedulers import RoundRobinScheduler

from playbalancer.testing import rawExchange
from tests.proxyharness import ProxyTestCase
from zope.interface.verify import verifyObject


def request(*lines, client="192.0.2.7"):
    head = parseRequestHead(b"\r\n".join(lines), Limits())
    head.client = client
    return head


GET = (b"GET /a?b HTTP/1.1", b"Host: example.com")
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


class ExchangeTestCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.members = [Member("app1", "http://10.0.0.1:9999"), Member("app2", "http://10.0.0.2:9998")]
        self.balancer = Balancer("b", RoundRobinScheduler(), self.members, self.clock)
        self.proxy, self.memory = memoryProxy(self.balancer, self.clock)

    def start(self, *lines, body=None):
        client = MemoryClient()
        exchange = Exchange(self.proxy, client, request(*lines))
        exchange.start()
        if body is not None:
            exchange.bodyData(body)
            exchange.bodyEnd()
        return exchange, client

    def answer(self, name, data):
        connection = self.memory.last(name)
        connection.dataReceived(data)
        return connection

    def sent(self, name):
        return self.memory.last(name).transport.value()


class LifeTests(ExchangeTestCase):
    def test_clientSideInterface(self):
        """
        The in-memory client and the HTTP/1.1 writer provide IClientSide.
        """
        verifyObject(IClientSide, MemoryClient())
        verifyObject(IClientSide, WriterTests().writer(*GET)[0])

    def test_answered(self):
        """
        A GET goes to a member; its response goes to the client; the
        attempt is reported once as answered.
        """
        exchange, client = self.start(*GET)
        self.assertEqual(exchange.state, states.ATTEMPTING)
        self.assertTrue(self.sent("app1").startswith(b"GET /a?b HTTP/1.1\r\n"))
        self.assertEqual(self.members[0].active, 1)
        self.answer("app1", OK)
        self.assertEqual(exchange.state, states.FINISHED)
        self.assertEqual(client.head[:2], (200, b"OK"))
        self.assertEqual(client.head[3], 5)
        self.assertEqual(client.body, b"hello")
        self.assertEqual(client.ended, "finished")
        stats = self.members[0].stats
        self.assertEqual(stats.statusClasses["2xx"], 1)
        self.assertEqual(stats.total.count, 1)
        self.assertEqual(self.members[0].active, 0)
        self.assertEqual(self.members[0].bytesIn, 5)

    def test_buffersSmallBody(self):
        """
        A small body is read whole before a member is chosen.
        """
        exchange, client = self.start(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 3")
        self.assertEqual(exchange.state, states.BUFFERING)
        self.assertEqual(self.memory.connections, {})
        exchange.bodyData(b"abc")
        exchange.bodyEnd()
        self.assertEqual(exchange.state, states.ATTEMPTING)
        self.assertTrue(self.sent("app1").endswith(b"\r\n\r\nabc"))

    def test_bodyEndedShortOfItsLength(self):
        """
        A client face that ends a body short of its Content-Length (an
        HTTP/2 stream ended by trailers, say): the request is never sent
        on as complete, and the member connection is not kept.
        """
        exchange, client = self.start(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 9")
        exchange.bodyData(b"abc")
        exchange.bodyEnd()
        self.assertEqual(exchange.state, states.ABANDONED)
        self.assertEqual(self.memory.connections, {})
        # Streamed (over the replay limit), then ended short.
        big = b"x" * (states.REPLAY_LIMIT + 1)
        exchange, client = self.start(
            b"POST / HTTP/1.1", b"Host: a", b"Content-Length: %d" % (len(big) + 5)
        )
        exchange.bodyData(big)
        connection = self.memory.last("app1")
        exchange.bodyEnd()
        self.assertEqual(exchange.state, states.ABANDONED)
        self.assertTrue(connection.transport.disconnecting or connection.transport.disconnected)

    def test_clientGoneWhileWaiting(self):
        """
        The client leaves before the member answers: the member connection
        is dropped and the attempt ends without blaming the member.
        """
        exchange, client = self.start(*GET)
        connection = self.memory.last("app1")
        exchange.clientGone()
        self.assertEqual(exchange.state, states.ABANDONED)
        self.assertTrue(connection.transport.disconnecting or connection.transport.disconnected)
        self.assertEqual(self.members[0].active, 0)
        self.assertEqual(self.members[0].failures, 0)
        self.assertTrue(self.members[0].healthy)

    def test_unrequestedUpgrade(self):
        """
        A member that switches protocols for a request that asked for no
        upgrade gets a 502 for the client, its connection closed, and a bad
        response counted; nothing raises.
        """
        exchange, client = self.start(*GET)
        connection = self.answer(
            "app1", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
        )
        self.assertEqual(client.status, 502)
        self.assertIsNone(client.head)
        self.assertIsNone(client.tunnel)
        self.assertEqual(exchange.state, states.FINISHED)
        self.assertTrue(connection.transport.disconnecting or connection.transport.disconnected)
        self.assertEqual(self.members[0].stats.failures["bad_response"], 1)
        self.assertEqual(self.members[0].active, 0)


class PassiveHealthTests(ExchangeTestCase):
    """
    A member's passive health follows its response heads: a long response
    brings a member back as soon as its head comes, and a failing status
    counts even when the client leaves before the body ends.
    """

    def test_headBringsMemberBack(self):
        self.balancer.memberFailed(self.members[0], "connection refused")
        self.clock.advance(self.balancer.retry + 1)
        exchange, client = self.start(*GET)
        self.answer("app1", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel")
        self.assertEqual(exchange.state, states.RESPONDING)
        self.assertTrue(self.members[0].healthy)

    def test_failingStatusThenClientLeaves(self):
        self.balancer.failOnStatus = frozenset([503])
        exchange, client = self.start(
            b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 3", body=b"abc"
        )
        self.answer("app1", b"HTTP/1.1 503 Busy\r\nContent-Length: 10\r\n\r\nbus")
        exchange.clientGone()
        self.assertFalse(self.members[0].healthy)
        self.assertEqual(self.members[0].failures, 1)

    def test_failingStatusRetriedCountedOnce(self):
        self.balancer.failOnStatus = frozenset([503])
        exchange, client = self.start(*GET)
        self.answer("app1", b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
        self.answer("app2", OK)
        self.assertEqual(self.members[0].failures, 1)
        self.assertFalse(self.members[0].healthy)
        self.assertTrue(self.members[1].healthy)

    def test_badUpgradeIsNoSuccess(self):
        """
        A 101 to a request that asked for no upgrade is a bad response, not
        an answer: it does not clear the member's run of bad responses.
        """
        self.members[0].badResponses = 1
        exchange, client = self.start(*GET)
        self.answer(
            "app1", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
        )
        self.assertEqual(self.members[0].badResponses, 2)


class RetryTests(ExchangeTestCase):
    def test_resetBeforeAnswerRetried(self):
        """
        A GET whose member closes before answering goes to the other
        member, once; the first attempt counts a reset and a retry.
        """
        exchange, client = self.start(*GET)
        self.memory.last("app1").connectionLost(Failure(ConnectionDone()))
        self.assertIn("app2", self.memory.connections)
        self.answer("app2", OK)
        self.assertEqual(client.body, b"hello")
        self.assertEqual(self.members[0].stats.failures["reset"], 1)
        self.assertEqual(self.members[0].stats.retries, 1)
        self.assertEqual(exchange.tried, self.members)

    def test_postNotRetried(self):
        """
        A POST is not sent twice: a member that closes before answering
        gets the client a 502.
        """
        exchange, client = self.start(
            b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 3", body=b"abc"
        )
        self.memory.last("app1").connectionLost(Failure(ConnectionDone()))
        self.assertNotIn("app2", self.memory.connections)
        self.assertEqual(client.status, 502)

    def test_connectFailureGoesOn(self):
        """
        A member that cannot be reached saw nothing: even a POST goes on
        to the next one.
        """
        self.memory.refusing.add("app1")
        exchange, client = self.start(
            b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 3", body=b"abc"
        )
        self.assertTrue(self.sent("app2").endswith(b"abc"))
        self.assertEqual(self.members[0].stats.failures["connect"], 1)
        self.assertFalse(self.members[0].healthy)

    def test_allRefuse(self):
        """
        When no member can be reached, the client gets a 503 with
        Retry-After, and the balancer counts it.
        """
        self.memory.refusing.update(["app1", "app2"])
        exchange, client = self.start(*GET)
        self.assertEqual(client.own[0], 503)
        self.assertIn(b"Retry-After", dict(client.own[3]))
        self.assertEqual(self.balancer.unavailable, 1)

    def test_failOnStatus(self):
        """
        A status in fail_on_status sends an idempotent request elsewhere.
        """
        self.balancer.failOnStatus = frozenset([503])
        exchange, client = self.start(*GET)
        self.answer("app1", b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
        self.answer("app2", OK)
        self.assertEqual(client.head[0], 200)
        self.assertFalse(self.members[0].healthy)
        self.assertEqual(self.members[0].stats.retries, 1)

    def test_bodyTooLargeToKeepNotResent(self):
        """
        A chunked PUT whose body went past what is kept for a replay
        (REPLAY_LIMIT) is not sent to a second member when the first
        closes before answering: the second would get the head with only
        the rest of the body.  The client gets a 502.
        """
        exchange, client = self.start(b"PUT /f HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked")
        exchange.bodyData(b"A" * 70000)
        exchange.bodyData(b"B" * 10)
        exchange.bodyEnd()
        self.memory.last("app1").connectionLost(Failure(ConnectionDone()))
        self.assertNotIn("app2", self.memory.connections)
        self.assertEqual(client.status, 502)

    def test_failingStatusAfterBodyTooLargeToKeep(self):
        """
        A PUT with a body larger than what is kept, answered with a status
        in fail_on_status: that answer goes to the client; the request is
        not sent to another member without its body.
        """
        self.balancer.failOnStatus = frozenset([503])
        exchange, client = self.start(b"PUT /f HTTP/1.1", b"Host: a", b"Content-Length: 70000")
        exchange.bodyData(b"A" * 70000)
        exchange.bodyEnd()
        self.answer("app1", b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
        self.assertNotIn("app2", self.memory.connections)
        self.assertEqual(client.head[0], 503)
        self.assertEqual(client.ended, "finished")

    def test_smallBodyResentWhole(self):
        """
        A PUT whose body is kept goes to the second member whole.
        """
        exchange, client = self.start(
            b"PUT /f HTTP/1.1", b"Host: a", b"Content-Length: 3", body=b"abc"
        )
        self.memory.last("app1").connectionLost(Failure(ConnectionDone()))
        self.assertTrue(self.sent("app2").endswith(b"\r\n\r\nabc"))


class RetryRuleTests(SynchronousTestCase):
    def test_idempotentOnce(self):
        state = retry.RetryState(b"GET")
        self.assertTrue(retry.afterLoss(state))
        state.retried = True
        self.assertFalse(retry.afterLoss(state))

    def test_notIdempotent(self):
        self.assertFalse(retry.afterLoss(retry.RetryState(b"POST")))
        self.assertTrue(retry.afterLoss(retry.RetryState(b"POST", idempotencyKey=True)))

    def test_notAfterResponseOrUpgradeOrLostBody(self):
        for change in ("responseStarted", "upgrade", "body"):
            state = retry.RetryState(b"GET")
            if change == "body":
                body = state.body = RequestBody(None)
                self.assertTrue(retry.afterLoss(state))
                body.wasSent(b"x" * (REPLAY_LIMIT + 1))
            else:
                setattr(state, change, True if change == "responseStarted" else b"websocket")
            self.assertFalse(retry.afterLoss(state), change)

    def test_failingStatus(self):
        state = retry.RetryState(b"GET")
        self.assertTrue(retry.afterFailingStatus(state, True, True))
        self.assertFalse(retry.afterFailingStatus(state, False, True))
        self.assertFalse(retry.afterFailingStatus(state, True, False))


class WriterTests(SynchronousTestCase):
    """
    The HTTP/1.1 client side's framing.
    """

    def writer(self, *lines):
        transport = StringTransport()

        class Front:
            closing = False
            done = None

            def responseDone(self, keepAlive):
                self.done = keepAlive

        front = Front()
        writer = ResponseWriter(front, transport, None, 16384)
        writer.begin(request(*lines))
        return writer, transport, front

    def test_emptyBodyHasLength(self):
        """
        A 200 with an empty body says Content-Length: 0; without it, a
        kept-alive HTTP/1.1 response would have no end but the close.
        """
        writer, transport, front = self.writer(*GET)
        writer.startResponse(200, b"OK", [], 0, True)
        writer.finish()
        self.assertIn(b"\r\nContent-Length: 0\r\n", transport.value())
        self.assertTrue(front.done)

    def test_noLengthWhereForbidden(self):
        """
        A 204 or a 304 gets no Content-Length of ours.
        """
        for status in (204, 304):
            writer, transport, front = self.writer(*GET)
            writer.startResponse(status, b"X", [], 0, True)
            self.assertNotIn(b"Content-Length", transport.value())

    def test_chunkedWhenUnknown(self):
        writer, transport, front = self.writer(*GET)
        writer.startResponse(200, b"OK", [], None, True)
        writer.writeBody(b"abc")
        writer.finish()
        self.assertTrue(transport.value().endswith(b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))

    def test_http10UnknownLengthCloses(self):
        writer, transport, front = self.writer(b"GET / HTTP/1.0")
        writer.startResponse(200, b"OK", [], None, True)
        writer.finish()
        self.assertIn(b"Connection: close", transport.value())
        self.assertFalse(front.done)


class _EmptyOK(Protocol):
    """
    A member that answers every request with an empty 200.
    """

    def dataReceived(self, data):
        for _ in range(data.count(b"\r\n\r\n")):
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


class EmptyBodyOverSocketsTests(ProxyTestCase):
    async def test_emptyBodyKeptAlive(self):
        """
        Over real sockets: a member's empty 200 reaches a keep-alive
        client with Content-Length: 0, so that the next response on the
        connection is told apart.
        """
        factory = Factory.forProtocol(_EmptyOK)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.startBalancer([f"http://127.0.0.1:{port.getHost().port}"])
        raw = await rawExchange(
            reactor,
            self.port,
            b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        first, second = raw.split(b"\r\n\r\n")[:2]
        self.assertTrue(first.startswith(b"HTTP/1.1 200 OK\r\n"), raw)
        self.assertIn(b"\r\nContent-Length: 0", first)
        self.assertTrue(second.startswith(b"HTTP/1.1 200 OK\r\n"), raw)


class _Hello(Protocol):
    """
    A member that answers every request in what it reads with "hello".
    """

    def dataReceived(self, data):
        count = data.count(b"\r\n\r\n")
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" * count)


#: What one request makes: none of these may be left in a reference cycle.
PER_REQUEST = {
    "playbalancer.http.exchange.Exchange",
    "playbalancer.http.attempt.Attempt",
    "playbalancer.http.requestbody.RequestBody",
    "playbalancer.http.retry.RetryState",
    "playbalancer.http.interim.Interim",
    "playbalancer.http.wire.RequestHead",
    "playbalancer.http.wire.ResponseHead",
}


class GarbageTests(ProxyTestCase):
    if platform.python_implementation() != "CPython":
        skip = "reference counting, and gc.set_debug, are CPython's (PyPy's collector is a different design)"

    async def test_requestsLeaveNoCycles(self):
        """
        Over real sockets: the objects of a request are freed by reference
        counting as soon as the next request on the connection replaces
        it, never left for the cyclic garbage collector (whose passes cost
        CPU on the data path).
        """
        factory = Factory.forProtocol(_Hello)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.startBalancer([f"http://127.0.0.1:{port.getHost().port}"])
        close = b"GET /0 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        await rawExchange(reactor, self.port, close)  # (the pool's first connection)
        gc.collect()
        self.addCleanup(gc.enable)
        gc.disable()
        raw = await rawExchange(reactor, self.port, b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" * 20 + close)
        self.assertEqual(raw.count(b"hello"), 21)
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            cyclic = [type(o) for o in gc.garbage]
        finally:
            gc.set_debug(0)
            del gc.garbage[:]
        names = Counter(f"{t.__module__}.{t.__qualname__}" for t in cyclic)
        # The client connection is a cycle of its own (with its transport)
        # until the collector frees it, and holds its last request.
        left = {name: count for name, count in names.items() if name in PER_REQUEST and count > 1}
        self.assertEqual(left, {})
