"""
The demo launcher says where things are as its config says, fails in one
line when a port it needs is taken, and stops everything it started.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from unittest import SkipTest

from twisted.trial.unittest import SynchronousTestCase

from playbalancer.config import parseConfig
from playbalancer.demo import endpointURL, summary
from playbalancer.testing import freePort

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DemoSummaryTests(SynchronousTestCase):
    def test_endpointURL(self):
        for endpoint, url in [
            ("tcp:8080:interface=127.0.0.1", "http://127.0.0.1:8080/"),
            ("tcp:19080", "http://127.0.0.1:19080/"),
            ("tcp6:8080:interface=\\:\\:1", "http://[::1]:8080/"),
            ("tcp6:8080", "http://[::1]:8080/"),
            ("ssl:8443:privateKey=k.pem:certKey=c.pem:interface=127.0.0.2", "https://127.0.0.2:8443/"),
            ("unix:/run/pb.sock", None),
        ]:
            self.assertEqual(endpointURL(endpoint), url, endpoint)

    def test_summaryFollowsTheConfig(self):
        config = parseConfig(
            {
                "listen": [{"endpoint": "tcp:19080:interface=127.0.0.1", "balancer": "web"}],
                "balancer": {"web": {"member": [{"name": "a", "url": "http://127.0.0.1:19999"}]}},
                "manager": {"endpoint": "tcp:19081:interface=127.0.0.1"},
            }
        )
        text = summary(config)
        self.assertIn("curl -i http://127.0.0.1:19080/", text)
        self.assertIn("manager: http://127.0.0.1:19081/", text)
        self.assertNotIn("8080", text.replace("19080", ""))
        self.assertNotIn("8081", text.replace("19081", ""))


def _freePort():
    # For a child process: reserved against other test processes.
    return freePort()


def _defaultInterrupt():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _takenPort(case):
    """
    A port on 127.0.0.1 with someone else listening on it (this test),
    closed when C{case} cleans up.
    """
    s = socket.socket()
    case.addCleanup(s.close)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s.getsockname()[1]


def _processesMentioning(text):
    """
    The PIDs of the processes whose command line contains C{text}.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


class _DemoProcessCase(SynchronousTestCase):
    """
    Runs the demo in children; every process it starts has C{self.token} in
    its command line (in the config path or a member name), so that what
    is left behind can be found, and is killed by its PID afterwards.
    """

    def setUp(self):
        if not os.path.isdir("/proc"):
            raise SkipTest("needs /proc to find the demo's processes")
        self.cwd = os.path.abspath(self.mktemp())
        os.makedirs(self.cwd)
        self.token = f"demo{uuid.uuid4().hex[:12]}"
        self.addCleanup(self._killLeftovers)

    def _killLeftovers(self):
        for pid in _processesMentioning(self.token):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def writeConfig(self, app1, app2, listen, manager):
        path = os.path.join(self.cwd, f"{self.token}.toml")
        with open(path, "w") as f:
            f.write(
                textwrap.dedent(
                    f"""\
                    [[listen]]
                    endpoint = "tcp:{listen}:interface=127.0.0.1"
                    balancer = "web"

                    [manager]
                    endpoint = "tcp:{manager}:interface=127.0.0.1"

                    [balancer.web]
                    scheduler = "standby"

                    [[balancer.web.member]]
                    name = "a-{self.token}"
                    url = "http://127.0.0.1:{app1}"

                    [[balancer.web.member]]
                    name = "b-{self.token}"
                    url = "http://127.0.0.1:{app2}"
                    standby = true
                    """
                )
            )
        return path

    def runDemo(self, args):
        """
        Run C{python -m playbalancer.demo args} to its end (bounded).  Its
        output goes to files: a pipe would stay open while anything it
        started lives on.
        """
        outputs = [os.path.join(self.cwd, name) for name in ("stdout", "stderr")]
        with open(outputs[0], "w") as out, open(outputs[1], "w") as err:
            status = subprocess.call(
                [sys.executable, "-m", "playbalancer.demo"] + args,
                cwd=self.cwd,
                env=dict(os.environ, PYTHONPATH=REPO),
                stdout=out,
                stderr=err,
                timeout=60,
            )
        stdout, stderr = (open(path).read() for path in outputs)
        return subprocess.CompletedProcess(args, status, stdout, stderr)

    def assertOneLineNaming(self, result, port):
        said = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        self.assertEqual(result.returncode, 1, said)
        self.assertEqual(result.stdout, "", said)
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, said)
        self.assertIn(f"port {port} ", lines[0], said)
        self.assertIn("taken", lines[0], said)

    def assertNothingLeft(self):
        self.assertEqual(_processesMentioning(self.token), [])


