"""
A rolling restart you can watch: C{playbalancer rolling-restart} reports
each step to the manager, and C{GET /api/rolling} shows the run (for the
page's progress panel); in memory, then over real sockets with the real
command line.
"""

from __future__ import annotations

import io
import os

from twisted.internet import defer, reactor, task
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.ctl.progressbar import ProgressBar
from playbalancer.manager.model import ChangeError
from playbalancer.manager.restarts import RollingRestarts
from playbalancer.testing import waitUntil

from tests.test_rolling_cli import _RollingCase


class RegistryTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.restarts = RollingRestarts(self.clock, stale=600)

    def report(self, **body):
        return self.restarts.report("web", body, "127.0.0.1")

    def test_aRun(self):
        self.assertEqual(self.restarts.status(["web"])["balancers"], {"web": {"configured": False, "run": None}})
        self.report(id="r1", event="start", members=["a", "b"])
        self.clock.advance(2)
        self.report(id="r1", event="step", member="a", step="draining", detail="3 in flight")
        self.clock.advance(3)
        self.report(id="r1", event="step", member="a", step="enabled")
        run = self.restarts.status(["web"])["balancers"]["web"]["run"]
        self.assertEqual(
            (run["state"], run["done"], run["total"], run["origin"], run["who"], run["started"]),
            ("running", 1, 2, "cli", "127.0.0.1", 1000.0),
        )
        self.assertEqual(run["members"], [
            {"name": "a", "step": "enabled", "detail": "", "since": 1005.0},
            {"name": "b", "step": "waiting", "detail": "", "since": None},
        ])
        self.report(id="r1", event="finish", state="failed", reason="the command failed")
        run = self.restarts.status(["web"])["balancers"]["web"]["run"]
        self.assertEqual((run["state"], run["reason"], run["finished"]), ("failed", "the command failed", 1005.0))

    def test_oneAtATime(self):
        """
        A second run of the same balancer is refused while the first runs,
        unless the first has said nothing for C{stale} seconds; once it has
        finished, a new one starts.
        """
        self.report(id="r1", event="start", members=["a"])
        with self.assertRaises(ChangeError) as caught:
            self.report(id="r2", event="start", members=["a"])
        self.assertEqual(caught.exception.code, 409)
        self.assertIn("under way", caught.exception.message)
        self.clock.advance(601)
        self.report(id="r2", event="start", members=["a"])
        self.report(id="r2", event="finish", state="done")
        self.report(id="r3", event="start", members=["a"])

    def test_badReports(self):
        self.report(id="r1", event="start", members=["a"])
        for body, code in [
            ([], 400),
            ({"id": "r 1", "event": "start", "members": []}, 400),
            ({"id": "r1", "event": "explode"}, 400),
            ({"id": "r1", "event": "start", "members": "a"}, 400),
            ({"id": "r9", "event": "step", "member": "a", "step": "enabled"}, 404),
            ({"id": "r1", "event": "step", "member": "z", "step": "enabled"}, 404),
            ({"id": "r1", "event": "step", "member": "a", "step": "dancing"}, 400),
            ({"id": "r1", "event": "step", "member": "a", "step": "enabled", "detail": 5}, 400),
            ({"id": "r1", "event": "finish", "state": "maybe"}, 400),
        ]:
            with self.assertRaises(ChangeError) as caught:
                self.restarts.report("web", body, "127.0.0.1")
            self.assertEqual(caught.exception.code, code, body)


