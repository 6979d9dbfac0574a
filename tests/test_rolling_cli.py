"""
C{playbalancer rolling-restart} when things go wrong: it stops at the
first problem, leaves that member drained and the others alone, and never
drains the last usable member.
"""

from __future__ import annotations

import io

from twisted.internet import reactor

from playbalancer.config import HealthConfig
from playbalancer.ctl.cli import run
from playbalancer.tap import makeHealthChecker
from playbalancer.testing import waitUntil

from tests.test_manager import ManagerTestCase


class _RollingCase(ManagerTestCase):
    def setUpCluster(self, names=("app1", "app2"), path="/health"):
        members = self.startMembers(*names)
        balancer = self.startBalancer([m.url for m in members], clock=reactor)
        balancer.activeChecks = True
        balancer.healthSettings = settings = HealthConfig(
            path=path, interval=0.05, timeout=0.5, rise=2, fall=2
        )
        checker = makeHealthChecker(balancer, settings, reactor)
        checker.startService()
        self.addCleanup(checker.stopService)
        self.startManager()
        return balancer

    async def cli(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        code = await run(reactor, ["--manager", self.managerURL] + list(argv),
                         stdout=out, stderr=err, environ={}, http=self.client())
        return code, out.getvalue(), err.getvalue()


class RollingFailureTests(_RollingCase):
    async def test_commandFails(self):
        balancer = self.setUpCluster()
        await waitUntil(lambda: all(m.checkPasses >= 2 for m in balancer.members), reactor)
        code, out, err = await self.cli("rolling-restart", "test", "--exec", "echo restarting; exit 3")
        self.assertEqual(code, 1)
        self.assertIn("restarting", out)
        self.assertEqual(
            err.strip(), "playbalancer: the command failed for test/app1 (exit 3); it stays drained"
        )
        self.assertEqual([m.admin for m in balancer.members], ["drain", "enabled"])

    async def test_memberDoesNotComeBack(self):
        balancer = self.setUpCluster()
        await waitUntil(lambda: all(m.checkPasses >= 2 for m in balancer.members), reactor)
        balancer.healthSettings.path = "/hold"  # from now on the checks time out
        code, out, err = await self.cli("rolling-restart", "test", "--exec", "true", "--timeout", "2")
        self.assertEqual(code, 1)
        self.assertIn("test/app1 did not pass 2 health checks within 2s", err)
        self.assertIn("it stays drained", err)
        self.assertEqual([m.admin for m in balancer.members], ["drain", "enabled"])

    async def test_neverDrainsTheLastUsableMember(self):
        balancer = self.setUpCluster(names=("app1",))
        code, out, err = await self.cli("rolling-restart", "test", "--exec", "true")
        self.assertEqual(code, 1)
        self.assertIn("refusing to drain test/app1: no other member could take its traffic", err)
        self.assertEqual(balancer.member("app1").admin, "enabled")

    async def test_needsHealthChecks(self):
        (a, b) = self.startMembers("app1", "app2")
        self.startBalancer([a.url, b.url])
        self.startManager()
        code, out, err = await self.cli("rolling-restart", "test", "--exec", "true")
        self.assertEqual(code, 1)
        self.assertIn("has no health checks", err)

    async def test_orderAndProgress(self):
        """
        Primaries first, standbys last; each step is shown; the command sees
        which member it restarts.
        """
        balancer = self.setUpCluster(names=("app1", "app2", "app3"))
        balancer.member("app1").standby = True
        await waitUntil(lambda: all(m.checkPasses >= 2 for m in balancer.members), reactor)
        code, out, err = await self.cli(
            "rolling-restart", "test", "--exec", 'echo "restart $PLAYBALANCER_MEMBER $PLAYBALANCER_URL"'
        )
        self.assertEqual(code, 0, err)
        restarted = [line.split()[1] for line in out.splitlines() if line.startswith("restart ")]
        self.assertEqual(restarted, ["app2", "app3", "app1"])
        self.assertIn(f"restart app2 {balancer.member('app2').url}", out)
        for step in ["app2: drain", "app2: waiting for 2 passing health checks", "app2: enabled"]:
            self.assertIn(step, out)
        self.assertEqual([m.admin for m in balancer.members], ["enabled"] * 3)


class RollingSkipTests(_RollingCase):
    async def test_leavesDrainedMembersAlone(self):
        """
        A member drained or disabled on purpose is skipped, not enabled.
        """
        balancer = self.setUpCluster(names=("app1", "app2", "app3"))
        await waitUntil(lambda: all(m.checkPasses >= 2 for m in balancer.members), reactor)
        balancer.setAdmin(balancer.member("app3"), "disabled", "test")
        code, out, err = await self.cli("rolling-restart", "test", "--exec", "true")
        self.assertEqual(code, 0, err)
        self.assertIn("test/app3: skipped: it is disabled", out)
        self.assertEqual([m.admin for m in balancer.members], ["enabled", "enabled", "disabled"])
