"""
The whole program under test: a real C{twistd playbalancer} child process
(L{TwistdProcess}), and a trial test case that starts one on the
configuration a test writes and talks to it over HTTP (L{TwistdTestCase}).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import treq
from treq.client import HTTPClient

from twisted.internet import task
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from playbalancer.demo import TWISTD
from playbalancer.memory import childEnvironment
from playbalancer.testing.client import freePorts
from playbalancer.testing.members import MemberServer

__all__ = ["childrenOf", "TwistdProcess", "TwistdTestCase"]


def childrenOf(pid):
    """
    The process ids whose parent is C{pid} (read from C{/proc}).
    """
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(entry))
    return found


class TwistdProcess:
    """
    A real C{twistd -n playbalancer --config PATH} child process, for tests
    of the whole program: started at once under this interpreter, its
    output in C{logPath} (or dropped), ended by its own PID with L{stop}.
    On PyPy it runs with the recommended nursery size
    (L{playbalancer.memory.childEnvironment}) unless the environment sets
    one.

    @param args: the plugin's arguments instead of C{--config configPath}.
    @param command: the interpreter's arguments before C{playbalancer}
        (default: twistd in the foreground, no PID file).
    @param env: environment variables to set for it.
    @ivar log: the output file, open in binary mode (C{"w+b"}; it used to
        be text, C{"w+"}): reading it gives bytes, as L{output} does; or
        L{None} without C{logPath}.
    """

    def __init__(self, configPath=None, logPath=None, args=None, command=None, env=None):
        if args is None:
            args = ["--config", configPath]
        if command is None:
            command = ["-c", TWISTD, "-n", "--pidfile="]
        self.logPath = logPath
        self.log = open(logPath, "w+b") if logPath else None
        self.process = subprocess.Popen(
            [sys.executable] + list(command) + ["playbalancer"] + list(args),
            stdout=self.log if self.log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            # PyPy's nursery as recommended (the default follows the CPU's
            # caches: a VM showing a 480 MiB cache gets a huge one).
            env=childEnvironment(dict(os.environ, **(env or {}))),
        )

    @property
    def pid(self):
        return self.process.pid

    def running(self):
        return self.process.poll() is None

    def output(self):
        """
        What it wrote so far (bytes; empty without C{logPath}).
        """
        if self.logPath is None:
            return b""
        with open(self.logPath, "rb") as f:
            return f.read()

    def kill(self):
        """
        SIGKILL: the process ends with no chance to clean up.
        """
        self.process.send_signal(signal.SIGKILL)

    def stop(self, grace=10.0):
        """
        SIGTERM, and SIGKILL if it is still there after C{grace} seconds;
        then close the log.
        """
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        else:
            self.process.wait()
        if self.log is not None:
            self.log.close()


class TwistdTestCase(TestCase):
    """
    A real C{twistd playbalancer} with the configuration a test writes, and
    the helpers to talk to it (the reactor is imported when a test runs,
    not with this module).
    """

    timeout = 90

    def startTwistd(self, text):
        """
        Write C{text} as the configuration (C{self.configPath}) and start
        C{twistd} on it; its output goes to C{self.logPath}.
        """
        from twisted.internet import reactor

        config = self.configPath = self.mktemp()
        with open(config, "w") as f:
            f.write(text)
        self.logPath = self.mktemp()
        self.child = TwistdProcess(config, self.logPath)
        self.addCleanup(self.child.stop, 15.0)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.client = HTTPClient(Agent(reactor, pool=pool))

    async def startTwoMembers(self, balancer="", members="", workers=2, routes=""):
        """
        Two demo members (C{self.members}) behind a twistd with C{workers}
        workers, a round-robin balancer C{web} (C{balancer} and C{members}
        add to its table, C{routes} to the listener's) and a manager; wait
        until it serves.
        """
        from twisted.internet import reactor

        self.members = [MemberServer(name, reactor).start() for name in ("app1", "app2")]
        for member in self.members:
            self.addCleanup(member.stop)
        front, manager = freePorts(2)
        self.startTwistd(
            f"""
workers = {workers}

[[listen]]
endpoint = "tcp:{front}:interface=127.0.0.1"
balancer = "web"
{routes}
[balancer.web]
scheduler = "round-robin"
{balancer}
[[balancer.web.member]]
name = "app1"
url = "{self.members[0].url}"

[[balancer.web.member]]
name = "app2"
url = "{self.members[1].url}"
{members}
[manager]
endpoint = "tcp:{manager}:interface=127.0.0.1"
"""
        )
        self.base = f"http://127.0.0.1:{front}"
        self.manager = f"http://127.0.0.1:{manager}"
        await self.waitServing(workers)

    def twistdLog(self):
        with open(self.logPath) as f:
            return f.read()

    async def waitServing(self, workers, timeout=None):
        """
        Wait until C{workers} worker processes run and the front answers
        200; fail at once if twistd exits, and otherwise after C{timeout}
        seconds for both steps together (default: this test's own timeout
        less 15 s), with what it printed either way.
        """
        from twisted.internet import reactor

        if timeout is None:
            timeout = max(10.0, self.timeout - 15.0)
        deadline = time.monotonic() + timeout
        if workers > 1:
            await self.waitFor(
                lambda: len(childrenOf(self.child.pid)) == workers,
                deadline - time.monotonic(),
            )
        last = "no answer yet"
        while True:
            if not self.child.running():
                self.fail(f"twistd exited (status {self.child.process.returncode}):\n{self._logTail()}")
            try:
                code = await self._status("/", 5.0)
                if code == 200:
                    return
                last = f"status {code}"
            except Exception as e:
                last = f"{type(e).__name__}: {e}"
            if time.monotonic() > deadline:
                self.fail(f"the balancer never answered 200 in {timeout:.0f} s (last: {last}):\n{self._logTail()}")
            await task.deferLater(reactor, 0.05, lambda: None)

    def _status(self, path, timeout):
        """
        The status of a GET of C{path}, body read, all within C{timeout}
        seconds.
        """
        from twisted.internet import defer, reactor

        async def fetch():
            response = await self.client.get(self.base + path)
            await treq.content(response)
            return response.code

        return defer.ensureDeferred(fetch()).addTimeout(timeout, reactor)

    def _logTail(self, lines=40):
        if getattr(self, "logPath", None) is None:
            return "(no log)"
        try:
            text = self.twistdLog()
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(text.splitlines()[-lines:])

    async def waitFor(self, condition, timeout=20.0):
        from twisted.internet import reactor

        deadline = time.monotonic() + timeout
        while not condition():
            if not self.child.running():
                self.fail(f"twistd exited (status {self.child.process.returncode}):\n{self._logTail()}")
            if time.monotonic() > deadline:
                self.fail(f"condition never came true in {timeout:.0f} s:\n{self._logTail()}")
            await task.deferLater(reactor, 0.05, lambda: None)

    async def get(self, path):
        response = await self.client.get(self.base + path)
        await treq.content(response)
        return response

    async def change(self, member, change, balancer="web"):
        response = await self.client.post(
            f"{self.manager}/api/balancers/{balancer}/members/{member}",
            data=json.dumps(change).encode(),
            headers={b"Content-Type": [b"application/json"]},
        )
        body = await treq.content(response)
        self.assertEqual(response.code, 200, body)

    async def status(self):
        response = await self.client.get(self.manager + "/api/status")
        return json.loads(await treq.content(response))

    async def metric(self, name, **labels):
        response = await self.client.get(self.manager + "/metrics")
        text = (await treq.content(response)).decode()
        wanted = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return None
