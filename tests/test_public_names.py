"""
Every public name is importable from where it is documented, and is there
the very object it claims to be: the twistd plugins, the console scripts,
the plugin interfaces, C{playbalancer.testing}, and every module that moved
(its old path keeps a shim that re-exports the new module's objects).
"""

from __future__ import annotations

import configparser
import importlib
import os
import subprocess
import sys

from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.interface import InterfaceClass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Old module path: (new module path, other modules the shim also takes
#: names from).
MOVED = {
    "playbalancer.sendnow": ("playbalancer._net.sendnow", ()),
    "playbalancer.rawsocket": ("playbalancer._net.rawsocket", ()),
    "playbalancer.readsize": ("playbalancer._net.readsize", ()),
    "playbalancer.tlslisten": ("playbalancer._net.tlslisten", ()),
    "playbalancer.stats": ("playbalancer.observe.stats", ()),
    "playbalancer.metrics": ("playbalancer.observe.metrics", ()),
    "playbalancer.accesslog": ("playbalancer.observe.accesslog", ()),
    "playbalancer.ctlclient": ("playbalancer.ctl.client", ()),
    "playbalancer.cli": ("playbalancer.ctl.cli", ("playbalancer.ctl.client",)),
    "playbalancer.rolling": ("playbalancer.ctl.rolling", ()),
    "playbalancer.faultmember": ("playbalancer.testing.faultmember", ()),
    "playbalancer.cluster.testing": ("playbalancer.testing.etcd", ()),
}

#: What C{playbalancer.testing} offers, and the module each comes from.
TESTING = {
    "HoldPage": "playbalancer.testing.members",
    "MemberServer": "playbalancer.testing.members",
    "BrokenMember": "playbalancer.testing.members",
    "closeAll": "playbalancer.testing.waiting",
    "waitUntil": "playbalancer.testing.waiting",
    "rawExchange": "playbalancer.testing.client",
    "freePorts": "playbalancer.testing.client",
    "freePort": "playbalancer.testing.client",
    "RawConversation": "playbalancer.testing.client",
    "TwistdProcess": "playbalancer.testing.twistd",
    "writeSelfSigned": "playbalancer.testing.certs",
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
    def test_shimsGiveTheSameObjects(self):
        """
        Each name an old path exports is the object of the new module (or
        of the module the shim also takes names from).
        """
        for old, (new, others) in MOVED.items():
            shim = importlib.import_module(old)
            homes = [importlib.import_module(name) for name in (new,) + others]
            for name in shim.__all__:
                owners = [home for home in homes if hasattr(home, name)]
                self.assertTrue(owners, f"{old}.{name} is in none of {new}, {others}")
                self.assertIs(getattr(shim, name), getattr(owners[0], name), f"{old}.{name}")

    def test_shimsExportEverythingPublic(self):
        """
        An old path exports every public name of its new module: code
        written against the old module finds all it had.
        """
        for old, (new, _) in MOVED.items():
            shim = importlib.import_module(old)
            module = importlib.import_module(new)
            self.assertEqual(set(module.__all__) - set(shim.__all__), set(), old)
            for name in module.__all__:
                self.assertIs(getattr(shim, name), getattr(module, name), f"{old}.{name}")

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
        The built-in scheduler plugins are the objects of
        C{playbalancer.schedulers}.
        """
        from twisted.plugins import playbalancer_schedulers

        from playbalancer import schedulers

        for name in playbalancer_schedulers.__all__:
            self.assertIs(getattr(playbalancer_schedulers, name), getattr(schedulers, name), name)


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
