"""
examples/embed/app.py runs under twistd as its README says: a site of its
own with the proxy mounted at /app, over real members; its app.toml, as
shipped, loads.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import treq

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from playbalancer.demo import TWISTD
from playbalancer.testing import MemberServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "examples", "embed", "app.py")
APP_CONFIG = os.path.join(ROOT, "examples", "embed", "app.toml")


class EmbedExampleTests(TestCase):
    timeout = 60

    def test_shippedConfigLoads(self):
        """
        The example's own app.toml (which app.py reads by default) checks
        out and gives the balancer app.py serves, as its comments say.
        """
        from playbalancer.embed import loadBalancers

        balancers = loadBalancers(APP_CONFIG, reactor)
        self.assertEqual(balancers.names(), ["mycluster"])
        self.assertIn("mycluster", balancers)
        members = balancers.balancer("mycluster").members
        self.assertEqual([(m.name, m.standby) for m in members], [("app1", False), ("app2", True)])
        config = balancers.config.balancers["mycluster"]
        self.assertEqual((config.scheduler, config.health.path), ("standby", "/health"))

    async def test_servesSiteAndProxy(self):
        members = []
        for name in ("app1", "app2"):
            member = MemberServer(name, reactor).start()
            self.addCleanup(member.stop)
            members.append(member)
        config = os.path.abspath(self.mktemp())
        with open(config, "w") as f:
            f.write(
                '[balancer.mycluster]\nscheduler = "standby"\n'
                f'[[balancer.mycluster.member]]\nname = "app1"\nurl = "{members[0].url}"\n'
                f'[[balancer.mycluster.member]]\nname = "app2"\nurl = "{members[1].url}"\n'
                "standby = true\n"
            )
        log = os.path.abspath(self.mktemp())
        env = dict(os.environ, EMBED_CONFIG=config, EMBED_PORT="0")
        child = subprocess.Popen(
            [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "--logfile", log, "-y", APP],
            cwd=ROOT,
            env=env,
        )
        self.addCleanup(lambda: (child.poll() is None and child.terminate(), child.wait(10)))
        port = None
        for _ in range(200):
            if os.path.exists(log):
                with open(log) as f:
                    found = re.search(r"Site starting on (\d+)", f.read())
                if found:
                    port = int(found.group(1))
                    break
            self.assertIsNone(child.poll())
            await deferLater(reactor, 0.05, lambda: None)
        self.assertIsNotNone(port, "the example did not start")
        base = f"http://127.0.0.1:{port}"
        response = await treq.get(base + "/app/", persistent=False)
        self.assertEqual(response.headers.getRawHeaders(b"x-served-by"), [b"app1"])
        await response.content()
        response = await treq.get(base + "/static/hello.txt", persistent=False)
        self.assertIn(b"static file", await response.content())
        await members[0].stop()
        response = await treq.get(base + "/app/", persistent=False)
        self.assertEqual(response.headers.getRawHeaders(b"x-served-by"), [b"app2"])
        await response.content()
