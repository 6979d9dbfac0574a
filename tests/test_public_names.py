"""
Every public name is importable from where it is documented, and is there
the very object it claims to be: the twistd plugins, the console scripts,
the plugin interfaces, C{playbalancer.testing}, and every module that moved
(its old path keeps a shim that makes it the new module itself).
"""

from __future__ import annotations

import ast
import configparser
import importlib
import os
import re
import subprocess
import sys

from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.interface import InterfaceClass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The names C{playbalancer.cli} had that now live in the manager client
#: (the command line module, which the old path is, still has them).
CLI_CLIENT_NAMES = [
    "POLL_INTERVAL",
    "REQUEST_TIMEOUT",
    "CommandError",
    "ManagerClient",
    "ManagerError",
    "decodeAnswer",
    "findMember",
    "networkReason",
    "remaining",
    "waitDrained",
]

_MOVED_TO = re.compile(r"Moved to L\{(playbalancer[\w.]*)\}")


_REFERENCE = re.compile(r"L\{(playbalancer[\w.]*)\}")


def _sources():
    """
    The path of every module under playbalancer/ and of the dropins.
    """
    for top in ("playbalancer", os.path.join("twisted", "plugins")):
        for directory, subdirectories, files in os.walk(os.path.join(ROOT, top)):
            subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    yield os.path.join(directory, name)


def movedModules():
    """
    C{{old module path: new module path}} of every shim left at an old
    path, found on disk by its docstring ("Moved to L{...}"), so that a
    new shim is covered without a list to keep.
    """
    found = {}
    for path in _sources():
        with open(path, encoding="utf-8") as f:
            docstring = ast.get_docstring(ast.parse(f.read())) or ""
        moved = _MOVED_TO.match(docstring)
        if moved:
            relative = os.path.relpath(path, ROOT)[: -len(".py")]
            found[relative.replace(os.sep, ".")] = moved.group(1)
    return found


#: What C{playbalancer.testing} offers, and the module each comes from.
TESTING = {
    "HoldPage": "playbalancer.testing.members",
    "MemberServer": "playbalancer.testing.members",
    "BrokenMember": "playbalancer.testing.members",
    "closeAll": "playbalancer.testing.waiting",
    "waitUntil": "playbalancer.testing.waiting",
    "rawExchange": "playbalancer.testing.client",
    "freePorts": "playbalancer.testing.ports",
    "freePort": "playbalancer.testing.ports",
    "RawConversation": "playbalancer.testing.client",
    "TwistdProcess": "playbalancer.testing.twistd",
    "writeSelfSigned": "playbalancer.testing.certs",
    "SchedulerConformanceMixin": "playbalancer.testing.schedulercases",
    "awkwardViews": "playbalancer.testing.schedulercases",
    "requestView": "playbalancer.testing.views",
    "tcpView": "playbalancer.testing.views",
    "candidateMembers": "playbalancer.testing.views",
    "Simulation": "playbalancer.testing.simulator",
    "simulate": "playbalancer.testing.simulator",
    "SimulationReport": "playbalancer.testing.simreport",
    "MemberReport": "playbalancer.testing.simreport",
    "PhaseReport": "playbalancer.testing.simreport",
    "RemapReport": "playbalancer.testing.simreport",
    "SimulatedMember": "playbalancer.testing.simulated",
    "Latency": "playbalancer.testing.simulated",
    "fixed": "playbalancer.testing.simulated",
    "uniform": "playbalancer.testing.simulated",
    "exponential": "playbalancer.testing.simulated",
    "lognormal": "playbalancer.testing.simulated",
    "Fault": "playbalancer.testing.simulated",
    "down": "playbalancer.testing.simulated",
    "refusing": "playbalancer.testing.simulated",
    "Keys": "playbalancer.testing.simulated",
    "RequestStream": "playbalancer.testing.simulated",
    "addMember": "playbalancer.testing.simulated",
    "removeMember": "playbalancer.testing.simulated",
    "drainMember": "playbalancer.testing.simulated",
    "enableMember": "playbalancer.testing.simulated",
    "setWeight": "playbalancer.testing.simulated",
    "phase": "playbalancer.testing.simulated",
}

