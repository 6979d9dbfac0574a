"""
The release files: the sdist holds the whole project (so that its tests
run from it), the metadata says what CI tests, and the license is there.
"""

from __future__ import annotations

import configparser
import importlib.machinery
import importlib.util
import os
import re
import subprocess
import sys
import tarfile

from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.test_packaging import ROOT, _copySource

#: The directories the sdist carries whole, and its files at the top.
GRAFTED = ("playbalancer", "twisted", "tests", "etc", "examples", "benchmarks", "tools", "constraints",
           ".ci", "docs")
TOP_FILES = ("LICENSE", "CHANGELOG.rst", "README.rst", "Makefile", "MANIFEST.in", "setup.cfg",
             "pyproject.toml")
#: What stays out: version control's.
NOT_SHIPPED = {".gitignore"}
#: What setuptools adds.
GENERATED = ("PKG-INFO",)


def _packageCheck():
    """
    tools/package-check as a module (it has no .py: it is a command).
    """
    path = os.path.join(ROOT, "tools", "package-check")
    loader = importlib.machinery.SourceFileLoader("package_check", path)
    spec = importlib.util.spec_from_loader("package_check", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _sourceFiles(source):
    """
    The files under C{source} that the sdist should hold.
    """
    found = set(TOP_FILES)
    for top in GRAFTED:
        for directory, subdirectories, files in os.walk(os.path.join(source, top)):
            subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
            relative = os.path.relpath(directory, source).replace(os.sep, "/")
            found.update(f"{relative}/{name}" for name in files if not name.endswith(".pyc"))
    found.discard("twisted/plugins/dropin.cache")
    return found


class SourceDistributionTests(TestCase):
    def test_holdsTheProject(self):
        """
        Built from a copy of this tree, the sdist holds every file of the
        package, the tests and what they read (etc/, examples/, tools/,
        constraints/), the benchmarks, LICENSE, CHANGELOG.rst and the
        Makefile; and nothing else but what setuptools adds.  The
        etc/playbalancer.toml link arrives as the file it names.
        """
        work = self.mktemp()
        source = _copySource(work)
        # (From an unpacked sdist, setuptools' own files are there too.)
        left = {
            name for name in os.listdir(source) if not name.endswith(".egg-info")
        } - set(GRAFTED) - set(TOP_FILES) - set(GENERATED)
        self.assertLessEqual(left, NOT_SHIPPED, "a new top-level file: ship it, or say why not")
        out = os.path.join(work, "sdist")
        subprocess.check_call(
            [sys.executable, "-m", "build", "--sdist", "--outdir", out, source],
            stdout=subprocess.DEVNULL,
        )
        (name,) = os.listdir(out)
        with tarfile.open(os.path.join(out, name)) as archive:
            members = {m.name.split("/", 1)[1]: m for m in archive.getmembers() if "/" in m.name}
            starter = archive.extractfile(members["etc/playbalancer.toml"]).read()
        files = {path for path, member in members.items() if not member.isdir()}
        files = {path for path in files if ".egg-info/" not in path and path not in GENERATED}
        expected = _sourceFiles(source)
        for needed in ("tests/__init__.py", "tests/proxyharness.py", "tests/corpus.py",
                       "tests/recording.py", "etc/mysuperwebapp.toml", "LICENSE"):
            self.assertIn(needed, expected)
        self.assertEqual(sorted(expected - files), [], "missing from the sdist")
        self.assertEqual(sorted(files - expected), [], "in the sdist but not expected")
        self.assertTrue(members["etc/playbalancer.toml"].isfile())
        with open(os.path.join(ROOT, "playbalancer", "starter.toml"), "rb") as f:
            self.assertEqual(starter, f.read())


class MetadataTests(SynchronousTestCase):
    def setUp(self):
        parser = configparser.ConfigParser()
        parser.read(os.path.join(ROOT, "setup.cfg"))
        self.metadata = parser["metadata"]
        self.options = parser["options"]

    def test_pythonVersionsAreTheTestedOnes(self):
        """
        The Python versions the classifiers name are the ones CI tests
        (tools/package-check), from C{python_requires} on, and PyPy is
        tested too.
        """
        check = _packageCheck()
        classifiers = self.metadata["classifiers"].split("\n")
        named = [c.rsplit(" :: ", 1)[1] for c in classifiers
                 if c.startswith("Programming Language :: Python :: 3.")]
        self.assertEqual(tuple(named), check.CPYTHONS)
        self.assertEqual(self.options["python_requires"], f">={check.CPYTHONS[0]}")
        self.assertIn("pypy3", check.DEFAULT_SMOKE)
        self.assertIn("pypy3", check.DEFAULT_SUITE)
        self.assertIn("Programming Language :: Python :: Implementation :: PyPy", classifiers)
        for version in check.CPYTHONS:
            self.assertTrue(version in check.DEFAULT_SUITE or version == "3.11", version)

    def test_license(self):
        """
        MIT, in the metadata and in LICENSE.
        """
        self.assertEqual(self.metadata["license"], "MIT")
        with open(os.path.join(ROOT, self.metadata["license_files"])) as f:
            self.assertTrue(f.read().startswith("MIT License\n"))

    def test_testExtraIsWhatTheTestsImport(self):
        """
        The test extra names what the tests import beyond the
        dependencies, and nothing they do not use.
        """
        extras = configparser.ConfigParser()
        extras.read(os.path.join(ROOT, "setup.cfg"))
        test = [line.split()[0] for line in extras["options.extras_require"]["test"].split("\n") if line]
        self.assertEqual(sorted(test), ["autobahn", "build", "h2"])
        sources = ""
        for name in os.listdir(os.path.join(ROOT, "tests")):
            if name.endswith(".py"):
                with open(os.path.join(ROOT, "tests", name), encoding="utf-8") as f:
                    sources += f.read()
        imports = set(re.findall(r"^\s*(?:import|from) (\w+)", sources, re.M))
        self.assertIn("autobahn", imports)
        self.assertIn("h2", imports)
        requires = [line.split()[0] for line in self.options["install_requires"].split("\n") if line]
        self.assertNotIn("h2", requires)
        self.assertEqual(extras["options.extras_require"]["http2"].split(), ["h2", ">=", "4.1.0"])
        self.assertNotIn("pytest", imports)
        self.assertIn('"-m", "build"', sources)
