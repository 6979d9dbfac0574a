"""
README promises about the HTTP proxy, its settings and their defaults,
metrics and the access log, proved over real sockets where there is
traffic (see the audit of README.rst; the row numbers are its own).
"""

from __future__ import annotations

import io
import socket
import time

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from playbalancer.front import FrontSettings
from playbalancer.manager import ManagerRoot
from playbalancer.manager.guard import AccessPolicy
from playbalancer.observe.accesslog import AccessLog, ReopenOnSignal
from playbalancer.observe.metrics import MetricsPage, registryFor
from playbalancer.testing import MemberServer, RawConversation, rawExchange, waitUntil
from playbalancer.testing.faultmember import FaultMember

from tests.promiseharness import ServiceTestCase, blackHole
from tests.proxyharness import ProxyTestCase, servedBy

GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


class KeepaliveTests(ServiceTestCase):
    async def test_keepaliveCapsIdleConnections(self):
        """
        #53: with C{keepalive = 1}, after three requests in flight at once
        to one member (three member connections), only one connection stays
        open to the member, and the next request reuses it.
        """
        member = MemberServer("app1", reactor).start()
        self.addCleanup(member.stop)
        service, (front,) = await self.startService(
            f"""
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
balancer = "web"

[balancer.web]
keepalive = 1

[[balancer.web.member]]
name = "app1"
url = "{member.url}"
"""
        )
        base = f"http://127.0.0.1:{front.getHost().port}"
        clients = [self.client(persistent=False) for _ in range(3)]
        held = [defer.ensureDeferred(self._get(c, base + "/hold")) for c in clients]
        await waitUntil(lambda: len(member.hold.held) == 3, reactor)
        self.assertEqual(member.connections, 3)
        member.hold.release()
        for d in held:
            self.assertEqual(await d, 200)
        open_ = member._factory.protocols
        await waitUntil(lambda: len(open_) <= 1, reactor)
        self.assertEqual(len(open_), 1)
        self.assertEqual(await self._get(clients[0], base + "/"), 200)
        self.assertEqual(member.connections, 3)  # reused, not a fourth

    async def _get(self, client, url):
        response = await client.get(url)
        await response.content()
        return response.code


class IdleCloseTests(ProxyTestCase):
    def test_idleTimeoutDefault(self):
        """
        #53: pooled connections are closed after 30 s idle by default.
        """
        from playbalancer.upstream import MemberPool

        self.assertEqual(MemberPool(None, None).idleTimeout, 30.0)

    async def test_idleConnectionClosed(self):
        """
        #53: an idle pooled connection is closed once its idle time is up,
        and the member sees it close.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url], idleTimeout=0.3)
        response, _ = await self.fetch(self.client(), "/")
        self.assertEqual(response.code, 200)
        self.assertEqual(len(a._factory.protocols), 1)
        await waitUntil(lambda: not a._factory.protocols, reactor, timeout=10)


class ConnectTimeoutTests(ServiceTestCase):
    async def test_memberThatNeverAcceptsIsGivenUp(self):
        """
        #52: a member whose connect never completes is given up after
        C{connect_timeout} (here 0.5 s, far below the 5 s default) and the
        request goes to the next member.
        """
        hole = blackHole(self)
        good = MemberServer("app2", reactor).start()
        self.addCleanup(good.stop)
        service, (front,) = await self.startService(
            f"""
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
balancer = "web"

[balancer.web]
scheduler = "standby"
connect_timeout = 0.5

[[balancer.web.member]]
name = "app1"
url = "{hole}"

