"""
Scheduler plugins from outside the playbalancer tree: the example
C{examples/p2c-scheduler} package is put on C{PYTHONPATH} of child
processes (nothing is installed) and must be found, used by C{twistd
playbalancer}, and reported sanely when misconfigured.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

from twisted.internet import defer, protocol, reactor
from twisted.internet.task import deferLater
from twisted.protocols.policies import WrappingFactory
from twisted.trial import unittest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "examples", "p2c-scheduler")
DROPIN = os.path.join(EXAMPLE, "twisted", "plugins", "p2c_scheduler_plugin.py")

#: Runs twistd with this interpreter.
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"

BUILTINS = {"standby", "round-robin", "least-conn"}

#: Upper bound for any child process that is expected to finish by itself.
CHILD_TIMEOUT = 60

LIST_SCHEDULERS = (
    "import json; from playbalancer.schedulers import availableSchedulers; "
    "print(json.dumps(sorted(availableSchedulers())))"
)


def _env(*paths):
    """
    The environment of a child: C{paths}, then this checkout, on
    C{PYTHONPATH}; no bytecode files (the dropin tests rewrite sources).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(list(paths) + [REPO])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(args, env, cwd):
    """
    Run C{sys.executable args} to completion (bounded).
    """
    return subprocess.run(
        [sys.executable] + list(args),
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=CHILD_TIMEOUT,
    )


def _freePort():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _describe(result):
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


class _Child(protocol.ProcessProtocol):
    """
    A child process: its output, and whether it has ended.
    """

    def __init__(self):
        self.chunks = []
        self.ended = False
        self.reason = None

    def outReceived(self, data):
        self.chunks.append(data)

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended = True
        self.reason = reason.value

    def output(self):
        return b"".join(self.chunks).decode("utf-8", "replace")


async def _waitFor(predicate, seconds, step=0.05):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await deferLater(reactor, step, lambda: None)
    return True


async def _stopChild(child, transport):
    """
    SIGTERM the child by its PID, then SIGKILL if it lingers; bounded.
    """
    for sig, grace in [(signal.SIGTERM, 10), (signal.SIGKILL, 5)]:
        if child.ended:
            return
        pid = transport.pid
        if pid is not None:  # None once reaped: never signal a reused PID
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        await _waitFor(lambda: child.ended, grace)


class SchedulerTests(unittest.TestCase):
    """
    The p2c scheduler itself (in a child, as the plugin is found there).
    """

    def test_behaviour(self):
        script = textwrap.dedent(
            """
            from zope.interface.verify import verifyObject
            from twisted.plugin import IPlugin
            from playbalancer.interfaces import IScheduler, ISchedulerFactory
            from playbalancer.schedulers import availableSchedulers

            factory = availableSchedulers()["p2c"]
            assert IPlugin.providedBy(factory)
            verifyObject(ISchedulerFactory, factory)
            assert factory.name == "p2c" and factory.description

            class M:
                def __init__(self, name, active=0, weight=1):
                    self.name, self.active, self.weight = name, active, weight

            s = factory.makeScheduler({})
            verifyObject(IScheduler, s)
            only = M("only")
            assert s.pick([only], None) is only

            # The least loaded relative to weight wins; with two distinct
            # draws the most loaded of three is never chosen.
            a, b, c = M("a", active=2, weight=4), M("b", active=1), M("c", active=9)
            picks = {s.pick([a, b, c], None).name for _ in range(200)}
            assert picks == {"a", "b"}, picks
            assert all(s.pick([b, a], None) is a for _ in range(50))

            # Equal load: random among both; a seed makes it repeatable.
            x, y, z = M("x"), M("y"), M("z")
            def run(scheduler):
                return [scheduler.pick([x, y, z], None).name for _ in range(100)]
            first = run(factory.makeScheduler({"seed": 1}))
            assert first == run(factory.makeScheduler({"seed": 1}))
            assert set(first) == {"x", "y", "z"}, first

            for options, words in [
                ({"bogus": 1, "other": 2}, ["bogus", "other"]),
                ({"seed": "one"}, ["seed"]),
            ]:
                try:
                    factory.makeScheduler(options)
                except ValueError as e:
                    assert all(w in str(e) for w in words), str(e)
                else:
                    raise AssertionError(f"accepted {options!r}")
            print("ok")
            """
        )
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        result = _run(["-c", script], _env(EXAMPLE), cwd)
        self.assertEqual(
            (result.returncode, result.stdout.strip()), (0, "ok"), _describe(result)
        )


