"""
The HTTP proxy over real sockets on 127.0.0.1: scheduling, failover, header
rules, connection reuse, errors.
"""

from __future__ import annotations

import json

from twisted.internet import defer, reactor
from twisted.web.http_headers import Headers

from playbalancer.testing import BrokenMember, closeAll, rawExchange

from tests.proxyharness import ProxyTestCase, headerValues, servedBy


class SchedulingTests(ProxyTestCase):
    async def test_roundRobinAlternates(self):
        """
        Round robin over two equal members alternates between them.
        """
        a, b = self.startMembers("app1", "app2")
        self.startBalancer([a.url, b.url], scheduler="round-robin")
        client = self.client()
        served = []
        for _ in range(8):
            response, body = await self.fetch(client, "/")
            self.assertEqual(response.code, 200)
            served.append(servedBy(response))
        self.assertEqual(served, ["app1", "app2"] * 4)
        self.assertEqual(len(a.seen), 4)
        self.assertEqual(len(b.seen), 4)

    async def test_weightsShareTraffic(self):
        """
        Weighted round robin gives a weight-3 member three times the share.
        """
        a, b = self.startMembers("app1", "app2")
        self.startBalancer([a.url, b.url], weights=[3, 1])
        client = self.client()
        for _ in range(12):
            response, _ = await self.fetch(client, "/")
            self.assertEqual(response.code, 200)
        self.assertEqual((len(a.seen), len(b.seen)), (9, 3))

    async def test_leastConnAvoidsBusyMember(self):
        """
        While one member is busy with a slow request, least-conn sends new
        requests to the other.
        """
        a, b = self.startMembers("app1", "app2")
        self.startBalancer([a.url, b.url], scheduler="least-conn")
        client = self.client()
        arrived = defer.DeferredList([a.hold.arrival(), b.hold.arrival()], fireOnOneCallback=True)
        slow = defer.ensureDeferred(self.fetch(self.client(), "/hold"))
        await arrived
        busy, idle = (a, b) if a.hold.held else (b, a)
        served = []
        for _ in range(6):
            response, _ = await self.fetch(client, "/")
            served.append(servedBy(response))
        self.assertEqual(served, [idle.name] * 6)
        busy.hold.release()
        response, body = await slow
        self.assertEqual((response.code, body), (200, b"released\n"))

    async def test_standbyFailoverAndReturn(self):
        """
        With the standby scheduler and a hot standby, all traffic goes to the
        first member; when it is stopped every request goes to the standby
        and none fails; once it is back and C{retry} has passed, traffic
        returns to it.
        """
        a, b = self.startMembers("app1", "app2")
        balancer = self.startBalancer([a.url, b.url], scheduler="standby", standby={1}, retry=30)
        client = self.client()
        for _ in range(3):
            response, _ = await self.fetch(client, "/")
            self.assertEqual(servedBy(response), "app1")
        await a.stop()
        for _ in range(5):
            response, body = await self.fetch(client, "/")
            self.assertEqual((response.code, servedBy(response)), (200, "app2"), body)
        appOne = balancer.member("app1")
        self.assertFalse(appOne.healthy)
        self.assertIn("refused", appOne.downReason)
        a.start()
        response, _ = await self.fetch(client, "/")
        self.assertEqual(servedBy(response), "app2")
        self.clock.advance(31)
        for _ in range(3):
            response, _ = await self.fetch(client, "/")
            self.assertEqual(servedBy(response), "app1")
        self.assertTrue(appOne.healthy)

    async def test_failoverForPostBeforeSending(self):
        """
        A member that refuses connections gets no request, whatever the
        method: the POST goes to the next member with its body.
        """
        a, b = self.startMembers("app1", "app2")
        self.startBalancer([a.url, b.url], scheduler="standby")
        await a.stop()
        echoed = await self.echo(self.client(), method="POST", data=b"payload")
        self.assertEqual((echoed["instance"], echoed["body_sample"]), ("app2", "payload"))

    async def test_forceRecovery(self):
        """
        When every member is resting after failures, they are tried anyway:
        one member coming back means traffic at once, not after C{retry}.
        """
        (a,) = self.startMembers("app1")
        balancer = self.startBalancer([a.url], retry=60)
        client = self.client()
        await a.stop()
        response, _ = await self.fetch(client, "/")
        self.assertEqual(response.code, 503)
        self.assertFalse(balancer.member("app1").healthy)
        a.start()
        response, _ = await self.fetch(client, "/")
        self.assertEqual((response.code, servedBy(response)), (200, "app1"))
        self.assertTrue(balancer.member("app1").healthy)


