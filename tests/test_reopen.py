"""
C{kill -USR1} (logrotate's C{postrotate}) reopens the access logs: a real
C{twistd playbalancer}, with one process and with C{workers = 2}.
"""

from __future__ import annotations

import os
import signal

from twisted.internet import reactor

from playbalancer.testing import MemberServer, freePorts
from playbalancer.testing.twistd import TwistdTestCase, childrenOf


def lines(path, needle):
    """
    The lines of the file at C{path} that contain C{needle}.
    """
    try:
        with open(path) as f:
            return [line for line in f if needle in line]
    except FileNotFoundError:
        return []


class ReopenTestCase(TwistdTestCase):
    async def startBalancer(self, workers, accessLog):
        self.app = MemberServer("app1", reactor).start()
        self.addCleanup(self.app.stop)
        front, manager = freePorts(2)
        self.startTwistd(
            f"""
workers = {workers}

[[listen]]
endpoint = "tcp:{front}:interface=127.0.0.1"
balancer = "web"
access_log = "{accessLog}"

[balancer.web]

[[balancer.web.member]]
name = "app1"
url = "{self.app.url}"

[manager]
endpoint = "tcp:{manager}:interface=127.0.0.1"
"""
        )
        self.base = f"http://127.0.0.1:{front}"
        self.manager = f"http://127.0.0.1:{manager}"
        await self.waitServing(workers)

    async def requests(self, count, prefix):
        for i in range(count):
            self.assertEqual((await self.get(f"/?{prefix}-{i}")).code, 200)


class WorkersReopenTests(ReopenTestCase):
    async def test_usr1ReopensEveryWorkersLog(self):
        """
        After logrotate renamed the access log, C{kill -USR1} to the parent
        makes both workers write to a new file at the same path, and the
        balancer keeps serving with the same workers.
        """
        path = os.path.abspath(self.mktemp())
        await self.startBalancer(2, path)
        workers = childrenOf(self.child.pid)
        await self.requests(10, "before")
        await self.waitFor(lambda: len(lines(path, "/?before-")) == 10)
        os.rename(path, path + ".1")
        os.kill(self.child.pid, signal.SIGUSR1)
        await self.waitFor(lambda: self.twistdLog().count("reopened its access logs") == 2)
        # 40 connections: both workers take some of them.
        await self.requests(40, "after")
        await self.waitFor(lambda: len(lines(path, "/?after-")) == 40)
        self.assertEqual(lines(path + ".1", "/?after-"), [])
        self.assertEqual(len(lines(path + ".1", "/?before-")), 10)
        self.assertEqual(childrenOf(self.child.pid), workers)

    async def test_standardOutput(self):
        """
        With C{access_log = "-"} the workers' lines reach the parent's
        standard output (not the workers' control channel, which they
        would break), and C{kill -USR1} is harmless.
        """
        await self.startBalancer(2, "-")
        workers = childrenOf(self.child.pid)
        await self.requests(10, "before")
        await self.waitFor(lambda: self.twistdLog().count('"GET /?before-') == 10)
        os.kill(self.child.pid, signal.SIGUSR1)
        await self.waitFor(lambda: self.twistdLog().count("reopened its access logs") == 2)
        await self.requests(10, "after")
        await self.waitFor(lambda: self.twistdLog().count('"GET /?after-') == 10)
        self.assertNotIn("Traceback", self.twistdLog())
        self.assertEqual(childrenOf(self.child.pid), workers)


class OneProcessReopenTests(ReopenTestCase):
    async def test_standardOutputUSR1(self):
        """
        C{access_log = "-"}: C{kill -USR1} has nothing to reopen; no
        traceback, and lines still go to standard output.
        """
        await self.startBalancer(1, "-")
        for times in (1, 2):
            os.kill(self.child.pid, signal.SIGUSR1)
            await self.waitFor(
                lambda: self.twistdLog().count("access log -:") == times
                or "Traceback" in self.twistdLog()
            )
        await self.requests(5, "after")
        await self.waitFor(lambda: self.twistdLog().count('"GET /?after-') == 5)
        self.assertNotIn("Traceback", self.twistdLog())
        self.assertNotIn("buffer", self.twistdLog())

    async def test_usr1ReopensLog(self):
        """
        One process: after a rename, C{kill -USR1} makes it write to a new
        file at the same path.
        """
        path = os.path.abspath(self.mktemp())
        await self.startBalancer(1, path)
        await self.requests(5, "before")
        await self.waitFor(lambda: len(lines(path, "/?before-")) == 5)
        os.rename(path, path + ".1")
        os.kill(self.child.pid, signal.SIGUSR1)
        await self.waitFor(lambda: os.path.exists(path))
        await self.requests(5, "after")
        await self.waitFor(lambda: len(lines(path, "/?after-")) == 5)
        self.assertEqual(lines(path + ".1", "/?after-"), [])
