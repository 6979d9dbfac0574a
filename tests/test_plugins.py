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
import textwrap

from twisted.internet import defer
from twisted.trial import unittest

from tests.pluginharness import (
    BUILTINS,
    EXAMPLES,
    LIST_SCHEDULERS,
    TWISTD,
    TwistdBalancer,
    childEnv,
    configErrorLine,
    describe,
    runChild,
    servedBy,
    startDemoMember,
)

EXAMPLE = os.path.join(EXAMPLES, "p2c-scheduler")
DROPIN = os.path.join(EXAMPLE, "twisted", "plugins", "p2c_scheduler_plugin.py")


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
        result = runChild(["-c", script], childEnv(EXAMPLE), cwd)
        self.assertEqual(
            (result.returncode, result.stdout.strip()), (0, "ok"), describe(result)
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
        result = runChild(["-c", LIST_SCHEDULERS], childEnv(EXAMPLE), self.cwd)
        self.assertEqual(result.returncode, 0, describe(result))
        names = set(json.loads(result.stdout.splitlines()[-1]))
        self.assertEqual(names, BUILTINS | {"p2c"})
        self.assertNotIn("Traceback", result.stderr)

    def test_twistdHelp(self):
        """
        C{twistd --help} lists the playbalancer command.
        """
        result = runChild(["-c", TWISTD, "--help"], childEnv(EXAMPLE), self.cwd)
        self.assertEqual(result.returncode, 0, describe(result))
        commands = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ")]
        self.assertIn("playbalancer", commands, result.stdout)


class BadConfigTests(unittest.TestCase):
    """
    A config error from twistd is one line on stderr and a non-zero exit.
    """

    def runTwistd(self, balancerTable):
        return configErrorLine(self, balancerTable, EXAMPLE)

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

    async def _balancesWithP2C(self):
        members = [startDemoMember(self, "app1"), startDemoMember(self, "app2")]
        balancer = await TwistdBalancer.start(
            self,
            'scheduler = "p2c"\n\n[balancer.web.scheduler_options]\nseed = 1\n',
            members,
            EXAMPLE,
        )

        served = {"app1": 0, "app2": 0}
        for _ in range(20):
            response = await balancer.client.get(balancer.url, timeout=10)
            body = await response.text("utf-8")
            self.assertEqual(response.code, 200, body)
            name = servedBy(body, members)
            if name is not None:
                served[name] += 1
        self.assertEqual(sum(served.values()), 20, served)
        self.assertTrue(all(served.values()), f"one member got nothing: {served}")

        await balancer.stopCleanly()


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
        result = runChild(["-c", LIST_SCHEDULERS], childEnv(self.root), self.root)
        self.assertEqual(result.returncode, 0, describe(result))
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