class HeaderTests(ProxyTestCase):
    async def test_underscoreNamesDropped(self):
        """
        Header names with C{_} do not reach the member by default: a WSGI
        or PHP member would read C{X_Real_IP} as C{X-Real-IP}.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        headers = Headers(
            {b"X_Real_IP": [b"10.6.6.6"], b"X_Forwarded_For": [b"10.6.6.6"], b"X-Kept": [b"yes"]}
        )
        echoed = await self.echo(self.client(), headers=headers)
        names = [name.lower() for name, _ in echoed["headers"]]
        self.assertNotIn("x_real_ip", names)
        self.assertNotIn("x_forwarded_for", names)
        self.assertEqual(headerValues(echoed, "x-kept"), ["yes"])

    async def test_underscoreNamesAllowed(self):
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.proxy.underscoresInHeaders = True
        echoed = await self.echo(self.client(), headers=Headers({b"X_App_Token": [b"t"]}))
        self.assertEqual(headerValues(echoed, "x_app_token"), ["t"])

    async def test_forwardedHeadersAndHost(self):
        """
        The member sees the client's Host, X-Forwarded-For and Forwarded
        made from the socket peer (what an untrusted client sent is
        dropped), X-Forwarded-Proto and X-Forwarded-Host; hop-by-hop
        headers (and those named in Connection) are removed; repeated
        headers stay repeated, in order.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        headers = Headers(
            {
                b"Host": [b"www.example.com"],
                b"X-Forwarded-For": [b"10.1.2.3"],
                b"X-Forwarded-Proto": [b"https"],
                b"Forwarded": [b"for=10.9.9.9"],
                b"Connection": [b"X-Secret, X-Forwarded-For"],
                b"X-Secret": [b"do not forward"],
                b"Keep-Alive": [b"timeout=5"],
                b"TE": [b"trailers"],
                b"Proxy-Authorization": [b"Basic Zm9vOmJhcg=="],
                b"Proxy-Connection": [b"keep-alive"],
                b"X-Multi": [b"one", b"two"],
            }
        )
        echoed = await self.echo(self.client(), headers=headers)
        self.assertEqual(headerValues(echoed, "host"), ["www.example.com"])
        self.assertEqual(headerValues(echoed, "x-forwarded-for"), ["127.0.0.1"])
        self.assertEqual(
            headerValues(echoed, "forwarded"), ['for=127.0.0.1;proto=http;host="www.example.com"']
        )
        self.assertEqual(headerValues(echoed, "x-forwarded-proto"), ["http"])
        self.assertEqual(headerValues(echoed, "x-forwarded-host"), ["www.example.com"])
        self.assertEqual(headerValues(echoed, "x-multi"), ["one", "two"])
        for name in ["x-secret", "keep-alive", "te", "proxy-authorization", "proxy-connection"]:
            self.assertEqual(headerValues(echoed, name), [], name)
        connection = headerValues(echoed, "connection")
        self.assertNotIn("X-Secret", " ".join(connection))

    async def test_trustedProxyChainExtended(self):
        """
        From a proxy in C{trusted_proxies}, X-Forwarded-For and Forwarded
        are extended, and its X-Forwarded-Proto and -Host are kept; a
        C{Connection} header naming X-Forwarded-For cannot remove ours.
        """
        import ipaddress

        (a,) = self.startMembers("app1")
        self.startBalancer([a.url], trustedProxies=[ipaddress.ip_network("127.0.0.0/8")])
        headers = Headers(
            {
                b"Host": [b"www.example.com"],
                b"X-Forwarded-For": [b"10.1.2.3"],
                b"X-Forwarded-Proto": [b"https"],
                b"X-Forwarded-Host": [b"public.example"],
                b"Forwarded": [b"for=10.1.2.3;proto=https"],
                b"Connection": [b"X-Forwarded-For"],
            }
        )
        echoed = await self.echo(self.client(), headers=headers)
        self.assertEqual(headerValues(echoed, "x-forwarded-for"), ["127.0.0.1"])
        headers.removeHeader(b"connection")
        echoed = await self.echo(self.client(), headers=headers)
        self.assertEqual(headerValues(echoed, "x-forwarded-for"), ["10.1.2.3, 127.0.0.1"])
        self.assertEqual(headerValues(echoed, "x-forwarded-proto"), ["https"])
        self.assertEqual(headerValues(echoed, "x-forwarded-host"), ["public.example"])
        self.assertEqual(
            headerValues(echoed, "forwarded"),
            ['for=10.1.2.3;proto=https, for=127.0.0.1;proto=http;host="www.example.com"'],
        )

    async def test_memberHostWhenNotPreserved(self):
        """
        With C{preserve_host = false} the member gets its own host and port.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url], preserveHost=False)
        echoed = await self.echo(self.client(), headers={b"Host": [b"www.example.com"]})
        self.assertEqual(headerValues(echoed, "host"), [f"127.0.0.1:{a.port}"])
        self.assertEqual(headerValues(echoed, "x-forwarded-host"), ["www.example.com"])

    async def test_responseHopByHopRemoved(self):
        """
        A member's hop-by-hop response headers do not reach the client;
        repeated Set-Cookie headers do, each one.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        raw = await rawExchange(
            reactor, self.port, b"GET /headers HTTP/1.1\r\nHost: front:80\r\nConnection: close\r\n\r\n"
        )
        head = raw.split(b"\r\n\r\n", 1)[0].lower()
        self.assertTrue(head.startswith(b"http/1.1 200"), raw)
        self.assertNotIn(b"x-internal", head)
        self.assertNotIn(b"keep-alive", head)
        self.assertEqual(head.count(b"set-cookie: "), 2)
        self.assertIn(b"set-cookie: a=1", head)
        self.assertIn(b"set-cookie: b=2", head)
        self.assertIn(b"content-location: http://front:80/c", head)

    async def test_locationRewritten(self):
        """
        A redirect to the member's own URL is rewritten to the address the
        client used (ProxyPassReverse).
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        response, _ = await self.fetch(
            self.client(), "/redirect", allow_redirects=False, headers={b"Host": [b"shop.example:8080"]}
        )
        self.assertEqual(response.code, 302)
        self.assertEqual(response.headers.getRawHeaders(b"location"), [b"http://shop.example:8080/"])

    async def test_membersOwnContentType(self):
        """
        The member's own Content-Type and Content-Length reach the client
        (a response without one gets none: see test_interop).
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        response, body = await self.fetch(self.client(), "/hold-not-there")
        self.assertEqual(response.code, 404)
        # The demo's 404 page is from twisted.web (text/html); HEAD of /large
        # is octet-stream: both are the member's own.
        response, body = await self.fetch(self.client(), "/large?size=1000", method="HEAD")
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"application/octet-stream"])
        self.assertEqual(response.headers.getRawHeaders(b"content-length"), [b"1000"])
        self.assertEqual(body, b"")