class DiscoveryTests(unittest.TestCase):
    """
    The out-of-tree dropin is found like the built-in schedulers.
    """

    def setUp(self):
        self.cwd = os.path.abspath(self.mktemp())
        os.makedirs(self.cwd)

    def test_availableSchedulers(self):
        """
        C{availableSchedulers()} lists C{p2c} along with the built-ins.
        """
        result = _run(["-c", LIST_SCHEDULERS], _env(EXAMPLE), self.cwd)
        self.assertEqual(result.returncode, 0, _describe(result))
        names = set(json.loads(result.stdout.splitlines()[-1]))
        self.assertEqual(names, BUILTINS | {"p2c"})
        self.assertNotIn("Traceback", result.stderr)

    def test_twistdHelp(self):
        """
        C{twistd --help} lists the playbalancer command.
        """
        result = _run(["-c", TWISTD, "--help"], _env(EXAMPLE), self.cwd)
        self.assertEqual(result.returncode, 0, _describe(result))
        commands = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ")]
        self.assertIn("playbalancer", commands, result.stdout)


class BadConfigTests(unittest.TestCase):
    """
    A config error from twistd is one line on stderr and a non-zero exit.
    """

    def runTwistd(self, balancerTable):
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        config = os.path.join(cwd, "playbalancer.toml")
        with open(config, "w") as f:
            f.write(
                textwrap.dedent(
                    f"""\
                    [[listen]]
                    endpoint = "tcp:{_freePort()}:interface=127.0.0.1"
                    balancer = "web"

                    [balancer.web]
                    """
                )
                + textwrap.dedent(balancerTable)
                + textwrap.dedent(
                    """
                    [[balancer.web.member]]
                    name = "app1"
                    url = "http://127.0.0.1:9"
                    """
                )
            )
        args = ["-c", TWISTD, "-n", "--pidfile=", "playbalancer", "--config", config]
        result = _run(args, _env(EXAMPLE), cwd)
        self.assertNotEqual(result.returncode, 0, _describe(result))
        self.assertNotIn("Traceback", result.stdout + result.stderr, _describe(result))
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, _describe(result))
        return lines[0]

    def test_unknownScheduler(self):
        line = self.runTwistd('scheduler = "nope"\n')
        self.assertIn("balancer.web.scheduler", line)
        self.assertIn("nope", line)
        # The message lists what is known, the plugin included.
        self.assertIn("p2c", line)

    def test_unknownSchedulerOption(self):
        """
        The plugin's own option check reaches the user the same way.
        """
        line = self.runTwistd(
            """\
            scheduler = "p2c"

            [balancer.web.scheduler_options]
            seed = 1
            bogus = true
            """
        )
        self.assertIn("balancer.web.scheduler_options", line)
        self.assertIn("bogus", line)


