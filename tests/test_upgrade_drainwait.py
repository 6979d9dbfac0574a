"""
C{drain --wait} right after an upgrade counts the old process's requests.
"""

from __future__ import annotations

import time

from twisted.internet import reactor

from playbalancer.testing import waitUntil
from playbalancer.testing.twistd import TwistdTestCase
from tests import test_upgrade as _upgrade


class DrainWaitAfterUpgradeTests(TwistdTestCase):
    """
    C{drain --wait} right after an upgrade waits for the old process too:
    the new one cannot count the requests the old one still finishes.
    """

    timeout = 120
    startBalancer = _upgrade.UpgradeTests.startBalancer
    command = _upgrade.UpgradeTests.command

    async def test_drainWaitCountsTheOldProcess(self):
        await self.startBalancer()
        await self.change("app2", {"admin": "drain"})
        arrived = self.members[0].hold.arrival()
        download = self.client.get(self.base + "/hold")
        await arrived
        code, out, err = await self.command("upgrade")
        self.assertEqual((code, err), (0, ""), out)
        newPid = int(out.split("PID ")[1].split(")")[0])
        self.addCleanup(_upgrade.endProcess, newPid)
        self.assertTrue(self.child.running())
        started = time.monotonic()
        code, out, err = await self.command("drain", "web/app1", "--wait", "--timeout", "3")
        waited = time.monotonic() - started
        self.members[0].hold.release(b"done\n")
        await download
        await waitUntil(lambda: not self.child.running(), reactor, timeout=30)
        self.assertNotEqual(
            code,
            0,
            f"drain --wait said app1 is idle after {waited:.2f}s while a download on it "
            f"was in flight in the old process: {out!r}",
        )
