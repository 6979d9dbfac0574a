"""
Observability over real sockets: Prometheus metrics checked against the
traffic sent, the access log, structured log events, and the state-change
history the manager shows.
"""

from __future__ import annotations

import os
import signal

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.logger import globalLogPublisher
from twisted.web.server import Site

from playbalancer.manager import ManagerRoot
from playbalancer.manager.guard import AccessPolicy
from playbalancer.observe.accesslog import AccessLog, ReopenOnSignal
from playbalancer.observe.metrics import MetricsPage, registryFor
from playbalancer.testing import rawExchange, waitUntil
from playbalancer.testing.faultmember import FaultMember

from tests.proxyharness import ProxyTestCase


def samples(text):
    """
    C{{(name, frozenset(labels.items())): value}} from a scrape.
    """
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


class MetricsTests(ProxyTestCase):
    async def test_scrapeMatchesTraffic(self):
        good = FaultMember(reactor, "ok", name="good").start()
        bad = FaultMember(reactor, "status", name="bad", status=500).start()
        self.addCleanup(good.stop)
        self.addCleanup(bad.stop)
        balancer = self.startBalancer([good.url, bad.url], timeout=0.5)
        policy = AccessPolicy(["127.0.0.0/8"], None, reactor)
        registry = registryFor({"test": balancer}, [("tcp:front", self.front)])
        manager = ManagerRoot({"test": balancer}, policy, reactor, metrics=MetricsPage(registry))
        site = Site(manager)
        site.log = lambda request: None
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        client = self.client()
        for _ in range(6):
            await self.fetch(client, "/")  # round robin: 3 to each
        await rawExchange(reactor, self.port, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        good.behaviour = "hang"
        response, _ = await self.fetch(client, "/")
        self.assertEqual(response.code, 504)
        scrape = await self.client(persistent=False).get(f"http://127.0.0.1:{port.getHost().port}/metrics")
        self.assertEqual(scrape.code, 200)
        self.assertTrue(scrape.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain"))
        found = samples((await scrape.content()).decode())

        def value(name, **labels):
            return found[(name, frozenset(labels.items()))]

        self.assertEqual(value("playbalancer_member_responses_total", balancer="test", member="app1", code="2xx"), 3)
        self.assertEqual(value("playbalancer_member_responses_total", balancer="test", member="app2", code="5xx"), 3)
        self.assertEqual(value("playbalancer_member_failures_total", balancer="test", member="app1", kind="timeout"), 1)
        self.assertEqual(value("playbalancer_member_first_byte_seconds_count", balancer="test", member="app2"), 3)
        self.assertEqual(value("playbalancer_member_response_seconds_count", balancer="test", member="app1"), 3)
        self.assertEqual(value("playbalancer_member_in_flight", balancer="test", member="app1"), 0)
        self.assertEqual(value("playbalancer_member_up", balancer="test", member="app1"), 1)
        self.assertEqual(value("playbalancer_member_admin_state", balancer="test", member="app1", state="enabled"), 1)
        self.assertEqual(value("playbalancer_member_weight", balancer="test", member="app2"), 1)
        self.assertEqual(value("playbalancer_listener_refused_requests_total", listener="tcp:front"), 1)
        self.assertGreaterEqual(value("playbalancer_listener_accepted_connections_total", listener="tcp:front"), 2)
        self.assertEqual(value("playbalancer_balancer_unavailable_total", balancer="test"), 0)
        self.assertGreater(value("playbalancer_member_received_bytes_total", balancer="test", member="app1"), 0)

    async def test_metricsBehindTheAllowList(self):
        balancer = self.startBalancer(["http://127.0.0.1:1"])
        policy = AccessPolicy(["10.0.0.0/8"], None, reactor)
        manager = ManagerRoot(
            {"test": balancer}, policy, reactor, metrics=MetricsPage(registryFor({"test": balancer}))
        )
        port = reactor.listenTCP(0, Site(manager), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        raw = await rawExchange(
            reactor, port.getHost().port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 403"), raw)


class AccessLogTests(ProxyTestCase):
    def setUp(self):
        self.member = FaultMember(reactor, "ok", name="app1").start()
        self.addCleanup(self.member.stop)
        self.startBalancer([self.member.url])
        self.path = self.mktemp()
        self.log = self.front.accessLog = AccessLog.open(self.path, reactor)
        self.addCleanup(self.log.close)

    def lines(self):
        self.log.flush()
        with open(self.path, "rb") as f:
            return f.read().decode().splitlines()

    async def test_lineFields(self):
        raw = await rawExchange(
            reactor,
            self.port,
            b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: t\"est\r\nReferer: http://r/\r\n"
            b"X-Request-Id: abc-123\r\nConnection: close\r\n\r\n",
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 200"))
        (line,) = self.lines()
        self.assertRegex(
            line,
            r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /a\?b=1 HTTP/1\.1" 200 5 '
            r'"http://r/" "t\\x22est" member=app1 upstream_status=200 ttfb=\d+\.\d{3} total=\d+\.\d{3} '
            r"retries=0 request_id=abc-123 route=-$",
        )
        self.assertIn(b"X-Request-Id: abc-123\r\n", self.member.received[-1])

    async def test_generatedIdForwarded(self):
        await rawExchange(reactor, self.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        (line,) = self.lines()
        requestId = line.rsplit("request_id=", 1)[1].split(" ")[0]
        self.assertIn(b"X-Request-Id: " + requestId.encode() + b"\r\n", self.member.received[-1])

    async def test_failuresAndRefusals(self):
        self.member.behaviour = "refuse"
        await self.member.settled()
        await rawExchange(reactor, self.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await rawExchange(reactor, self.port, b"GET / HTTP/1.1\r\n\r\n")
        first, second = self.lines()
        self.assertIn('"GET / HTTP/1.1" 503 ', first)
        self.assertIn("member=app1 upstream_status=- ttfb=-", first)
        self.assertIn('"-" 400 0 "-" "-" refused="an HTTP/1.1 request without a Host header"', second)

    async def test_reopenOnSIGUSR1(self):
        """
        After logrotate renames the file, SIGUSR1 makes the balancer write
        to a new file at the path; no line is lost.
        """
        service = ReopenOnSignal(self.log, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        await rawExchange(reactor, self.port, b"GET /1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        os.rename(self.path, self.path + ".1")
        await rawExchange(reactor, self.port, b"GET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        os.kill(os.getpid(), signal.SIGUSR1)
        await waitUntil(lambda: os.path.exists(self.path), reactor)
        await rawExchange(reactor, self.port, b"GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        with open(self.path + ".1") as f:
            rotated = f.read()
        self.assertIn('"GET /1 ', rotated)
        self.assertIn('"GET /2 ', rotated)
        (line,) = self.lines()
        self.assertIn('"GET /3 ', line)


class EventTests(ProxyTestCase):
    async def test_structuredEventsAndHistory(self):
        """
        State changes are twisted.logger events with a
        C{playbalancer_event} key, and the manager's status shows them.
        """
        from playbalancer.manager.model import memberStatus

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        member = FaultMember(reactor, "refuse", name="app1").start()
        self.addCleanup(member.stop)
        balancer = self.startBalancer([member.url])
        await rawExchange(reactor, self.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        app1 = balancer.member("app1")
        balancer.setAdmin(app1, "drain", "127.0.0.1")
        kinds = [(e["playbalancer_event"], e.get("member")) for e in events if "playbalancer_event" in e]
        self.assertEqual(kinds, [("member.down", "app1"), ("member.admin", "app1")])
        down = [e for e in events if e.get("playbalancer_event") == "member.down"][0]
        self.assertIn("refused", down["reason"])
        history = memberStatus(app1, self.clock.seconds(), False)["events"]
        self.assertEqual(history[0]["text"], "admin=drain by 127.0.0.1")
        self.assertTrue(history[1]["text"].startswith("down: "), history)
