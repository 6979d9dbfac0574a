"""
C{playbalancer init}: the commented starter config, written where asked with
the ports asked, never over a file unless forced; and C{--version} on every
command.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from playbalancer import __version__
from playbalancer.config import loadConfig
from playbalancer.ctl import cli
from playbalancer.demo import TWISTD
from playbalancer.starter import DEFAULT_PORTS, StarterPorts, starterConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class StarterConfigTests(SynchronousTestCase):
    def test_defaultIsTheShippedFile(self):
        """
        With the default ports the text is the shipped file, which the
        repository's etc/playbalancer.toml is.
        """
        with open(os.path.join(REPO, "etc", "playbalancer.toml"), encoding="utf-8") as f:
            self.assertEqual(starterConfig(), f.read())
        self.assertIn("# ", starterConfig())  # the comments come along

    def test_portsReplaced(self):
        """
        Every port is the one asked, in the config and in its comments; a
        new port that is another's old number is not replaced twice.
        """
        ports = StarterPorts(listen=9999, manager=9998, app1=8080, app2=8081)
        text = starterConfig(ports)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        config = loadConfig(path)
        self.assertEqual(config.listeners[0].endpoint, "tcp:9999:interface=127.0.0.1")
        self.assertEqual(config.manager.endpoint, "tcp:9998:interface=127.0.0.1")
        members = config.balancers["mycluster"].members
        self.assertEqual([m.url for m in members], ["http://127.0.0.1:8080", "http://127.0.0.1:8081"])
        self.assertEqual([m.standby for m in members], [False, True])
        self.assertIn("#   BalancerMember http://localhost:8081 status=+H", text)

    def test_badPorts(self):
        """
        A port out of range, or used twice, is refused naming it.
        """
        with self.assertRaises(ValueError) as caught:
            starterConfig(StarterPorts(listen=0))
        self.assertEqual(str(caught.exception), "--port: expected ports 1..65535, got 0")
        with self.assertRaises(ValueError) as caught:
            starterConfig(StarterPorts(app2=DEFAULT_PORTS.manager))
        self.assertEqual(str(caught.exception), "--app-ports: port 8081 also given to --manager-port")
        with self.assertRaises(ValueError) as caught:
            starterConfig(StarterPorts(app1=7000, app2=7000))
        self.assertEqual(str(caught.exception), "--app-ports: port 7000 twice")

    def test_editedTemplate(self):
        """
        A starter config edited so that a default port is gone cannot have
        its ports changed: a ValueError saying so, not a crash.
        """
        from playbalancer import starter

        self.patch(starter, "_template", lambda: "# nothing\n")
        self.assertEqual(starterConfig(), "# nothing\n")
        with self.assertRaises(ValueError) as caught:
            starterConfig(StarterPorts(listen=7000))
        self.assertIn("the starter config was edited", str(caught.exception))


class InitCommandTests(TestCase):
    async def init(self, *args):
        out, err = io.StringIO(), io.StringIO()
        code = await cli.run(reactor, ["init"] + list(args), stdout=out, stderr=err, environ={})
        return code, out.getvalue(), err.getvalue()

    async def test_writes(self):
        """
        The file is written (mode 0644 whatever the umask lets through) with
        the ports given, says where everything will be, and checks out as
        start-up would read it.
        """
        self.addCleanup(os.umask, os.umask(0))
        path = os.path.abspath(self.mktemp())
        code, out, err = await self.init(path, "--port", "7080", "--manager-port", "7081",
                                         "--app-ports", "7999,7998")
        self.assertEqual((code, err), (0, ""))
        self.assertIn(f"wrote {path}: balancer on 127.0.0.1:7080, manager on 127.0.0.1:7081", out)
        self.assertIn(f"twistd -n playbalancer --config {path}", out)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)
        config = loadConfig(path)
        self.assertEqual(config.listeners[0].endpoint, "tcp:7080:interface=127.0.0.1")
        code, out, err = await self.init("-")
        self.assertEqual((code, out, err), (0, starterConfig(), ""))

    async def test_keepsAnExistingFile(self):
        """
        A file already there is left as it is (exit 1, saying why) unless
        C{--force}.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("mine\n")
        code, out, err = await self.init(path)
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, f"playbalancer: init: {path} exists; --force replaces it\n")
        with open(path) as f:
            self.assertEqual(f.read(), "mine\n")
        code, out, err = await self.init(path, "--force")
        self.assertEqual((code, err), (0, ""))
        with open(path) as f:
            self.assertEqual(f.read(), starterConfig())

    async def test_replacesALinkNotItsTarget(self):
        """
        C{--force} over a symbolic link (etc/playbalancer.toml is one, to
        the shipped template) replaces the link: the file it named is left
        as it was.  A dangling link counts as a file there.
        """
        target = os.path.abspath(self.mktemp())
        with open(target, "w") as f:
            f.write("the template\n")
        link = os.path.abspath(self.mktemp())
        os.symlink(target, link)
        code, out, err = await self.init(link, "--port", "7000")
        self.assertEqual((code, out), (1, ""))
        code, out, err = await self.init(link, "--port", "7000", "--force")
        self.assertEqual((code, err), (0, ""))
        self.assertFalse(os.path.islink(link))
        with open(target) as f:
            self.assertEqual(f.read(), "the template\n")
        dangling = os.path.abspath(self.mktemp())
        os.symlink(os.path.join(os.path.dirname(dangling), "nowhere"), dangling)
        code, out, err = await self.init(dangling)
        self.assertIn("exists; --force replaces it", err)
        code, out, err = await self.init(dangling, "--force")
        self.assertEqual((code, err), (0, ""))

    async def test_badInput(self):
        """
        Bad ports and an unwritable path: one line, exit 1, nothing written.
        """
        path = self.mktemp()
        code, out, err = await self.init(path, "--app-ports", "9999")
        self.assertEqual(code, 1)
        self.assertIn("--app-ports: expected two ports, as in 9999,9998; got '9999'", err)
        code, out, err = await self.init(path, "--port", "70000")
        self.assertEqual((code, err), (1, "playbalancer: init: --port: expected ports 1..65535, got 70000\n"))
        directory = self.mktemp()
        os.makedirs(directory)
        code, out, err = await self.init(directory, "--force")
        self.assertEqual((code, err), (1, f"playbalancer: init: {directory} is a directory\n"))
        self.assertFalse(os.path.exists(path))
        missing = os.path.join(self.mktemp(), "playbalancer.toml")
        code, out, err = await self.init(missing)
        self.assertEqual(code, 1)
        self.assertIn(f"init: cannot write {missing}: No such file or directory", err)


class VersionTests(SynchronousTestCase):
    """
    C{--version} on each command prints the release, Twisted's and
    Python's, and exits 0.
    """

    def assertVersion(self, args, program):
        result = subprocess.run(
            [sys.executable] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            universal_newlines=True, timeout=60, cwd=REPO,
        )
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertRegex(
            result.stdout, rf"^{program} {__version__} \(Twisted [0-9.]+\w*, (CPython|PyPy) 3\.\d+\.\d+\)\n$"
        )

    def test_playbalancer(self):
        self.assertVersion(["-m", "playbalancer.ctl.cli", "--version"], "playbalancer")

    def test_twistdPlaybalancer(self):
        self.assertVersion(["-c", TWISTD, "playbalancer", "--version"], "twistd playbalancer")

    def test_changelogNamesThisRelease(self):
        """
        The newest entry of CHANGELOG.rst is this release.
        """
        with open(os.path.join(REPO, "CHANGELOG.rst"), encoding="utf-8") as f:
            lines = f.read().splitlines()
        entries = [line for index, line in enumerate(lines[:-1])
                   if set(lines[index + 1]) == {"-"} and line[:1].isdigit()]
        self.assertEqual(entries[0].split()[0], __version__)