class EndToEndTests(unittest.TestCase):
    """
    C{twistd playbalancer} with C{scheduler = "p2c"} in front of two real
    member web servers.
    """

    def test_balancesWithP2C(self):
        return defer.ensureDeferred(self._balancesWithP2C())

    def startMember(self, name):
        from playbalancer.demo import DemoInstance

        instance = DemoInstance(name, 0, reactor)
        wrapper = WrappingFactory(instance.site())
        port = reactor.listenTCP(0, wrapper, interface="127.0.0.1")
        instance.port = port.getHost().port

        async def stop():
            await port.stopListening()
            # The balancer is gone by now (cleanups run last-in first-out);
            # its connections to us end shortly.
            if not await _waitFor(lambda: not wrapper.protocols, 5):
                for p in list(wrapper.protocols):
                    p.transport.abortConnection()
                await _waitFor(lambda: not wrapper.protocols, 5)

        self.addCleanup(lambda: defer.ensureDeferred(stop()))
        return instance

    async def _balancesWithP2C(self):
        from treq.client import HTTPClient
        from twisted.web.client import Agent, HTTPConnectionPool

        members = [self.startMember("app1"), self.startMember("app2")]

        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        listen = _freePort()
        config = os.path.join(cwd, "playbalancer.toml")
        memberTables = "".join(
            f'\n[[balancer.web.member]]\nname = "{m.name}"\nurl = "http://127.0.0.1:{m.port}"\n'
            for m in members
        )
        with open(config, "w") as f:
            f.write(
                f'[[listen]]\nendpoint = "tcp:{listen}:interface=127.0.0.1"\nbalancer = "web"\n\n'
                '[balancer.web]\nscheduler = "p2c"\n\n'
                "[balancer.web.scheduler_options]\nseed = 1\n" + memberTables
            )

        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        client = HTTPClient(Agent(reactor, pool=pool))

        child = _Child()
        args = [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "playbalancer", "--config", config]
        transport = reactor.spawnProcess(child, sys.executable, args, env=_env(EXAMPLE), path=cwd)
        self.addCleanup(lambda: defer.ensureDeferred(_stopChild(child, transport)))

        url = f"http://127.0.0.1:{listen}/"
        deadline = time.monotonic() + 20
        while True:
            if child.ended:
                self.fail(f"twistd ended early ({child.reason}):\n{child.output()}")
            try:
                response = await client.get(url, timeout=2)
                await response.content()
                break
            except Exception:
                if time.monotonic() > deadline:
                    self.fail(f"twistd did not answer on {url} in 20 s:\n{child.output()}")
                await deferLater(reactor, 0.1, lambda: None)

        served = {"app1": 0, "app2": 0}
        for _ in range(20):
            response = await client.get(url, timeout=10)
            body = await response.text("utf-8")
            self.assertEqual(response.code, 200, body)
            for name in served:
                if f"Hello from {name} " in body:
                    served[name] += 1
        self.assertEqual(sum(served.values()), 20, served)
        self.assertTrue(all(served.values()), f"one member got nothing: {served}")

        await _stopChild(child, transport)
        self.assertTrue(child.ended, "twistd did not stop")
        log = child.output()
        for bad in ["Traceback", "Unhandled Error", "CRITICAL"]:
            self.assertNotIn(bad, log, log)


class StaleDropinCacheTests(unittest.TestCase):
    """
    Twisted caches what each dropin module publishes in C{dropin.cache} and
    trusts an entry while the module's mtime is older than the cache.  A
    dropin replaced by a file with an older mtime (C{tar -x}, C{cp -p},
    C{rsync -t}, a package that keeps file times) therefore goes unnoticed.
    """

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        self.plugins = os.path.join(self.root, "twisted", "plugins")
        os.makedirs(self.plugins)
        shutil.copytree(
            os.path.join(EXAMPLE, "p2c_scheduler"),
            os.path.join(self.root, "p2c_scheduler"),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        self.dropin = os.path.join(self.plugins, "p2c_scheduler_plugin.py")
        shutil.copy(DROPIN, self.dropin)
        self.cache = os.path.join(self.plugins, "dropin.cache")
        self.assertEqual(self.available(), BUILTINS | {"p2c"})
        self.assertTrue(os.path.exists(self.cache), "getPlugins wrote no dropin.cache")

    def available(self):
        result = _run(["-c", LIST_SCHEDULERS], _env(self.root), self.root)
        self.assertEqual(result.returncode, 0, _describe(result))
        self.stderr = result.stderr
        return set(json.loads(result.stdout.splitlines()[-1]))

    def rewriteOlder(self, source):
        """
        Replace the dropin, with an mtime older than the cache's.
        """
        with open(self.dropin, "w") as f:
            f.write(textwrap.dedent(source))
        older = os.stat(self.cache).st_mtime - 60
        os.utime(self.dropin, (older, older))
        self.assertLess(os.stat(self.dropin).st_mtime, os.stat(self.cache).st_mtime)

    def test_renamedFactory(self):
        """
        The cache records the module attribute holding a plugin, not the
        scheduler's C{name}, which is read from the live object: a new
        C{name} on the same attribute shows despite the stale cache.
        """
        self.rewriteOlder(
            """\
            from p2c_scheduler import P2CSchedulerFactory

            class Renamed(P2CSchedulerFactory):
                name = "p2c-renamed"

            p2c = Renamed()
            """
        )
        self.assertEqual(self.available(), BUILTINS | {"p2c-renamed"})
        self.assertNotIn("Traceback", self.stderr)

    def test_renamedAttribute(self):
        """
        A plugin published under a new attribute is found even though the
        module's mtime is older than C{dropin.cache}.
        """
        self.rewriteOlder(
            """\
            from p2c_scheduler import P2CSchedulerFactory

            class Renamed(P2CSchedulerFactory):
                name = "p2c-renamed"

            p2cRenamed = Renamed()
            """
        )
        self.assertEqual(self.available(), BUILTINS | {"p2c-renamed"})
        self.assertNotIn("Traceback", self.stderr)