[[balancer.web.member]]
name = "app2"
url = "{good.url}"
"""
        )
        client = self.client(persistent=False)
        started = time.monotonic()
        response = await client.get(f"http://127.0.0.1:{front.getHost().port}/")
        await response.content()
        elapsed = time.monotonic() - started
        self.assertEqual((response.code, servedBy(response)), (200, "app2"))
        self.assertLess(elapsed, 4.0)  # not the 5 s default
        app1 = service.balancers["web"].member("app1")
        self.assertFalse(app1.healthy)
        self.assertEqual(app1.downReason, "connect timeout")
        self.assertEqual(app1.stats.failures["connect"], 1)


def samples(text):
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


class MetricFamilyTests(ProxyTestCase):
    """
    #119: the metric families no other test moves, each after the traffic
    that should move it, scraped from C{/metrics} over a socket.
    """

    async def scrape(self):
        policy = AccessPolicy(["127.0.0.0/8"], None, reactor)
        balancers = {"test": self.balancer}
        registry = registryFor(balancers, [("tcp:front", self.front)])
        manager = ManagerRoot(balancers, policy, reactor, metrics=MetricsPage(registry))
        site = Site(manager)
        site.log = lambda request: None
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        raw = await rawExchange(
            reactor,
            port.getHost().port,
            b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        if b"transfer-encoding: chunked" in head.lower():
            body = _dechunk(body)
        found = samples(body.decode())

        def value(name, **labels):
            return found[(name, frozenset(labels.items()))]

        return value

    async def test_retryAndReset(self):
        """
        A member that resets before answering a GET: C{kind="reset"} on it,
        C{retries_total} on it, and the answer from the next member.
        """
        bad = FaultMember(reactor, "reset", name="bad").start()
        good = FaultMember(reactor, "ok", name="good").start()
        self.addCleanup(bad.stop)
        self.addCleanup(good.stop)
        self.startBalancer([bad.url, good.url], scheduler="standby")
        raw = await rawExchange(reactor, self.port, GET)
        self.assertTrue(raw.startswith(b"HTTP/1.1 200"), raw)
        value = await self.scrape()
        m = dict(balancer="test", member="app1")
        self.assertEqual(value("playbalancer_member_failures_total", kind="reset", **m), 1)
        self.assertEqual(value("playbalancer_member_retries_total", **m), 1)
        self.assertEqual(
            value("playbalancer_member_responses_total", balancer="test", member="app2", code="2xx"), 1
        )

    async def test_connectFailure(self):
        """
        A refused member: C{kind="connect"} and a retry on it.
        """
        bad = FaultMember(reactor, "refuse", name="bad").start()
        good = FaultMember(reactor, "ok", name="good").start()
        self.addCleanup(bad.stop)
        self.addCleanup(good.stop)
        self.startBalancer([bad.url, good.url], scheduler="standby")
        raw = await rawExchange(reactor, self.port, GET)
        self.assertTrue(raw.startswith(b"HTTP/1.1 200"), raw)
        value = await self.scrape()
        m = dict(balancer="test", member="app1")
        self.assertEqual(value("playbalancer_member_failures_total", kind="connect", **m), 1)
        self.assertEqual(value("playbalancer_member_retries_total", **m), 1)
        self.assertEqual(value("playbalancer_member_up", **m), 0)

    async def test_badResponse(self):
        """
        A malformed response head: C{kind="bad_response"}.
        """
        bad = FaultMember(reactor, "garbage-status", name="bad").start()
        self.addCleanup(bad.stop)
        self.startBalancer([bad.url])
        raw = await rawExchange(reactor, self.port, GET)
        self.assertTrue(raw.startswith(b"HTTP/1.1 502"), raw)
        value = await self.scrape()
        self.assertEqual(
            value("playbalancer_member_failures_total", balancer="test", member="app1", kind="bad_response"), 1
        )

    async def test_queueFull(self):
        """
        A request beyond C{max_connections_per_member} with no room in the
        queue: 503 and C{kind="queue_full"}.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url], maxConnections=1, queueLimit=0)
        arrived = a.hold.arrival()
        held = defer.ensureDeferred(self.fetch(self.client(persistent=False), "/hold"))
        await arrived
        raw = await rawExchange(reactor, self.port, GET)
        self.assertTrue(raw.startswith(b"HTTP/1.1 503"), raw)
        value = await self.scrape()
        self.assertEqual(
            value("playbalancer_member_failures_total", balancer="test", member="app1", kind="queue_full"), 1
        )
        a.hold.release()
        response, _ = await held
        self.assertEqual(response.code, 200)

    async def test_unavailable(self):
        """
        No usable member: 503, and C{balancer_unavailable_total} counts it.
        """
        (a,) = self.startMembers("app1")
        balancer = self.startBalancer([a.url])
        balancer.setAdmin(balancer.member("app1"), "disabled", "test")
        for _ in range(2):
            raw = await rawExchange(reactor, self.port, GET)
            self.assertTrue(raw.startswith(b"HTTP/1.1 503"), raw)
        value = await self.scrape()
        self.assertEqual(value("playbalancer_balancer_unavailable_total", balancer="test"), 2)

    async def test_sentBytes(self):
        """
        A POST body: C{sent_bytes_total} counts its bytes.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        body = b"x" * 1000
        raw = await rawExchange(
            reactor,
            self.port,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n" + body,
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 200"), raw)
        value = await self.scrape()
        self.assertEqual(
            value("playbalancer_member_sent_bytes_total", balancer="test", member="app1"), 1000
        )

    async def test_listenerConnectionsAndRejected(self):
        """
        A connection held open shows in C{listener_connections}; one over
        C{max_connections} is closed at once and counted in
        C{listener_rejected_connections_total}.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url], settings=FrontSettings(maxConnections=1))
        held = await RawConversation.open(reactor, self.port)
        self.addCleanup(held.close)
        await waitUntil(lambda: self.front.openConnections == 1, reactor)
        over = await rawExchange(reactor, self.port, GET)
        self.assertEqual(over, b"")
        value = await self.scrape()
        self.assertEqual(value("playbalancer_listener_connections", listener="tcp:front"), 1)
        self.assertEqual(
            value("playbalancer_listener_rejected_connections_total", listener="tcp:front"), 1
        )