class WatchedRestartTests(_RollingCase):
    async def rolling(self):
        code, answer, _ = await self.call("GET", "api/rolling")
        self.assertEqual(code, 200)
        return answer["balancers"]["test"]["run"]

    async def test_stepsShownAsTheyHappen(self):
        """
        While the command runs for a member, the manager shows that step;
        at the end, the run is done and every member enabled.
        """
        balancer = self.setUpCluster()
        await waitUntil(lambda: all(m.checkPasses >= 2 for m in balancer.members), reactor)
        gate = os.path.abspath(self.mktemp())
        command = f'while [ ! -e "{gate}" ]; do sleep 0.05; done'
        restart = defer.ensureDeferred(self.cli("rolling-restart", "test", "--exec", command))
        seen = []

        async def running():
            run = await self.rolling()
            if run is not None:
                seen.append(run)
            return run is not None and run["members"][0]["step"] == "running"

        deadline = reactor.seconds() + 20
        while not await running():
            self.assertLess(reactor.seconds(), deadline, seen[-1:] or "no run")
            await task.deferLater(reactor, 0.05, lambda: None)
        run = seen[-1]
        self.assertEqual((run["state"], run["origin"], run["done"], run["total"]), ("running", "cli", 0, 2))
        self.assertEqual([m["step"] for m in run["members"]], ["running", "waiting"])
        self.assertEqual(run["members"][0]["detail"], command)
        with open(gate, "w"):
            pass
        code, out, err = await restart
        self.assertEqual(code, 0, err)
        run = await self.rolling()
        self.assertEqual((run["state"], run["done"], run["total"]), ("done", 2, 2))
        self.assertEqual([m["step"] for m in run["members"]], ["enabled", "enabled"])
        self.assertIsNotNone(run["finished"])

    async def test_failureShown(self):
        balancer = self.setUpCluster()
        await waitUntil(lambda: all(m.checkPasses >= 2 for m in balancer.members), reactor)
        code, out, err = await self.cli("rolling-restart", "test", "--exec", "exit 3")
        self.assertEqual(code, 1)
        run = await self.rolling()
        self.assertEqual(run["state"], "failed")
        self.assertEqual(run["reason"], "the command failed for test/app1 (exit 3); it stays drained")
        self.assertEqual((run["members"][0]["step"], run["members"][1]["step"]), ("failed", "waiting"))

    async def test_secondRunRefused(self):
        balancer = self.setUpCluster()
        await waitUntil(lambda: all(m.checkPasses >= 2 for m in balancer.members), reactor)
        gate = os.path.abspath(self.mktemp())
        first = defer.ensureDeferred(
            self.cli("rolling-restart", "test", "--exec", f'while [ ! -e "{gate}" ]; do sleep 0.05; done')
        )
        await self._waitForRun()
        code, out, err = await self.cli("rolling-restart", "test", "--exec", "true")
        self.assertEqual(code, 1)
        self.assertIn("a rolling restart of test is under way (from the cli, by 127.0.0.1)", err)
        with open(gate, "w"):
            pass
        self.assertEqual((await first)[0], 0)

    async def _waitForRun(self):
        deadline = reactor.seconds() + 20
        while (await self.rolling()) is None:
            self.assertLess(reactor.seconds(), deadline)
            await task.deferLater(reactor, 0.05, lambda: None)

    async def test_apiRefusals(self):
        self.setUpCluster()
        body = {"id": "r1", "event": "start", "members": ["app1"]}
        code, _, _ = await self.call("POST", "api/rolling", body)
        self.assertEqual(code, 405)
        code, answer, _ = await self.call("POST", "api/rolling/nope/report", body)
        self.assertEqual((code, answer["error"]), (404, "no balancer named 'nope'"))
        code, _, _ = await self.call("GET", "api/rolling/test/report")
        self.assertEqual(code, 405)
        host = self.managerURL.split("/")[2].encode()
        code, answer, _ = await self.call(
            "POST", "api/rolling/test/report", body,
            headers={b"Host": [host], b"Origin": [b"http://evil.example"]},
        )
        self.assertEqual(code, 403)
        self.assertIsNone(await self.rolling())
        code, run, _ = await self.call("POST", "api/rolling/test/report", body)
        self.assertEqual((code, run["state"]), (200, "running"))


class ProgressBarTests(SynchronousTestCase):
    def test_onATerminal(self):
        """
        On a terminal the bar is redrawn below each line; the lines stay
        as they are.
        """
        master, slave = os.openpty()
        self.addCleanup(os.close, master)
        out = os.fdopen(slave, "w")
        self.addCleanup(out.close)
        bar = ProgressBar(out, 2)
        bar.line("web/app1: drain")
        bar.advance()
        bar.hide()
        out.write("command output\n")
        bar.line("web/app2: enabled")
        out.close()  # (then read all: one read may return only part of it)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed, all read
                break
            if not chunk:
                break
            chunks.append(chunk)
        written = b"".join(chunks).decode().replace("\r\n", "\n")
        self.assertEqual(
            written,
            "web/app1: drain\n[--------------------] 0/2 members"
            "\r\x1b[K[##########----------] 1/2 members"
            "\r\x1b[Kcommand output\n"
            "web/app2: enabled\n[##########----------] 1/2 members",
        )

    def test_notOnATerminal(self):
        out = io.StringIO()
        bar = ProgressBar(out, 2)
        bar.line("web/app1: drain")
        bar.advance()
        bar.hide()
        bar.line("web/app1: enabled")
        self.assertEqual(out.getvalue(), "web/app1: drain\nweb/app1: enabled\n")
