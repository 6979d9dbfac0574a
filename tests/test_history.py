"""
The manager's server-side history (L{playbalancer.manager.history}): rates,
latencies and requests in flight sampled every few seconds into bounded
rings, served by C{GET /api/history}; in memory with a L{Clock}, then over
real sockets.
"""

from __future__ import annotations

import json
import math
import time

import treq
from twisted.internet import reactor, task
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.balancer import Balancer
from playbalancer.manager.history import FIELDS, History, Ring
from playbalancer.schedulers import RoundRobinScheduler
from playbalancer.testing import candidateMembers
from playbalancer.testing.twistd import TwistdTestCase

from tests.test_manager import ManagerTestCase


class RingTests(SynchronousTestCase):
    def test_keepsTheLast(self):
        ring = Ring(3)
        self.assertEqual(ring.values(), [])
        for value in range(1, 6):
            ring.append(value)
        self.assertEqual(ring.values(), [3.0, 4.0, 5.0])
        self.assertEqual(ring.count, 3)

    def test_fixedSize(self):
        """
        A ring is one array of its size, whatever is appended.
        """
        ring = Ring(180)
        before = ring._values.buffer_info()
        for value in range(1000):
            ring.append(value)
        self.assertEqual(ring._values.buffer_info(), before)
        self.assertEqual(len(ring.values()), 180)


class SamplingTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.app1, self.app2 = candidateMembers("app1", "app2")
        self.balancer = Balancer("web", RoundRobinScheduler(), [self.app1, self.app2], self.clock)
        self.history = History({"web": self.balancer}, self.clock, interval=5.0, span=60.0)
        self.history.startService()
        self.addCleanup(self.history.stopService)

    def serve(self, member, count, seconds=0.010, status=200):
        for _ in range(count):
            self.balancer.begin(member)
            member.stats.answered(status)
            self.balancer.end(member, latency=seconds)

    def test_ratesLatencyInFlight(self):
        """
        Requests and errors per second over each interval, the median and
        95th percentile of that interval's response times, what is in
        flight at the sample; and the balancer's sums.
        """
        self.serve(self.app1, 3)  # before the second sample's interval
        self.clock.advance(5)
        self.serve(self.app1, 40, 0.010)
        self.serve(self.app1, 10, 0.200, status=503)
        self.serve(self.app2, 5, 0.050)
        self.balancer.begin(self.app2)  # one in flight
        self.balancer.noUsableMember()  # a 503 of the balancer's own
        self.clock.advance(5)
        answer = self.history.asJSON()
        web = answer["balancers"]["web"]
        app1 = web["members"]["app1"]
        self.assertEqual(app1["t"], [1005.0, 1010.0])
        self.assertEqual(app1["requests"], [0.6, 10.0])
        self.assertEqual(app1["errors"], [0.0, 2.0])
        self.assertEqual(app1["p50"], [10.0, 10.0])
        self.assertEqual(app1["p95"], [10.0, 200.0])
        self.assertEqual(app1["inflight"], [0.0, 0.0])
        app2 = web["members"]["app2"]
        self.assertEqual((app2["requests"][-1], app2["inflight"][-1]), (1.2, 1.0))
        self.assertEqual(app2["p95"][-1], 50.0)
        series = web["series"]
        self.assertEqual(series["requests"][-1], 11.2)
        self.assertEqual(series["errors"][-1], 2.2)
        self.assertEqual(series["inflight"][-1], 1.0)
        self.assertEqual(series["p95"][-1], 200.0)
        self.assertEqual(answer["interval"], 5.0)

    def test_quietIntervalHasNoLatency(self):
        self.clock.advance(5)
        self.clock.advance(5)
        app1 = self.history.asJSON()["balancers"]["web"]["members"]["app1"]
        self.assertEqual(app1["requests"][-1], 0.0)
        self.assertEqual((app1["p50"][-1], app1["p95"][-1]), (None, None))

    def test_bounded(self):
        """
        Only C{span} seconds are kept: 12 samples of 5 s for 60 s.
        """
        for _ in range(50):
            self.serve(self.app1, 1)
            self.clock.advance(5)
        app1 = self.history.asJSON()["balancers"]["web"]["members"]["app1"]
        for name in ("t",) + FIELDS:
            self.assertEqual(len(app1[name]), 12, name)
        self.assertEqual(app1["t"][-1], self.clock.seconds())

    def test_membersComeAndGo(self):
        """
        A removed member's series goes; a new member by the same name starts
        afresh (its counters are not taken from the old one's).
        """
        self.clock.advance(5)
        self.serve(self.app2, 10)
        self.balancer.members.remove(self.app2)
        self.clock.advance(5)
        self.assertNotIn("app2", self.history.asJSON()["balancers"]["web"]["members"])
        (fresh,) = candidateMembers("app2")
        self.balancer.members.append(fresh)
        self.clock.advance(5)
        self.assertNotIn("app2", self.history.asJSON()["balancers"]["web"]["members"])
        self.serve(fresh, 5)
        self.clock.advance(5)
        app2 = self.history.asJSON()["balancers"]["web"]["members"]["app2"]
        self.assertEqual(app2["requests"], [1.0])

    def test_balancersComeAndGo(self):
        self.clock.advance(5)
        balancers = self.history.balancers
        del balancers["web"]
        self.clock.advance(5)
        self.assertEqual(self.history.asJSON()["balancers"], {})
        self.assertEqual((self.history.memberSeries, self.history.balancerSeries), ({}, {}))

    def test_lateLatencies(self):
        """
        Response times that arrive after a sample with earlier times (a
        worker's, reported to the parent) count in the next interval, not
        nowhere.
        """
        self.clock.advance(5)
        self.app1.recordLatency(self.clock.seconds() - 3, 0.5)
        self.clock.advance(5)
        app1 = self.history.asJSON()["balancers"]["web"]["members"]["app1"]
        self.assertEqual(app1["p95"][-1], 500.0)

    def test_stops(self):
        self.history.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertTrue(math.isnan(Ring(1)._values[0]))


