"""
What C{playbalancer rolling-restart} tells the manager as it goes
(C{POST api/rolling/BALANCER/report}), so that the manager's page shows
the restart's progress.  Best effort: a manager without that route, or one
that fails to answer, is not told any more, and the restart goes on; only
a manager that says another restart of the balancer is under way stops it.
"""

from __future__ import annotations

import os
from urllib.parse import quote

from playbalancer.ctl.client import CommandError, ManagerError

__all__ = ["RollingReport"]


class RollingReport:
    """
    Reports one run's steps to the manager behind C{client}.
    """

    def __init__(self, client, balancerName, clock):
        self.client = client
        self.url = f"{client.base}/api/rolling/{quote(balancerName, safe='')}/report"
        self.id = f"cli-{os.getpid()}-{int(clock.seconds() * 1000)}"
        self.on = True

    async def _send(self, fields):
        if not self.on:
            return
        try:
            await self.client.request("POST", self.url, dict(fields, id=self.id))
        except ManagerError as e:
            if e.code == 409 and fields["event"] == "start":
                raise
            self.on = False
        except CommandError:
            self.on = False

    async def start(self, members):
        """
        The run begins, over C{members} (names, in order); L{ManagerError}
        409 if another run of the balancer is under way.
        """
        await self._send({"event": "start", "members": list(members)})

    async def step(self, member, step, detail=""):
        await self._send({"event": "step", "member": member, "step": step, "detail": detail})

    async def finish(self, state, reason=None):
        await self._send({"event": "finish", "state": state, "reason": reason})
