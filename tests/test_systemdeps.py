"""
C{tools/system-deps}, which C{make test} runs first: the Debian packages
the suites use (Chromium and chromedriver, which the browser tests need;
etcd, without which the cluster tests are skipped; PyPy for C{make
test-pypy}) are installed as root when missing, named in one line
otherwise, and nothing happens when all are there.  It runs here against
stand-in programs on a C{PATH} of their own (C{id}, C{apt-get} and the
packages' programs), never the machine's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from unittest import SkipTest

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "system-deps")

#: The program each package provides, as the tests look for them.
PROGRAMS = {
    "chromium": "chromium",
    "chromium-driver": "chromedriver",
    "etcd-server": "etcd",
    "curl": "curl",
    "nghttp2-client": "nghttp",
    "npm": "npm",
    "pypy3": "pypy3",
}

#: Stands in for apt-get: records its arguments and whether policy-rc.d
#: was in place, and "installs" a package by writing its program.
APT_GET = """\
#!{bash}
echo "$* policy-rc.d:$([ -x "$POLICY_RC_D" ] && echo yes || echo no)" >> "{log}"
[ "$1" = install ] || exit 0
for package in "$@"; do
    case "$package" in
        chromium) program=chromium ;;
        chromium-driver) program=chromedriver ;;
        etcd-server) program=etcd ;;
        curl) program=curl ;;
        nghttp2-client) program=nghttp ;;
        npm) program=npm ;;
        pypy3) program=pypy3 ;;
        pypy3-venv) : > "{bin}/.pypy3-venv"; continue ;;
        *) continue ;;
    esac
    printf '#!{bash}\\nexit 0\\n' > "{bin}/$program"
    chmod +x "{bin}/$program"
