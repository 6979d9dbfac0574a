"""
Scheduler plugins from outside the playbalancer tree: the example
C{examples/p2c-scheduler} package is put on C{PYTHONPATH} of child
processes (nothing is installed) and must be found, used by C{twistd
playbalancer}, and reported sanely when misconfigured.  Whatever other
schedulers the environment has installed does not change the outcome: the
discovery tests run again beside copies of the examples and another
scheduler laid out as installed.
"""

from __future__ import annotations

import os
import textwrap

from twisted.internet import defer
from twisted.trial import unittest

from tests.pluginharness import (
    BUILTINS,
    EXAMPLES,
    TWISTD,
    TwistdBalancer,
    childEnv,
    configErrorLine,
    describe,
    installedPlugins,
    listSchedulers,
    runChild,
    servedBy,
    startDemoMember,
)

EXAMPLE = os.path.join(EXAMPLES, "p2c-scheduler")

#: A dropin publishing one scheduler, C{name}, as C{attribute}.
PROBE = """\
from playbalancer.schedulers import SchedulerFactory, StandbyScheduler

{attribute} = SchedulerFactory("{name}", "Probes the dropin cache.", StandbyScheduler)
"""


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

    #: Directories around the children's C{PYTHONPATH} (see L{childEnv}).
    around = ((), ())

    def setUp(self):
        self.cwd = os.path.abspath(self.mktemp())
        os.makedirs(self.cwd)

    def test_availableSchedulers(self):
        """
        C{availableSchedulers()} lists C{p2c} along with the built-ins and
        whatever the environment has installed.
        """
        installed = listSchedulers(self, childEnv(around=self.around), self.cwd)
        self.assertTrue(BUILTINS <= installed, installed)
        names = listSchedulers(self, childEnv(EXAMPLE, around=self.around), self.cwd)
        self.assertEqual(names, installed | {"p2c"})

    def test_twistdHelp(self):
        """
        C{twistd --help} lists the playbalancer command.
        """
        result = runChild(["-c", TWISTD, "--help"], childEnv(EXAMPLE, around=self.around), self.cwd)
        self.assertEqual(result.returncode, 0, describe(result))
        commands = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ")]
        self.assertIn("playbalancer", commands, result.stdout)


class DiscoveryBesideInstalledPluginsTests(DiscoveryTests):
    """
    The same, in a virtualenv where the examples and another scheduler are
    installed.
    """

    def setUp(self):
        DiscoveryTests.setUp(self)
        self.around = installedPlugins(self)


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

    around = ((), ())

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        self.plugins = os.path.join(self.root, "twisted", "plugins")
        os.makedirs(self.plugins)
        # A dropin and scheduler names of its own: an installed plugin cannot
        # shadow the module or the names.
        self.dropin = os.path.join(self.plugins, "stale_probe_plugin.py")
        with open(self.dropin, "w") as f:
            f.write(PROBE.format(attribute="probe", name="stale-probe"))
        self.cache = os.path.join(self.plugins, "dropin.cache")
        elsewhere = os.path.abspath(self.mktemp())
        os.makedirs(elsewhere)
        self.installed = listSchedulers(self, childEnv(around=self.around), elsewhere)
        self.assertEqual(self.available(), self.installed | {"stale-probe"})
        self.assertTrue(os.path.exists(self.cache), "getPlugins wrote no dropin.cache")

    def available(self):
        return listSchedulers(self, childEnv(self.root, around=self.around), self.root)

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
        self.rewriteOlder(PROBE.format(attribute="probe", name="stale-probe-renamed"))
        self.assertEqual(self.available(), self.installed | {"stale-probe-renamed"})

    def test_renamedAttribute(self):
        """
        A plugin published under a new attribute is found even though the
        module's mtime is older than C{dropin.cache}.
        """
        self.rewriteOlder(PROBE.format(attribute="probeRenamed", name="stale-probe-renamed"))
        self.assertEqual(self.available(), self.installed | {"stale-probe-renamed"})


class StaleDropinCacheBesideInstalledPluginsTests(StaleDropinCacheTests):
    """
    The same, in a virtualenv where the examples and another scheduler are
    installed.
    """

    def setUp(self):
        self.around = installedPlugins(self)
        StaleDropinCacheTests.setUp(self)
