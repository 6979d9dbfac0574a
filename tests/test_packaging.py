"""
Packaging promises: the wheel ships every module of the package and the
dropins (and nothing else, not a C{twisted/__init__.py}), nothing imports
the reactor at module level, and C{twistd --reactor} still chooses the
reactor.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile

from twisted.trial.unittest import TestCase

from playbalancer.demo import TWISTD

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def _modules():
    """
    Every module of the package, found on disk (so that a new or moved
    module is covered without a list to keep), and the two dropins.
    """
    import pkgutil

    import playbalancer

    names = ["playbalancer"] + [
        info.name for info in pkgutil.walk_packages(playbalancer.__path__, "playbalancer.")
    ]
    return ["twisted.plugins.playbalancer_plugin", "twisted.plugins.playbalancer_schedulers"] + names


MODULES = _modules()


#: What a copy of the source tree leaves out: version control, the
#: virtualenvs, earlier builds (setuptools would ship a build/ as it is)
#: and what tests and Python leave behind.
_NOT_SOURCE = (
    ".git", ".venv*", "build", "dist", "*.egg-info", "_trial_temp*", "__pycache__", "*.pyc",
    "dropin.cache", "node_modules",
)


def _copySource(work):
    source = os.path.join(work, "source")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    return source


def _wheel(work):
    """
    Build the wheel from a copy of the source tree in the new directory
    C{work}; the path of the wheel.
    """
    source = _copySource(work)
    out = os.path.join(work, "wheel")
    subprocess.check_call(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, source],
        stdout=subprocess.DEVNULL,
    )
    (wheel,) = [name for name in os.listdir(out) if name.endswith(".whl")]
    return os.path.join(out, wheel)


def _wheelFiles(work):
    """
    The names of the files the wheel holds, its .dist-info left out, and
    those of its .dist-info.
    """
    with zipfile.ZipFile(_wheel(work)) as archive:
        names = archive.namelist()
    return (
        {name for name in names if ".dist-info/" not in name},
        {name.split("/", 1)[1] for name in names if ".dist-info/" in name},
    )


def _shippedSources():
    """
    What the wheel should hold, found by walking the source tree: every
    module file of every package under playbalancer/ (a directory with an
    __init__.py), the manager's static files and the two dropins.  A
    directory of modules without an __init__.py fails the walk, since it
    would be left out unnoticed.
    """
    found = {
        "twisted/plugins/playbalancer_plugin.py",
        "twisted/plugins/playbalancer_schedulers.py",
    }
    for directory, subdirectories, files in os.walk(os.path.join(ROOT, "playbalancer")):
        subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
        relative = os.path.relpath(directory, ROOT).replace(os.sep, "/")
        if relative == "playbalancer":
            found.add("playbalancer/starter.toml")
        if relative == "playbalancer/manager/static":
            found.update(relative + "/" + name for name in files)
            continue
        modules = [name for name in files if name.endswith(".py")]
        if modules and "__init__.py" not in modules:
            raise AssertionError(f"{relative} holds modules but no __init__.py")
        found.update(relative + "/" + name for name in modules)
    return found


class PackagingTests(TestCase):
    def test_noReactorImportAtModuleLevel(self):
        """
        Importing every module leaves the reactor unchosen.
        """
        code = (
            "import sys\n"
            f"for name in {MODULES!r}:\n"
            "    __import__(name)\n"
            "print('twisted.internet.reactor' in sys.modules)\n"
        )
        output = subprocess.check_output([sys.executable, "-c", code], cwd=ROOT)
        self.assertEqual(output.strip(), b"False")

    def test_wheelShipsEveryModule(self):
        """
        The wheel holds every package and module under playbalancer/, the
        manager's static files and both dropins under twisted/plugins/, and
        nothing else: no tests, no benchmarks, no stray file, and no
        __init__.py that would shadow Twisted's own package.
        """
        expected = _shippedSources()
        self.assertIn("playbalancer/http/__init__.py", expected)
        self.assertIn("playbalancer/testing/members.py", expected)
        names, distInfo = _wheelFiles(self.mktemp())
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertEqual(sorted(expected - names), [], "missing from the wheel")
        self.assertEqual(sorted(names - expected), [], "in the wheel but not expected")
        self.assertIn("licenses/LICENSE", distInfo)

    def test_twistdReactorOption(self):
        """
        C{twistd --reactor=poll playbalancer} runs on the poll reactor.
        """
        log = os.path.abspath(self.mktemp())
        child = subprocess.Popen(
            [
                sys.executable, "-c", TWISTD, "--reactor=poll", "-n", "--pidfile=",
                "--logfile", log, "playbalancer",
                "--listen", "tcp:0:interface=127.0.0.1", "--member", "http://127.0.0.1:9",
            ],
            cwd=ROOT,
        )
        try:
            text = ""
            for _ in range(200):
                if os.path.exists(log):
                    with open(log) as f:
                        text = f.read()
                    if "starting on" in text:
                        break
                self.assertIsNone(child.poll(), text)
                time.sleep(0.05)
            self.assertIn("PollReactor", text)
            self.assertIn("starting on", text)
            self.assertNotIn("Traceback", text)
        finally:
            child.terminate()
            child.wait(10)


#: The modules a request passes through, and what they must not pull in:
#: the data path works without the manager, cluster mode, workers or the
#: command line (they depend on it, not the other way round).  Every module
#: of the packages listed here counts, new ones included.
DATA_PATH_PACKAGES = ["playbalancer.http", "playbalancer._net"]
DATA_PATH = [
    "playbalancer.tcp",
    "playbalancer.flow",
    "playbalancer.sweeper",
    "playbalancer.outcome",
    "playbalancer.balancer",
    "playbalancer.memberhealth",
    "playbalancer.schedulers",
    "playbalancer.endpoints",
    "playbalancer.membertls",
    "playbalancer.health",
    "playbalancer.resource",
    "playbalancer.routes",
    "playbalancer.access",
    "playbalancer.observe.stats",
    "playbalancer.observe.accesslog",
]
NOT_FROM_DATA_PATH = (
    "playbalancer.manager",
    "playbalancer.cluster",
    "playbalancer.workers",
    "playbalancer.worker",
    "playbalancer.ctl",
    "playbalancer.cli",
    "playbalancer.rolling",
    "playbalancer.tap",
)


class ImportDirectionTests(TestCase):
    def test_dataPathImportsNoControlPlane(self):
        code = (
            "import importlib, pkgutil, sys\n"
            f"names = {DATA_PATH!r}\n"
            f"for package in {DATA_PATH_PACKAGES!r}:\n"
            "    path = importlib.import_module(package).__path__\n"
            "    names += [package + '.' + m.name for m in pkgutil.iter_modules(path)]\n"
            "assert len(names) > 30, names\n"
            "for name in names:\n"
            "    importlib.import_module(name)\n"
            f"print(sorted(n for n in sys.modules if n.startswith({NOT_FROM_DATA_PATH!r})))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            universal_newlines=True, timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), "[]")

    def test_noImportCycleBetweenCliAndRolling(self):
        """
        C{playbalancer.ctl.rolling} builds on the manager client, not on the
        command line that uses it.
        """
        code = (
            "import sys\n"
            "import playbalancer.ctl.rolling\n"
            "print('playbalancer.ctl.cli' in sys.modules)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            universal_newlines=True, timeout=60,
        )
        self.assertEqual((result.returncode, result.stdout.strip()), (0, "False"), result.stderr)