done
"""

#: Stands in for pypy3: C{import venv, ensurepip} works once pypy3-venv is
#: "installed".
PYPY3 = """\
#!{bash}
[ -e "{bin}/.pypy3-venv" ]
"""


class SystemDepsTests(SynchronousTestCase):
    def setUp(self):
        self.bash = shutil.which("bash")
        if self.bash is None:
            raise SkipTest("needs bash")
        self.work = os.path.abspath(self.mktemp())
        self.bin = os.path.join(self.work, "bin")
        os.makedirs(self.bin)
        self.log = os.path.join(self.work, "apt-get.log")
        self.policy = os.path.join(self.work, "policy-rc.d")
        for tool in ("chmod", "rm"):
            os.symlink(shutil.which(tool), os.path.join(self.bin, tool))
        self.write("apt-get", APT_GET)

    def write(self, name, text):
        path = os.path.join(self.bin, name)
        with open(path, "w") as f:
            f.write(text.format(bash=self.bash, bin=self.bin, log=self.log))
        os.chmod(path, 0o755)

    def have(self, *packages):
        """
        Make the programs of C{packages} present.
        """
        for package in packages:
            if package == "pypy3-venv":
                open(os.path.join(self.bin, ".pypy3-venv"), "w").close()
            elif package == "pypy3":
                self.write("pypy3", PYPY3)
            else:
                self.write(PROGRAMS[package], "#!{bash}\nexit 0\n")

    def runScript(self, uid, *required, env=()):
        """
        Run the script as user C{uid}; C{(status, stdout, stderr, apt-get
        calls)}.
        """
        self.write("id", f"#!{{bash}}\n[ \"$1\" = -u ] && echo {uid}\n")
        environment = {"PATH": self.bin, "POLICY_RC_D": self.policy}
        environment.update(env)
        result = subprocess.run(
            [self.bash, SCRIPT] + list(required),
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
            timeout=60,
        )
        calls = []
        if os.path.exists(self.log):
            with open(self.log) as f:
                calls = f.read().splitlines()
        return result.returncode, result.stdout, result.stderr, calls

    def test_nothingMissing(self):
        """
        All there: nothing said, nothing run, as root or not.
        """
        self.have("chromium", "chromium-driver", "etcd-server", "curl", "nghttp2-client", "npm", "pypy3", "pypy3-venv")
        for uid in (0, 1000):
            self.assertEqual(self.runScript(uid, "chromium", "chromium-driver"), (0, "", "", []))

    def test_rootInstallsWhatIsMissing(self):
        """
        As root, apt-get installs the missing packages (pypy3-venv with a
        missing pypy3), with a policy-rc.d that keeps etcd's service from
        starting, removed afterwards.
        """
        self.have("chromium-driver")
        status, out, err, calls = self.runScript(0, "chromium", "chromium-driver")
        self.assertEqual(status, 0, err)
        self.assertEqual(
            calls,
            [
                "update -qq policy-rc.d:yes",
                "install -y -qq chromium etcd-server curl nghttp2-client npm pypy3 pypy3-venv policy-rc.d:yes",
            ],
        )
        self.assertFalse(os.path.exists(self.policy))
        self.assertEqual(err, "")
        self.assertEqual(len(out.splitlines()), 1, out)
        self.assertIn("chromium etcd-server curl nghttp2-client npm pypy3 pypy3-venv", out)
        # Now all there: nothing more to do.
        os.remove(self.log)
        self.assertEqual(self.runScript(0, "chromium", "chromium-driver"), (0, "", "", []))

    def test_existingPolicyKept(self):
        """
        A policy-rc.d already in place (Debian's container images have one)
        is left as it was.
        """
        with open(self.policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n# theirs\n")
        os.chmod(self.policy, 0o755)
        self.have("chromium", "chromium-driver", "curl", "nghttp2-client", "npm", "pypy3", "pypy3-venv")
        status, out, err, calls = self.runScript(0)
        self.assertEqual(status, 0, err)
        self.assertEqual(calls[-1], "install -y -qq etcd-server policy-rc.d:yes")
        with open(self.policy) as f:
            self.assertEqual(f.read(), "#!/bin/sh\nexit 101\n# theirs\n")

    def test_notRootOptionalMissing(self):
        """
        Not root, with only packages missing that the run can do without:
        one line naming them and how to install them; the run goes on.
        """
        self.have("chromium", "chromium-driver", "pypy3")
        status, out, err, calls = self.runScript(1000, "chromium", "chromium-driver")
        self.assertEqual((status, out, calls), (0, "", []))
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("etcd-server curl nghttp2-client npm pypy3-venv", err)
        self.assertIn("apt-get install etcd-server curl nghttp2-client npm pypy3-venv", err)

    def test_notRootRequiredMissing(self):
        """
        Not root, with a required package missing: the same one line, and
        a failure.
        """
        self.have("chromium", "etcd-server", "curl", "nghttp2-client", "npm", "pypy3", "pypy3-venv")
        status, out, err, calls = self.runScript(1000, "chromium", "chromium-driver")
        self.assertEqual((status, out, calls), (1, "", []))
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("apt-get install chromium-driver", err)

    def test_rootInstallFails(self):
        """
        As root, when apt-get fails, what is still missing is said in one
        line, and a required package missing is a failure.
        """
        self.write("apt-get", "#!{bash}\necho 'E: no network' >&2\nexit 100\n")
        self.have("chromium", "etcd-server", "curl", "nghttp2-client", "npm", "pypy3", "pypy3-venv")
        status, out, err, calls = self.runScript(0, "chromium", "chromium-driver")
        self.assertEqual(status, 1)
        self.assertFalse(os.path.exists(self.policy))
        self.assertIn("apt-get install chromium-driver", err.splitlines()[-1])

    def test_otherBrowserNames(self):
        """
        Chromium and chromedriver are found as the browser tests find them:
        under other names, or named in PLAYBALANCER_CHROMIUM and
        PLAYBALANCER_CHROMEDRIVER.
        """
        self.have("etcd-server", "curl", "nghttp2-client", "npm", "pypy3", "pypy3-venv")
        self.write("google-chrome", "#!{bash}\nexit 0\n")
        self.write("my-driver", "#!{bash}\nexit 0\n")
        self.assertEqual(
            self.runScript(1000, "chromium", "chromium-driver", env={"PLAYBALANCER_CHROMEDRIVER": "my-driver"}),
            (0, "", "", []),
        )
        status, _, err, _ = self.runScript(
            1000, "chromium", "chromium-driver",
            env={"PLAYBALANCER_CHROMIUM": "nowhere", "PLAYBALANCER_CHROMEDRIVER": "my-driver"},
        )
        self.assertEqual(status, 1)
        self.assertIn("apt-get install chromium\n", err)


class MakefileTests(SynchronousTestCase):
    """
    C{make test} and C{make test-pypy} run C{tools/system-deps} (as
    C{make system-deps}) before the suite; C{.ci/run} leaves it to them.
    """

    def dryRun(self, target):
        if shutil.which("make") is None:
            raise SkipTest("needs make")
        result = subprocess.run(
            ["make", "-n", "-C", ROOT, target],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout.splitlines()

    def assertDepsFirst(self, target):
        lines = self.dryRun(target)
        deps = [i for i, line in enumerate(lines) if "tools/system-deps" in line]
        suite = [i for i, line in enumerate(lines) if re.search(r"twisted\.trial .*tests$", line)]
        self.assertTrue(deps and suite, lines)
        self.assertLess(deps[0], suite[0], lines)

    def test_test(self):
        self.assertDepsFirst("test")

    def test_testPyPy(self):
        self.assertDepsFirst("test-pypy")

    def test_ciRunUsesMake(self):
        with open(os.path.join(ROOT, ".ci", "run")) as f:
            script = f.read()
        self.assertNotIn("apt-get", script)
        commands = [line.strip() for line in script.splitlines() if line.strip().startswith("make")]
        self.assertEqual(commands, ["make test"])
        # (PyPy's run of the suite is make test-pypy in the unpacked sdist.)
        self.assertIn("\npython3 tools/package-check\n", script)
