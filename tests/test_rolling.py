"""
The promise the project was born for: a rolling restart of every member,
with real member processes stopped and started again, under steady
keep-alive load of quick GETs, slow GETs and POSTs, loses no request.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.web.client import Agent, HTTPConnectionPool
from treq.client import HTTPClient

from playbalancer.config import HealthConfig
from playbalancer.tap import makeHealthChecker
from playbalancer.testing import freePorts, waitUntil

from tests.test_manager import ManagerTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RESTART = """\
import os, signal, subprocess, sys, time
member = os.environ["PLAYBALANCER_MEMBER"]
port = os.environ["PLAYBALANCER_URL"].rsplit(":", 1)[1]
here = os.path.dirname(os.path.abspath(__file__))
pidfile = os.path.join(here, member + ".pid")
pid = int(open(pidfile).read())
os.unlink(pidfile)
os.kill(pid, signal.SIGTERM)
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(0.05)
print("stopped", member, pid, flush=True)
child = subprocess.Popen(
    [sys.executable, "-m", "playbalancer.demo", "serve", "--port", port, "--name", member,
     "--pidfile", pidfile, "--startup-delay", "1"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
with open(os.path.join(here, "pids"), "a") as f:
    f.write("%d\\n" % child.pid)
print("started", member, child.pid, flush=True)
"""



class Load:
    """
    Keep-alive clients that loop over quick GETs, slow GETs and 16 KiB POSTs
    until stopped, checking every answer is complete.
    """

    def __init__(self, base, clients=6, kinds=(0, 1, 2)):
        self.base = base
        self.kinds = kinds
        self.running = True
        self.ok = 0
        self.failures = []
        self.busy = 0
        self.gate = None
        self.pools = [HTTPConnectionPool(reactor) for _ in range(clients)]
        self.loops = [defer.ensureDeferred(self.loop(i, pool)) for i, pool in enumerate(self.pools)]

    async def loop(self, index, pool):
        http = HTTPClient(Agent(reactor, pool=pool))
        body = (b"%02d" % index) * 8192
        step = index
        while self.running:
            if self.gate is not None:
                await self.gate
                continue
            kind = self.kinds[step % len(self.kinds)]
            step += 1
            self.busy += 1
            try:
                if kind == 0:
                    response = await http.get(self.base + "/")
                    text = await response.content()
                    good = response.code == 200 and text.startswith(b"Hello from app")
                elif kind == 1:
                    response = await http.get(self.base + "/slow?seconds=0.3")
                    text = await response.content()
                    good = response.code == 200 and b"waited 0.3s" in text
                else:
                    response = await http.post(self.base + "/echo", data=body)
                    text = await response.content()
                    good = response.code == 200 and json.loads(text)["body_length"] == len(body)
                if good:
                    self.ok += 1
                else:
                    self.failures.append((kind, response.code, text[:100]))
            except Exception as e:
                self.failures.append((kind, "error", repr(e)))
            finally:
                self.busy -= 1

    async def pause(self):
        """
        Stop sending new requests; fire once none is in flight.
        """
        self.gate = defer.Deferred()
        await waitUntil(lambda: self.busy == 0, reactor)

    def resume(self):
        gate, self.gate = self.gate, None
        gate.callback(None)

    async def stop(self):
        self.running = False
        if self.gate is not None:
            self.resume()
        await defer.DeferredList(self.loops)
        for pool in self.pools:
            await pool.closeCachedConnections()


class MemberProcessTestCase(ManagerTestCase):
    """
    Members as real processes (C{python -m playbalancer.demo serve}), each
    writing its PID to C{<dir>/<name>.pid}; all killed at the end.
    """

    timeout = 180

    def startMemberProcesses(self, names):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        with open(os.path.join(self.dir, "restart.py"), "w") as f:
            f.write(RESTART)
        pids = os.path.join(self.dir, "pids")
        open(pids, "w").close()
        watchers = []
        self.watchers = {}
        self.addCleanup(self._stopAll, pids, watchers)
        urls = []
        for name, port in zip(names, freePorts(len(names))):
            pidfile = os.path.join(self.dir, name + ".pid")
            watcher = _Quiet()
            watchers.append(watcher)
            self.watchers[name] = watcher
            child = reactor.spawnProcess(
                watcher,
                sys.executable,
                [sys.executable, "-m", "playbalancer.demo", "serve", "--port", str(port),
                 "--name", name, "--pidfile", pidfile],
                env=os.environ,
                path=ROOT,
            )
            with open(pids, "a") as f:
                f.write(f"{child.pid}\n")
            urls.append(f"http://127.0.0.1:{port}")
        return urls

    def _stopAll(self, pids, watchers):
        with open(pids) as f:
            for line in f:
                try:
                    os.kill(int(line), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return defer.DeferredList([w.ended for w in watchers])

    async def startAll(self):
        """
        Two member processes, the balancer with fast health checks, once
        both members passed their checks.
        """
        urls = self.startMemberProcesses(["app1", "app2"])
        balancer = self.startBalancer(urls, retry=60, clock=reactor)
        balancer.activeChecks = True
        balancer.healthSettings = settings = HealthConfig(interval=0.2, timeout=1, rise=2, fall=2)
        checker = makeHealthChecker(balancer, settings, reactor)
        checker.startService()
        self.addCleanup(checker.stopService)
        await waitUntil(
            lambda: all(m.checkPasses >= 2 for m in balancer.members), reactor, timeout=30
        )
        return balancer


class RollingRestartTests(MemberProcessTestCase):
    async def test_rollingRestartUnderLoadLosesNothing(self):
        balancer = await self.startAll()
        self.startManager()

        load = Load(self.base)
        await task.deferLater(reactor, 1.0, lambda: None)
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-m", "playbalancer.cli", "--manager", self.managerURL, "rolling-restart", "test",
             "--exec", f"{sys.executable} {os.path.join(self.dir, 'restart.py')}", "--timeout", "60"],
            env=os.environ,
            path=ROOT,
        )
        await task.deferLater(reactor, 1.0, lambda: None)
        await load.stop()
        report = out.decode() + err.decode()
        print(f"\n{report}requests completed: {load.ok}, failed: {len(load.failures)}")
        self.assertEqual(code, 0, report)
        self.assertIn("app1: enabled", report)
        self.assertIn("app2: enabled", report)
        self.assertEqual(load.failures, [])
        self.assertGreater(load.ok, 50)
        self.assertEqual([m.admin for m in balancer.members], ["enabled", "enabled"])
        for member in balancer.members:
            self.assertGreater(member.requests, 10)



class _Quiet(ProcessProtocol):
    """
    Ignores a child's output; C{ended} fires once it is gone.
    """

    def __init__(self):
        self.ended = defer.Deferred()

    def processEnded(self, reason):
        self.ended.callback(None)


class AbruptKillTests(MemberProcessTestCase):
    """
    Members killed with SIGKILL, no drain: what was not yet answered is
    retried elsewhere when that is safe.
    """

    def kill(self, name):
        with open(os.path.join(self.dir, name + ".pid")) as f:
            os.kill(int(f.read()), signal.SIGKILL)

    async def test_killedWhileIdle(self):
        """
        A member killed while nothing is in flight on it (the clients pause
        for the moment of the kill): connection failures and the pooled
        connections it leaves behind cost no request, POSTs included.
        """
        balancer = await self.startAll()
        load = Load(self.base, kinds=(0, 2))
        app1 = balancer.member("app1")
        await task.deferLater(reactor, 1.0, lambda: None)
        await load.pause()
        self.assertEqual(app1.active, 0)
        self.kill("app1")
        await self.watchers["app1"].ended
        load.resume()
        await task.deferLater(reactor, 2.0, lambda: None)
        await load.stop()
        print(f"\nrequests completed: {load.ok}, failed: {len(load.failures)} {load.failures[:3]}")
        self.assertFalse(app1.healthy)
        self.assertEqual(load.failures, [])
        self.assertGreater(load.ok, 50)

    async def test_killedDuringSlowGets(self):
        """
        A member killed while slow GETs wait on it: every GET that had no
        response byte yet is retried on the other member and succeeds.
        """
        balancer = await self.startAll()
        load = Load(self.base, kinds=(1,))
        app1 = balancer.member("app1")
        await waitUntil(lambda: app1.active >= 2, reactor)
        inFlight = app1.active
        self.kill("app1")
        await task.deferLater(reactor, 2.0, lambda: None)
        await load.stop()
        print(f"\nin flight on the killed member: {inFlight}; requests completed: {load.ok}, "
              f"failed: {len(load.failures)} {load.failures[:3]}")
        self.assertEqual(load.failures, [])
        self.assertGreater(load.ok, 10)