class PortTakenTests(_DemoProcessCase):
    """
    A port the demo needs is already taken: it says which in one line,
    exits with status 1, and leaves no process of its own running.
    """

    def test_serve(self):
        """
        One demo instance.
        """
        port = _takenPort(self)
        result = self.runDemo(["serve", "--port", str(port), "--name", self.token])
        self.assertOneLineNaming(result, port)
        self.assertNothingLeft()

    def test_clusterMember(self):
        """
        The second member's port: the first member, already running, is
        stopped.
        """
        taken = _takenPort(self)
        config = self.writeConfig(_freePort(), taken, _freePort(), _freePort())
        result = self.runDemo(["cluster", "--config", config])
        self.assertOneLineNaming(result, taken)
        self.assertNothingLeft()

    def test_clusterBalancer(self):
        """
        The balancer's listener: both members, already running, are
        stopped.
        """
        taken = _takenPort(self)
        config = self.writeConfig(_freePort(), _freePort(), taken, _freePort())
        result = self.runDemo(["cluster", "--config", config])
        self.assertOneLineNaming(result, taken)
        self.assertNothingLeft()

    def test_clusterManager(self):
        """
        The manager's port.
        """
        taken = _takenPort(self)
        config = self.writeConfig(_freePort(), _freePort(), _freePort(), taken)
        result = self.runDemo(["cluster", "--config", config])
        self.assertOneLineNaming(result, taken)
        self.assertNothingLeft()