#: The names C{playbalancer.config} gave before it became a package, and
#: the module of the package that defines each.
CONFIG = {
    "NAME": "values",
    "ConfigError": "values",
    "memberURL": "values",
    "DEFAULT_SCHEDULER": "model",
    "DEFAULT_KEEPALIVE": "model",
    "DEFAULT_MANAGER_ENDPOINT": "model",
    "DEFAULT_ALLOW": "model",
    "MemberConfig": "model",
    "HealthConfig": "model",
    "BalancerConfig": "model",
    "ListenConfig": "model",
    "ManagerConfig": "model",
    "ClusterConfig": "model",
    "Config": "model",
}


def resolve(reference):
    """
    The object a C{module:attribute} entry point names.
    """
    moduleName, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(moduleName.strip()), attribute.strip())


class MovedModuleTests(SynchronousTestCase):
    def test_shimsFound(self):
        """
        The search for shims finds those of both sorts of moves: into the
        http package and into the others.
        """
        moved = movedModules()
        for old, new in [
            ("playbalancer.front", "playbalancer.http.front"),
            ("playbalancer.wire", "playbalancer.http.wire"),
            ("playbalancer.rolling", "playbalancer.ctl.rolling"),
            ("playbalancer.cli", "playbalancer.ctl.cli"),
            ("playbalancer.accesslog", "playbalancer.observe.accesslog"),
        ]:
            self.assertEqual(moved.get(old), new, old)

    def test_oldPathIsTheNewModule(self):
        """
        Every old path is the very module object of its new home, so that
        everything it had is there (private names too) and patching a name
        through the old path changes what the code reads.
        """
        for old, new in movedModules().items():
            module = importlib.import_module(new)
            self.assertIs(importlib.import_module(old), module, old)
            parent, _, leaf = old.rpartition(".")
            self.assertIs(getattr(importlib.import_module(parent), leaf), module, old)

    def test_patchThroughOldPath(self):
        """
        Patching a module constant through its old path takes effect.
        """
        import playbalancer.ctl.rolling
        import playbalancer.rolling

        self.patch(playbalancer.rolling, "POLL", 0.01)
        self.assertEqual(playbalancer.ctl.rolling.POLL, 0.01)

    def test_oldCommandLineNames(self):
        """
        C{playbalancer.cli} still has the names it had before the manager
        client moved out of it, as that client's objects.
        """
        import playbalancer.cli
        from playbalancer.ctl import client

        for name in CLI_CLIENT_NAMES:
            self.assertIs(getattr(playbalancer.cli, name), getattr(client, name), name)

    def test_docstringsNameNewPaths(self):
        """
        Docstrings name moved modules (and their objects) by their new
        paths, not through the shims.
        """
        moved = movedModules()
        stale = []
        for path in _sources():
            relative = os.path.relpath(path, ROOT).replace(os.sep, "/")
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for reference in _REFERENCE.findall(text):
                if any(reference == old or reference.startswith(old + ".") for old in moved):
                    stale.append(f"{relative}: {reference}")
        self.assertEqual(stale, [])

    def test_oldCommandLine(self):
        """
        C{python -m playbalancer.cli} still runs the command line.
        """
        result = subprocess.run(
            [sys.executable, "-m", "playbalancer.cli", "--help"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
            cwd=ROOT, timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("rolling-restart", result.stdout)


class ConfigNamesTests(SynchronousTestCase):
    def test_packageGivesTheDefiningModulesObjects(self):
        import playbalancer.config as config

        for name, module in CONFIG.items():
            home = importlib.import_module(f"playbalancer.config.{module}")
            self.assertIs(getattr(config, name), getattr(home, name), name)
        self.assertEqual(set(CONFIG) - set(config.__all__), set())

    def test_documentFunctions(self):
        """
        The functions that read a whole document are the package's own.
        """
        import playbalancer.config as config

        for name in ("parseConfig", "loadConfig", "configFromArguments"):
            function = getattr(config, name)
            self.assertEqual(function.__module__, "playbalancer.config", name)


class TestingNamesTests(SynchronousTestCase):
    def test_testingGivesTheModulesObjects(self):
        import playbalancer.testing as testing

        for name, module in TESTING.items():
            self.assertIs(getattr(testing, name), getattr(importlib.import_module(module), name), name)
            self.assertEqual(getattr(testing, name).__module__, module, name)
        self.assertEqual(set(TESTING) - set(testing.__all__), set())


class EntryPointTests(SynchronousTestCase):
    def test_consoleScripts(self):
        """
        Each console script of setup.cfg names the C{main} of the module
        that defines it.
        """
        parser = configparser.ConfigParser()
        parser.read(os.path.join(ROOT, "setup.cfg"))
        scripts = dict(
            line.split("=", 1)
            for line in parser["options.entry_points"]["console_scripts"].strip().splitlines()
        )
        scripts = {name.strip(): reference.strip() for name, reference in scripts.items()}
        self.assertEqual(
            scripts,
            {"playbalancer": "playbalancer.ctl.cli:main", "playbalancer-demo": "playbalancer.demo:main"},
        )
        from playbalancer import demo
        from playbalancer.ctl import cli

        self.assertIs(resolve(scripts["playbalancer"]), cli.main)
        self.assertIs(resolve(scripts["playbalancer-demo"]), demo.main)
        for reference in scripts.values():
            moduleName = reference.split(":")[0]
            self.assertEqual(resolve(reference).__module__, moduleName)

    def test_twistdPlugin(self):
        """
        The C{twistd playbalancer} plugin names C{playbalancer.tap}, whose
        C{Options} and C{makeService} twistd uses.
        """
        from twisted.plugins.playbalancer_plugin import playbalancer

        from playbalancer import tap

        self.assertTrue(IPlugin.providedBy(playbalancer))
        self.assertEqual((playbalancer.tapname, playbalancer.module), ("playbalancer", "playbalancer.tap"))
        self.assertIs(playbalancer.options, tap.Options)
        self.assertIs(playbalancer.makeService, tap.makeService)

    def test_schedulerPlugins(self):
        """
        Twisted's plugin search finds the built-in schedulers by their
        config names, as the factories of C{playbalancer.schedulers}, each
        making its scheduler.
        """
        from twisted.plugin import getPlugins

        from playbalancer import schedulers
        from playbalancer.interfaces import ISchedulerFactory

        found = {}
        for factory in getPlugins(ISchedulerFactory):
            found.setdefault(factory.name, factory)
        for name, factory, scheduler in [
            ("standby", schedulers.standby, schedulers.StandbyScheduler),
            ("round-robin", schedulers.roundRobin, schedulers.RoundRobinScheduler),
            ("least-conn", schedulers.leastConn, schedulers.LeastConnScheduler),
        ]:
            self.assertIs(found.get(name), factory, name)
            self.assertTrue(IPlugin.providedBy(factory), name)
            self.assertIsInstance(factory.makeScheduler({}), scheduler)


class InterfaceNamesTests(SynchronousTestCase):
    def test_interfacesDefinedWhereDocumented(self):
        """
        The plugin interfaces the README documents are defined in
        C{playbalancer.interfaces}, and are interfaces.
        """
        from playbalancer import interfaces

        for name in ("IMember", "IRequestView", "IScheduler", "ISchedulerFactory"):
            interface = getattr(interfaces, name)
            self.assertIsInstance(interface, InterfaceClass)
            self.assertEqual(interface.__identifier__, f"playbalancer.interfaces.{name}")