class HistoryApiTests(ManagerTestCase):
    async def test_historyOverSockets(self):
        """
        After traffic, C{GET /api/history} has non-empty series for the
        balancer and each member that served; C{?balancer=} picks one, an
        unknown one is a JSON 404, a write is a 405.
        """
        a, b = self.startMembers("app1", "app2")
        balancer = self.startBalancer([a.url, b.url])
        self.startManager()
        clock = Clock()
        clock.advance(1000)
        self.manager.history = History({"test": balancer}, clock)
        self.manager.history.startService()
        self.addCleanup(self.manager.history.stopService)
        client = self.client()
        for _ in range(10):
            response, _ = await self.fetch(client, "/")
            self.assertEqual(response.code, 200)
        clock.advance(5)
        code, answer, _ = await self.call("GET", "api/history")
        self.assertEqual(code, 200)
        test = answer["balancers"]["test"]
        self.assertEqual(test["series"]["requests"], [2.0])
        self.assertEqual(sorted(test["members"]), ["app1", "app2"])
        self.assertEqual(test["members"]["app1"]["requests"], [1.0])
        self.assertIsNotNone(test["members"]["app1"]["p95"][0])
        self.assertEqual((answer["node"], answer["interval"], answer["span"]), (None, 5.0, 900.0))
        code, one, _ = await self.call("GET", "api/history?balancer=test")
        self.assertEqual((code, list(one["balancers"])), (200, ["test"]))
        code, error, _ = await self.call("GET", "api/history?balancer=nope")
        self.assertEqual(code, 404)
        self.assertIn("nope", error["error"])
        code, error, _ = await self.call("POST", "api/history", {})
        self.assertEqual(code, 405)

    async def test_noHistory(self):
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager()
        code, error, _ = await self.call("GET", "api/history")
        self.assertEqual((code, error["error"]), (404, "this manager keeps no history"))


class WorkersHistoryTests(TwistdTestCase):
    async def test_summedOverWorkers(self):
        """
        A real C{twistd} with two workers: the parent's manager samples the
        requests both workers served (about 5 s after they were made).
        """
        await self.startTwoMembers(workers=2)
        for _ in range(20):
            self.assertEqual((await self.get("/")).code, 200)
        served = {}

        async def history():
            response = await self.client.get(self.manager + "/api/history")
            web = json.loads(await treq.content(response))["balancers"]["web"]
            for name, series in web["members"].items():
                served[name] = sum(series["requests"]) * 5.0
            served["web"] = sum(web["series"]["requests"]) * 5.0
            return served.get("web", 0) >= 19.5

        deadline = time.monotonic() + 20
        while not await history() and time.monotonic() < deadline:
            await task.deferLater(reactor, 0.5, lambda: None)
        # Rates times 5 s: requests, give or take a late timer's rounding
        # (and those the set-up made come on top).
        self.assertGreaterEqual(served["web"], 19.5, served)
        self.assertGreaterEqual(served["app1"], 9.5, served)
        self.assertGreaterEqual(served["app2"], 9.5, served)