def _dechunk(data):
    out = b""
    while data:
        size, _, data = data.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            break
        out, data = out + data[:n], data[n + 2:]
    return out


class AccessLogFlushTests(TestCase):
    def test_bufferedAtMostASecond(self):
        """
        #44: a line written to the access log reaches the file within a
        second (on the flush loop's clock), with no explicit flush.
        """
        path = self.mktemp()
        clock = Clock()
        log = AccessLog.open(path, clock)
        service = ReopenOnSignal(log, clock)
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        log.write(b"first line\n")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"")  # buffered for now
        clock.advance(0.5)
        log.write(b"second line\n")
        clock.advance(0.5)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"first line\nsecond line\n")
        log.write(b"third line\n")
        clock.advance(1.0)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"first line\nsecond line\nthird line\n")


class DefaultsTests(TestCase):
    """
    #37, #55, #116, #19: the defaults the README states, as numbers.
    """

    def parse(self, extra=""):
        from playbalancer.config import parseConfig, tomllib

        return parseConfig(
            tomllib.loads(
                f"""
{extra}
[[listen]]
endpoint = "tcp:8080"
balancer = "web"

[[balancer.web.member]]
name = "app1"
url = "http://127.0.0.1:9999"
"""
            )
        )

    def test_listenerDefaults(self):
        from playbalancer.tap import frontSettings

        (listener,) = self.parse().listeners
        self.assertEqual(
            (
                listener.preserveHost, listener.maxBody, listener.headerTimeout,
                listener.idleTimeout, listener.bodyTimeout, listener.bodyMinRate,
                listener.bodyDeadline, listener.tunnelIdleTimeout, listener.sendTimeout,
                listener.bufferSize, listener.underscoresInHeaders, listener.maxConnections,
                listener.maxRequestLine, listener.maxHeaderLine, listener.maxHeaderBytes,
                listener.maxHeaders, listener.acceptProxyProtocol, listener.accessLog,
                listener.mode, listener.trustedProxies,
            ),
            (True, 0, 10, 75, 60, 500, 0, 3600, 60, 16384, False, 10000, 8192, 8192, 65536, 100,
             False, None, "http", []),
        )
        settings = frontSettings(listener)
        self.assertEqual(
            (
                settings.headerTimeout, settings.idleTimeout, settings.bodyTimeout,
                settings.minBodyRate, settings.bodyDeadline, settings.tunnelIdleTimeout,
                settings.sendTimeout, settings.maxBody, settings.maxConnections,
                settings.limits.maxRequestLine, settings.limits.maxHeaderLine,
                settings.limits.maxHeaderBytes, settings.limits.maxHeaders,
            ),
            (10, 75, 60, 500, 0, 3600, 60, 0, 10000, 8192, 8192, 65536, 100),
        )

    def test_balancerDefaults(self):
        balancer = self.parse().balancers["web"]
        self.assertEqual(
            (
                balancer.scheduler, balancer.retry, balancer.timeout, balancer.connectTimeout,
                balancer.keepalive, balancer.maxConnections, balancer.queue, balancer.queueTimeout,
                balancer.retryIdempotencyKey, balancer.failOnStatus, balancer.health,
                balancer.tlsCAFile, balancer.tlsVerify,
            ),
            ("round-robin", 60, 60, 5, 256, 0, 128, 10, False, [], None, None, True),
        )
        member = balancer.members[0]
        self.assertEqual((member.standby, member.weight), (False, 1))

    def test_workersDefaultAndOption(self):
        from playbalancer.tap import Options

        self.assertEqual(self.parse().workers, 1)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                '[[listen]]\nendpoint = "tcp:8080"\nbalancer = "web"\n'
                '[[balancer.web.member]]\nname = "app1"\nurl = "http://127.0.0.1:9999"\n'
            )
        options = Options()
        options.parseOptions(["--config", path, "--workers", "2"])
        self.assertEqual(options.config.workers, 2)
        options = Options()
        options.parseOptions(["--config", path])
        self.assertEqual(options.config.workers, 1)

    def test_clusterNodeDefaultsToTheHostName(self):
        config = self.parse(
            '[cluster]\nstore = "etcd"\nendpoints = ["http://127.0.0.1:2379"]\ntier = "web"\n'
        )
        self.assertEqual(config.cluster.node, socket.gethostname().split(".")[0])

    def test_managerDefaults(self):
        manager = self.parse("[manager]\n").manager
        self.assertEqual(
            (manager.endpoint, manager.allow, manager.metricsEndpoint),
            ("tcp:8081:interface=127.0.0.1", ["127.0.0.0/8", "::1"], None),
        )


