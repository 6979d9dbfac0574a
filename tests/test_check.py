"""
C{playbalancer check CONFIG}: the checks of start-up, without binding or
starting anything, through the command line (C{cli.run}) and as a child
process.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from playbalancer.ctl import cli
from playbalancer.testing import freePort

CONFIG = """
[[listen]]
endpoint = "tcp:{port}:interface=127.0.0.1"
balancer = "web"
manager_path = "/balancer-manager"

[manager]
endpoint = "tcp:{manager}:interface=127.0.0.1"
{token}

[balancer.web]
scheduler = "{scheduler}"

[[balancer.web.member]]
name = "app1"
url = "http://127.0.0.1:9999"

[[balancer.web.member]]
name = "app2"
url = "http://127.0.0.1:9998"
standby = true
"""


class CheckTests(TestCase):
    def write(self, scheduler="standby", token="", endpoint=None):
        self.port, self.manager = freePort(), freePort()
        text = CONFIG.format(port=self.port, manager=self.manager, token=token, scheduler=scheduler)
        if endpoint is not None:
            text = text.replace(f"tcp:{self.port}:interface=127.0.0.1", endpoint)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    async def check(self, path):
        out, err = io.StringIO(), io.StringIO()
        code = await cli.run(reactor, ["check", path], stdout=out, stderr=err, environ={})
        return code, out.getvalue(), err.getvalue()

    def assertFree(self, port):
        probe = socket.socket()
        self.addCleanup(probe.close)
        probe.bind(("127.0.0.1", port))  # raises if something listens

    async def test_good(self):
        """
        A good config: exit 0, the listeners and balancers printed, and
        nothing bound (its ports are still free).
        """
        path = self.write()
        code, out, err = await self.check(path)
        self.assertEqual((code, err), (0, ""))
        self.assertIn(f"{path}: OK", out)
        self.assertIn(
            f"listen[0] tcp:{self.port}:interface=127.0.0.1 (http), routes in the order they match:\n"
            "  manager: (any host) /balancer-manager -> the manager\n"
            "  default: (any host) / -> balancer web\n",
            out,
        )
        self.assertIn("  app2 http://127.0.0.1:9998 weight 1, standby", out)
        self.assertFree(self.port)
        self.assertFree(self.manager)

    async def test_routingTable(self):
        """
        The routes of a listener print in the order they match: exact
        hosts, then wildcards (longest first), then any host; in each, the
        longest path first.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                f"""
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[listen.route]]
path = "/"
status = 404
[[listen.route]]
name = "site"
host = "*.example.test"
balancer = "web"
[[listen.route]]
name = "admin"
host = "www.example.test"
path = "/admin"
balancer = "web"
allow = ["127.0.0.1", "10.0.0.0/8"]
[[listen.route]]
name = "www"
host = "www.example.test"
balancer = "web"
[[listen.route]]
name = "app"
host = "*.eu.example.test"
path = "/app"
balancer = "web"
strip_prefix = true
[[listen.route]]
name = "old"
path = "/old"
redirect = "https://www.example.test/"
status = 301
[balancer.web]
[[balancer.web.member]]
name = "app1"
url = "http://127.0.0.1:9999"
"""
            )
        code, out, err = await self.check(path)
        self.assertEqual((code, err), (0, ""))
        self.assertIn(
            "  admin: www.example.test /admin -> balancer web; allow 127.0.0.1, 10.0.0.0/8\n"
            "  www: www.example.test / -> balancer web\n"
            "  app: *.eu.example.test /app -> balancer web (without /app)\n"
            "  site: *.example.test / -> balancer web\n"
            "  old: (any host) /old -> redirect 301 to https://www.example.test/\n"
            "  0: (any host) / -> answer 404\n",
            out,
        )

    async def test_badRoute(self):
        """
        A bad route fails the check with start-up's one line.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                """
[[listen]]
endpoint = "tcp:0"
[[listen.route]]
host = "*bad.example"
balancer = "web"
[balancer.web]
[[balancer.web.member]]
name = "app1"
url = "http://127.0.0.1:9999"
"""
            )
        code, out, err = await self.check(path)
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(
            err,
            "playbalancer: listen[0].route[0].host: host '*bad.example': "
            "a wildcard is *. followed by a name\n",
        )

    async def test_unknownScheduler(self):
        code, out, err = await self.check(self.write(scheduler="nosuch"))
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err.count("\n"), 1)
        self.assertIn("playbalancer: balancer.web.scheduler: unknown scheduler 'nosuch'", err)

    async def test_badEndpoint(self):
        code, out, err = await self.check(self.write(endpoint="tcp:notaport"))
        self.assertEqual(code, 1)
        self.assertIn("listen", err)
        self.assertIn("endpoint", err)
        self.assertNotIn("Traceback", err)

    async def test_missingCertificate(self):
        """
        An ssl: listener whose certificate file is missing fails the check,
        as it fails start-up.
        """
        missing = os.path.abspath(self.mktemp())
        code, out, err = await self.check(
            self.write(endpoint=f"ssl:0:interface=127.0.0.1:certKey={missing}:privateKey={missing}")
        )
        self.assertEqual(code, 1)
        self.assertIn("endpoint", err)

    async def test_unreadableTokenFile(self):
        missing = os.path.abspath(self.mktemp())
        code, out, err = await self.check(self.write(token=f'token_file = "{missing}"'))
        self.assertEqual(code, 1)
        self.assertIn("playbalancer: manager.token_file:", err)

    async def test_missingFile(self):
        path = os.path.abspath(self.mktemp())
        code, out, err = await self.check(path)
        self.assertEqual(code, 1)
        self.assertIn(f"playbalancer: {path}: cannot read", err)

    def test_consoleScript(self):
        """
        The installed command, as an operator runs it before a deploy.
        """
        path = self.write()
        result = subprocess.run(
            [sys.executable, "-m", "playbalancer.ctl.cli", "check", path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
            timeout=60,
        )
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertIn("OK", result.stdout)