class ClusterRunsTests(_DemoProcessCase):
    def startLauncher(self, args, env=None, session=False):
        """
        Start C{python -m playbalancer.demo args} (with C{session}, in a
        session and process group of its own, as a terminal's foreground
        job is) and read its output until it says it runs (bounded); the
        launcher and what it said.
        """
        launcher = subprocess.Popen(
            [sys.executable, "-m", "playbalancer.demo"] + args,
            cwd=self.cwd,
            env=dict(env or os.environ, PYTHONPATH=REPO),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=session,
            # A terminal's foreground job starts with SIGINT at its
            # default, whatever this process inherited (a job started in
            # the background by a script has it ignored).
            preexec_fn=_defaultInterrupt if session else None,
        )
        self.addCleanup(lambda: launcher.poll() is None and launcher.kill() or launcher.wait())
        said = b""
        deadline = time.monotonic() + 60
        with selectors.DefaultSelector() as selector:
            selector.register(launcher.stdout, selectors.EVENT_READ)
            while b"playbalancer demo running" not in said or not said.endswith(b"\n"):
                self.assertTrue(selector.select(max(0, deadline - time.monotonic())), said)
                chunk = os.read(launcher.stdout.fileno(), 65536)
                self.assertNotEqual(chunk, b"", b"the demo ended:\n" + said)
                said += chunk
        return launcher, said.decode()

    def stopLauncher(self, launcher):
        launcher.send_signal(signal.SIGTERM)
        launcher.communicate(timeout=30)
        self.assertEqual(launcher.returncode, 0)

    def test_runsAndStops(self):
        """
        With its ports free the demo says it runs once the balancer answers
        (a request gets a member's page), and SIGTERM stops every process
        it started.
        """
        app1, listen = _freePort(), _freePort()
        config = self.writeConfig(app1, _freePort(), listen, _freePort())
        launcher, _ = self.startLauncher(["cluster", "--config", config])
        with urllib.request.urlopen(f"http://127.0.0.1:{listen}/", timeout=10) as response:
            self.assertIn(f"Hello from a-{self.token} (port {app1})", response.read().decode())
        self.stopLauncher(launcher)
        self.assertNothingLeft()

    def test_ctrlCStopsEverything(self):
        """
        Ctrl-C, as the demo's banner says: SIGINT to its whole process
        group (what a terminal sends its foreground job) stops every
        process it started and frees its ports.
        """
        app1, app2, listen, manager = (_freePort() for _ in range(4))
        config = self.writeConfig(app1, app2, listen, manager)
        launcher, said = self.startLauncher(["cluster", "--config", config], session=True)
        # (If it fails to stop: its group, while the launcher still runs,
        # so that the group's ID is still its own.)
        self.addCleanup(lambda: launcher.poll() is None and os.killpg(launcher.pid, signal.SIGKILL))
        self.assertIn("Ctrl-C stops everything", said)
        with urllib.request.urlopen(f"http://127.0.0.1:{listen}/", timeout=10) as response:
            self.assertEqual(response.status, 200)
        os.killpg(launcher.pid, signal.SIGINT)
        launcher.communicate(timeout=30)
        self.assertNothingLeft()
        for port in (app1, app2, listen, manager):
            with socket.socket() as probe:
                self.assertNotEqual(probe.connect_ex(("127.0.0.1", port)), 0, port)

    def test_starterConfigWithPorts(self):
        """
        Without C{--config} (as C{pip install playbalancer} gives it: no
        etc/ here) the demo runs the starter config shipped in the package,
        on the ports given, and says so; the standby takes over when app1
        is drained; it removes the config it wrote when it stops.
        """
        listen, manager, app1, app2 = (_freePort() for _ in range(4))
        for name, port in (("app1", app1), ("app2", app2)):  # (if the test fails)
            self.addCleanup(self._killMember, name, port)
        scratch = os.path.join(self.cwd, self.token)  # in the twistd command line
        os.makedirs(scratch)
        launcher, said = self.startLauncher(
            ["--port", str(listen), "--manager-port", str(manager), "--app-ports", f"{app1},{app2}"],
            env=dict(os.environ, TMPDIR=scratch),
        )
        self.assertIn(f"balancer listening on http://127.0.0.1:{listen}/ -> balancer mycluster", said)
        self.assertIn(f"member app1: http://127.0.0.1:{app1}\n", said)
        self.assertIn(f"member app2: http://127.0.0.1:{app2} (standby)", said)
        self.assertIn(f"manager: http://127.0.0.1:{manager}/", said)
        with urllib.request.urlopen(f"http://127.0.0.1:{listen}/", timeout=10) as response:
            self.assertEqual(response.read().decode(), f"Hello from app1 (port {app1})\n")
        drain = urllib.request.Request(
            f"http://127.0.0.1:{manager}/api/balancers/mycluster/members/app1",
            data=b'{"admin": "drain"}', method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(drain, timeout=10).close()
        with urllib.request.urlopen(f"http://127.0.0.1:{listen}/", timeout=10) as response:
            self.assertEqual(response.read().decode(), f"Hello from app2 (port {app2})\n")
        self.assertEqual(len(os.listdir(scratch)), 1)  # the config's directory
        self.stopLauncher(launcher)
        self.assertNothingLeft()
        self.assertEqual(os.listdir(scratch), [])
        for port in (listen, manager, app1, app2):
            with socket.socket() as probe:
                self.assertNotEqual(probe.connect_ex(("127.0.0.1", port)), 0, port)

    def _killMember(self, name, port):
        for pid in _processesMentioning(f"serve\0--name\0{name}\0--port\0{port}\0"):
            os.kill(pid, signal.SIGKILL)

    def test_portsNotWithConfig(self):
        """
        Port options with C{--config} are refused in one line, nothing
        started.
        """
        config = self.writeConfig(_freePort(), _freePort(), _freePort(), _freePort())
        result = self.runDemo(["cluster", "--config", config, "--port", "8000"])
        self.assertEqual(result.returncode, 2, result)
        self.assertIn("--port: not with --config", result.stderr)
        self.assertNothingLeft()

    def test_version(self):
        """
        C{--version} names the release.
        """
        from playbalancer import __version__

        result = self.runDemo(["--version"])
        self.assertEqual(result.returncode, 0, result)
        self.assertTrue(result.stdout.startswith(f"playbalancer-demo {__version__} (Twisted "))