class CLIDefaultManagerTests(TestCase):
    def test_managerDefault(self):
        """
        #160: C{--manager} defaults to C{$PLAYBALANCER_MANAGER}, else
        C{http://127.0.0.1:8081}; and the command asks that address.
        """
        from playbalancer.ctl.cli import parseArguments, run

        self.assertEqual(
            str(parseArguments(["status"], {}).manager).rstrip("/"), "http://127.0.0.1:8081"
        )
        self.assertEqual(
            str(parseArguments(["status"], {"PLAYBALANCER_MANAGER": "http://127.0.0.1:9"}).manager)
            .rstrip("/"),
            "http://127.0.0.1:9",
        )
        asked = []

        class Recording:
            def request(self, method, url, **kwargs):
                asked.append((method, url.to_text() if hasattr(url, "to_text") else str(url)))
                return defer.fail(ConnectionRefusedError())

        out, err = io.StringIO(), io.StringIO()
        codes = []
        defer.ensureDeferred(
            run(reactor, ["status"], stdout=out, stderr=err, environ={}, http=Recording())
        ).addCallback(codes.append)
        self.assertEqual(asked, [("GET", "http://127.0.0.1:8081/api/status")])
        self.assertEqual(codes, [1])
        self.assertIn("cannot reach the manager at http://127.0.0.1:8081", err.getvalue())