class ConnectionTests(ProxyTestCase):
    async def test_memberConnectionsReused(self):
        """
        Sequential keep-alive requests reuse pooled member connections.
        """
        a, b = self.startMembers("app1", "app2")
        self.startBalancer([a.url, b.url])
        client = self.client()
        for _ in range(40):
            response, _ = await self.fetch(client, "/")
            self.assertEqual(response.code, 200)
        self.assertEqual((len(a.seen), len(b.seen)), (20, 20))
        self.assertEqual((a.connections, b.connections), (1, 1))

    async def test_chunkedUploadReachesMemberFramed(self):
        """
        A chunked request body reaches the member whole and correctly
        framed.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        body = b"".join(b"%05d" % i for i in range(40000))
        request = (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n"
        )
        for start in range(0, len(body), 7000):
            piece = body[start : start + 7000]
            request += b"%x\r\n" % len(piece) + piece + b"\r\n"
        request += b"0\r\n\r\n"
        raw = await rawExchange(reactor, self.port, request)
        self.assertIn(b'"body_length": %d' % len(body), raw)
        self.assertIn(b'"body_sample": "0000000001', raw)

    async def test_clientGoneCancelsMemberRequest(self):
        """
        A client that goes away while its request waits on a member gets
        that member request cancelled, and the member's count drops back.
        """
        (a,) = self.startMembers("app1")
        balancer = self.startBalancer([a.url])
        arrived = a.hold.arrival()
        pending = rawExchange(reactor, self.port, b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        await arrived
        self.assertEqual(balancer.member("app1").active, 1)
        await closeAll(self.frontFactory, reactor)
        await pending
        from playbalancer.testing import waitUntil

        await waitUntil(lambda: a.hold.cancelled, reactor)
        self.assertEqual(balancer.member("app1").active, 0)


class ErrorTests(ProxyTestCase):
    async def test_503WhenNothingUsable(self):
        """
        With no usable member the balancer answers 503 with Retry-After.
        """
        (a,) = self.startMembers("app1")
        balancer = self.startBalancer([a.url])
        balancer.member("app1").admin = "disabled"
        response, body = await self.fetch(self.client(), "/")
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers.getRawHeaders(b"retry-after"), [b"1"])
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"])
        self.assertEqual(a.seen, [])

    async def test_503WhenAllRefuse(self):
        """
        When every member refuses connections: 503, and each is marked down.
        """
        a, b = self.startMembers("app1", "app2")
        balancer = self.startBalancer([a.url, b.url], retry=30)
        await a.stop()
        await b.stop()
        response, body = await self.fetch(self.client(), "/")
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers.getRawHeaders(b"retry-after"), [b"30"])
        self.assertEqual([m.healthy for m in balancer.members], [False, False])

    async def test_504WhenMemberTooSlow(self):
        """
        A member that does not answer within C{timeout} gets a 504 sent for
        it.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url], timeout=0.2)
        response, body = await self.fetch(self.client(), "/hold")
        self.assertEqual(response.code, 504)
        self.assertIn(b"Gateway Timeout", body)
        a.hold.release()

    async def test_idempotentRetriedAfterClose(self):
        """
        A member that closes before answering a GET: the GET is retried on
        the next member and succeeds; the broken one is marked down.
        """
        broken = BrokenMember("close", reactor).start()
        self.addCleanup(broken.stop)
        (good,) = self.startMembers("app2")
        balancer = self.startBalancer([broken.url, good.url], scheduler="standby")
        response, body = await self.fetch(self.client(), "/")
        self.assertEqual((response.code, servedBy(response)), (200, "app2"))
        self.assertEqual(len(broken.requests), 1)
        self.assertFalse(balancer.member("app1").healthy)

    async def test_postNotRetriedAfterSend(self):
        """
        A POST that reached a member which then closed is not sent again:
        502, and the other member never sees it.
        """
        broken = BrokenMember("reset", reactor).start()
        self.addCleanup(broken.stop)
        (good,) = self.startMembers("app2")
        self.startBalancer([broken.url, good.url], scheduler="standby")
        response, body = await self.fetch(self.client(), "/echo", method="POST", data=b"once")
        self.assertEqual(response.code, 502)
        self.assertEqual(len(broken.requests), 1)
        self.assertEqual(good.seen, [])

    async def test_postWithIdempotencyKeyRetriedWhenAllowed(self):
        """
        With C{retry_idempotency_key}, a POST carrying an C{Idempotency-Key}
        is retried on the next member; without the header, or without the
        setting, it is not.
        """
        broken = BrokenMember("reset", reactor).start()
        self.addCleanup(broken.stop)
        (good,) = self.startMembers("app2")
        balancer = self.startBalancer([broken.url, good.url], scheduler="standby", retry=0)
        keyed = {b"Idempotency-Key": [b'"8e03978e-40d5-43e8-bc93-6894a57f9324"']}
        response, body = await self.fetch(
            self.client(), "/echo", method="POST", data=b"once", headers=keyed
        )
        self.assertEqual(response.code, 502)  # not allowed yet
        balancer.retryIdempotencyKey = True
        balancer.reset(balancer.member("app1"))
        response, body = await self.fetch(self.client(), "/echo", method="POST", data=b"plain")
        self.assertEqual(response.code, 502)  # no key
        balancer.reset(balancer.member("app1"))
        response, body = await self.fetch(
            self.client(), "/echo", method="POST", data=b"keyed", headers=keyed
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(body)["body_sample"], "keyed")
        self.assertEqual([r.method for r in good.seen], [b"POST"])

    async def test_truncatedLengthResponseClosesClient(self):
        """
        A member that breaks off after the headers: the client connection
        is closed, and what it got is visibly short of Content-Length.
        """
        broken = BrokenMember("truncate-length", reactor).start()
        self.addCleanup(broken.stop)
        self.startBalancer([broken.url])
        raw = await rawExchange(reactor, self.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: 100", head)
        self.assertEqual(len(body), 10)

    async def test_truncatedChunkedResponseHasNoLastChunk(self):
        """
        A chunked response broken off by the member never gets the last
        chunk that would make it look complete.
        """
        broken = BrokenMember("truncate-chunked", reactor).start()
        self.addCleanup(broken.stop)
        self.startBalancer([broken.url])
        raw = await rawExchange(reactor, self.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertIn(b"Transfer-Encoding: chunked", head)
        self.assertIn(b"5\r\nhello\r\n", body)
        self.assertNotIn(b"0\r\n\r\n", body)

    async def test_malformedNeverReachesMember(self):
        """
        Requests twisted.web would accept but a proxy must not pass on get a
        400 and never reach a member.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        for request in [
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET nonsense HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]:
            raw = await rawExchange(reactor, self.port, request)
            self.assertTrue(raw.startswith(b"HTTP/1.1 400"), (request, raw))
        self.assertEqual(a.seen, [])

    async def test_bodyTooLarge(self):
        """
        A body over C{max_body} gets a 413, declared or chunked, and nothing
        reaches the member.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url], maxBody=1000)
        raw = await rawExchange(
            reactor,
            self.port,
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n" + b"x" * 1001,
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 413"), raw)
        chunk = b"x" * 600
        raw = await rawExchange(
            reactor,
            self.port,
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"258\r\n" + chunk + b"\r\n") * 2
            + b"0\r\n\r\n",
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 413"), raw)
        echoed = await self.echo(self.client(), method="POST", data=b"x" * 1000)
        self.assertEqual(echoed["body_length"], 1000)
        self.assertEqual(len(a.seen), 1)


class _Exploding:
    def pick(self, candidates, request):
        raise ZeroDivisionError("scheduler bug")


class BugTests(ProxyTestCase):
    async def test_bugGivesPlainTextError(self):
        """
        An exception in our own code (here, a scheduler) gives the client a
        short plain-text 500, never a traceback or a hanging request.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.balancer.scheduler = _Exploding()
        response, body = await self.fetch(self.client(), "/")
        self.assertEqual((response.code, body), (500, b"Internal Server Error\n"))
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(a.seen, [])


class StalePoolTests(ProxyTestCase):
    def test_closedByPeer(self):
        """
        An idle pooled connection is stale once its peer closed it, reset
        it or sent bytes on it; not while it is quiet.
        """
        import socket

        from playbalancer.upstream import closedByPeer

        class Connection:
            def __init__(self, sock):
                self.transport = self
                self.sock = sock

            def getHandle(self):
                return self.sock

        for action, stale in [("nothing", False), ("close", True), ("write", True)]:
            ours, theirs = socket.socketpair()
            ours.setblocking(False)
            if action == "close":
                theirs.close()
            elif action == "write":
                theirs.send(b"x")
            self.assertEqual(closedByPeer(Connection(ours)), stale, action)
            ours.close()
            if action != "close":
                theirs.close()

        class NoHandle:
            transport = object()

        self.assertFalse(closedByPeer(NoHandle()))


class GracefulStopTests(ProxyTestCase):
    async def test_stopClosesConnectionsWithoutCuttingRequests(self):
        """
        Stopping the front service closes idle client connections at once,
        lets a request in flight finish with C{Connection: close}, then
        closes its connection.
        """
        from twisted.internet.endpoints import TCP4ServerEndpoint

        from playbalancer.site import GracefulService
        from playbalancer.testing import waitUntil

        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        site = self.front
        service = GracefulService(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), site, reactor)
        service.startService()
        port = service._waitingForPort.result.getHost().port
        idle = rawExchange(reactor, port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await waitUntil(lambda: len(a.seen) == 1, reactor)
        arrived = a.hold.arrival()
        busy = rawExchange(reactor, port, b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        await arrived
        stopped = service.stopService()
        done = []
        stopped.addCallback(done.append)
        idleAnswer = await idle
        self.assertIn(b"Hello from app1", idleAnswer)
        self.assertEqual(done, [])
        a.hold.release()
        busyAnswer = await busy
        self.assertIn(b"Connection: close", busyAnswer.split(b"\r\n\r\n")[0])
        self.assertTrue(busyAnswer.endswith(b"released\n\r\n0\r\n\r\n"))
        await waitUntil(lambda: done, reactor)
        self.assertEqual(site.connections, set())

    async def test_newConnectionGetsItsFirstRequestAnswered(self):
        """
        A connection accepted just before the stop, whose request is still
        on its way, is not closed as idle: its request is answered (with
        C{Connection: close}); a keep-alive connection between requests is
        closed at once.
        """
        from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
        from twisted.internet.protocol import Protocol

        from playbalancer.site import GracefulService
        from playbalancer.testing import waitUntil

        class Quiet(Protocol):
            def __init__(self):
                self.received = b""
                self.closed = defer.Deferred()

            def dataReceived(self, data):
                self.received += data

            def connectionLost(self, reason):
                self.closed.callback(self.received)

        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        site = self.front
        service = GracefulService(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), site, reactor)
        service.startService()
        port = service._waitingForPort.result.getHost().port
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        fresh = await connectProtocol(endpoint, Quiet())
        kept = await connectProtocol(endpoint, Quiet())
        kept.transport.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await waitUntil(lambda: b"Hello from app1" in kept.received, reactor)
        await waitUntil(lambda: len(site.connections) == 2, reactor)
        stopped = service.stopService()
        self.assertIn(b"Hello from app1", await kept.closed)
        self.assertFalse(fresh.closed.called)
        fresh.transport.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await fresh.closed
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:40])
        self.assertIn(b"Connection: close", answer.split(b"\r\n\r\n")[0])
        await stopped


    async def test_handingOverLetsIdleConnectionsAskOnceMore(self):
        """
        When another process takes over (C{lingerIdle}), an idle keep-alive
        connection is not closed under its client: its next request is
        answered, with C{Connection: close}.
        """
        from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
        from twisted.internet.protocol import Protocol

        from playbalancer.site import GracefulService
        from playbalancer.testing import waitUntil

        class Client(Protocol):
            def __init__(self):
                self.received = b""
                self.closed = defer.Deferred()

            def dataReceived(self, data):
                self.received += data

            def connectionLost(self, reason):
                self.closed.callback(self.received)

        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        site = self.front
        service = GracefulService(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), site, reactor)
        service.startService()
        port = service._waitingForPort.result.getHost().port
        kept = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Client())
        kept.transport.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await waitUntil(lambda: b"Hello from app1" in kept.received, reactor)
        first = len(kept.received)
        service.lingerIdle = True
        stopped = service.stopService()
        self.assertFalse(kept.closed.called)
        kept.transport.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = (await kept.closed)[first:]
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:40])
        self.assertIn(b"Connection: close", answer.split(b"\r\n\r\n")[0])
        await stopped


class AcceptProxyProtocolTests(ProxyTestCase):
    async def test_clientAddressFromProxyLine(self):
        """
        Behind another balancer that sends a PROXY line, X-Forwarded-For
        names the real client.
        """
        from twisted.protocols.haproxy._wrapper import HAProxyWrappingFactory

        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        port = reactor.listenTCP(0, HAProxyWrappingFactory(self.front), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        raw = await rawExchange(
            reactor,
            port.getHost().port,
            b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 80\r\n"
            b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        self.assertIn(b'["X-Forwarded-For", "192.0.2.7"]', raw)


class StallTests(ProxyTestCase):
    async def test_memberStallsMidBody(self):
        """
        A member that goes quiet in the middle of a body for C{timeout}
        seconds is given up on: the client connection is closed short of
        Content-Length, and nothing stays in flight.
        """
        broken = BrokenMember("stall", reactor).start()
        self.addCleanup(broken.stop)
        balancer = self.startBalancer([broken.url], timeout=0.3)
        raw = await rawExchange(reactor, self.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: 100", head)
        self.assertEqual(len(body), 3)
        self.assertEqual(balancer.member("app1").active, 0)

    async def test_noContinueAfter413(self):
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url], maxBody=10)
        raw = await rawExchange(
            reactor,
            self.port,
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n",
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 413"), raw)
        self.assertNotIn(b"100 Continue", raw)
