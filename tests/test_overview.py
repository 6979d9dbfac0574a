"""
The manager's overview (L{playbalancer.manager.overview}) and timeline
(L{playbalancer.manager.timeline}): in memory, then in C{/api/status} and
on the page over real sockets.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.balancer import Balancer
from playbalancer.manager import model
from playbalancer.manager.overview import overallState, overview
from playbalancer.manager.timeline import timeline
from playbalancer.schedulers import RoundRobinScheduler
from playbalancer.testing import candidateMembers

from tests.test_manager import ManagerTestCase

SAMPLE = {"requests": 100.0, "errors": 0.0, "p50": 0.002, "p95": 0.010, "inflight": 3.0}


class OverviewTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.balancer = Balancer("web", RoundRobinScheduler(), candidateMembers("a", "b", "c"), self.clock)
        self.balancer.setStandby(self.balancer.member("c"), True)

    def tile(self, latest=None):
        info = model.balancerStatus(self.balancer)
        return overview({"web": self.balancer}, {"web": info}, _Latest(latest))["balancers"]["web"]

    def test_serving(self):
        tile = self.tile(SAMPLE)
        self.assertEqual((tile["state"], tile["sign"], tile["text"]), ("serving", "\u2714", "serving"))
        self.assertEqual(
            (tile["requests_per_second"], tile["error_share"], tile["p95_ms"]), (100.0, 0.0, 10.0)
        )
        self.assertEqual({k: v for k, v in tile["members"].items() if v}, {"serving": 2, "standby": 1})

    def test_beforeTheFirstSample(self):
        tile = self.tile(None)
        self.assertEqual((tile["requests_per_second"], tile["error_share"], tile["p95_ms"]), (None, None, None))
        self.assertEqual(tile["state"], "serving")

    def test_degradedByAMemberDown(self):
        self.balancer.memberFailed(self.balancer.member("a"), "connection refused")
        tile = self.tile(SAMPLE)
        self.assertEqual((tile["state"], tile["text"]), ("degraded", "degraded: 1 down"))

    def test_degradedByErrors(self):
        tile = self.tile(dict(SAMPLE, errors=5.0))
        self.assertEqual((tile["state"], tile["text"]), ("degraded", "degraded: 5% of requests failing"))
        self.assertEqual(self.tile(dict(SAMPLE, errors=4.9))["state"], "serving")
        self.assertEqual(self.tile(dict(SAMPLE, requests=0.0, errors=1.0))["error_share"], 1.0)

    def test_drainedOnPurposeIsNotDegraded(self):
        self.balancer.setAdmin(self.balancer.member("a"), "drain")
        self.assertEqual(self.tile(SAMPLE)["state"], "serving")

    def test_noUsableMember(self):
        for name in ("a", "b"):
            self.balancer.setAdmin(self.balancer.member(name), "disabled")
        self.assertEqual(self.tile(SAMPLE)["state"], "serving")  # the standby serves
        self.balancer.setAdmin(self.balancer.member("c"), "drain")
        tile = self.tile(SAMPLE)
        self.assertEqual((tile["state"], tile["sign"], tile["text"]), ("down", "\u2716", "no usable member"))

    def test_overall(self):
        serving = {"state": "serving"}
        self.assertEqual(overallState({}), ("serving", "\u2714", "no balancer"))
        self.assertEqual(overallState({"a": serving}), ("serving", "\u2714", "all serving"))
        self.assertEqual(
            overallState({"b": {"state": "degraded"}, "a": {"state": "degraded"}, "c": serving}),
            ("degraded", "\u26a0", "degraded: a, b"),
        )
        self.assertEqual(
            overallState({"b": {"state": "degraded"}, "a": {"state": "down"}}),
            ("down", "\u2716", "no usable member: a"),
        )


class _Latest:
    def __init__(self, sample):
        self.sample = sample

    def latest(self, name):
        return self.sample


class TimelineTests(SynchronousTestCase):
    def test_newestFirstAcrossBalancers(self):
        clock = Clock()
        web = Balancer("web", RoundRobinScheduler(), candidateMembers("a", "b"), clock)
        api = Balancer("api", RoundRobinScheduler(), candidateMembers("x"), clock)
        clock.advance(10)
        web.setAdmin(web.member("a"), "drain", who="alice")
        clock.advance(1)
        api.setAdmin(api.member("x"), "disabled", who="bob")
        clock.advance(1)
        web.memberFailed(web.member("b"), "connection refused")
        infos = {"web": model.balancerStatus(web), "api": model.balancerStatus(api)}
        events = timeline(infos)
        self.assertEqual(
            [(e["at"], e["balancer"], e["member"], e["text"]) for e in events],
            [
                (12.0, "web", "b", "down: connection refused"),
                (11.0, "api", "x", "admin=disabled by bob"),
                (10.0, "web", "a", "admin=drain by alice"),
            ],
        )
        self.assertEqual(len(timeline(infos, length=2)), 2)


class StatusTests(ManagerTestCase):
    async def test_statusHasOverviewAndTimeline(self):
        a, b = self.startMembers("app1", "app2")
        self.startBalancer([a.url, b.url])
        self.startManager()
        self.balancer.setAdmin(self.balancer.member("app2"), "disabled", who="carol")
        code, status, _ = await self.call("GET", "api/status")
        self.assertEqual(code, 200)
        self.assertEqual((status["overview"]["state"], status["overview"]["text"]), ("serving", "all serving"))
        self.assertEqual(status["overview"]["balancers"]["test"]["members"]["disabled"], 1)
        self.assertEqual(
            [(e["member"], e["text"]) for e in status["timeline"]], [("app2", "admin=disabled by carol")]
        )
        code, page, _ = await self.call("GET", "")
        self.assertIn("<title>\u2714 all serving \u00b7 playbalancer</title>", page)
        self.assertIn("test/app2</strong>: admin=disabled by carol", page)
