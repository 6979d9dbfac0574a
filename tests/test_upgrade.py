"""
The binary upgrade (L{playbalancer.upgrade}) of a real C{twistd
playbalancer}: a new process takes over the listening sockets while the
old one finishes what it has in flight; no connection is refused.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time

import treq
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketServerFactory
from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.web.client import Agent, HTTPConnectionPool

from playbalancer.demo import TWISTD
from playbalancer.handover import alive
from playbalancer.testing import MemberServer, freePorts, waitUntil
from playbalancer.testing.twistd import TwistdProcess, TwistdTestCase, childrenOf
from tests.test_websocket import _Client, _EchoMember


async def endSuccessors(case):
    """
    End (by PID) the processes a test's balancer started by upgrades that
    are still there: its children, and the one its PID file names.
    """
    old = case.child.pid
    pids = set(childrenOf(old)) if case.child.running() else set()
    named = _pid(getattr(case, "pidfile", None) or "")
    if named is not None and named != old:
        pids.add(named)
    for pid in pids:
        ending = endProcess(pid)
        if ending is not None:
            await ending


def endProcess(pid):
    """
    SIGTERM to C{pid} (a process a test's balancer started) if it runs.
    """
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
        return waitUntil(lambda: not alive(pid), reactor, timeout=20)
    return None


class UpgradeTests(TwistdTestCase):
    timeout = 120

    async def startBalancer(self, extra="", env=None):
        """
        twistd with a PID file: a balancer C{web} over two members on one
        listener, C{ws} over a WebSocket echo member on another, and a
        manager.
        """
        self.members = [MemberServer(name, reactor).start() for name in ("app1", "app2")]
        for member in self.members:
            self.addCleanup(member.stop)
        echo = WebSocketServerFactory()
        echo.protocol = _EchoMember
        echo.opened, echo.received = [], []
        port = reactor.listenTCP(0, echo, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [p.transport.abortConnection() for p in echo.opened])
        front, wsFront, manager = freePorts(3)
        self.configPath = self.mktemp()
        self.pidfile = os.path.abspath(self.mktemp())
        with open(self.configPath, "w") as f:
            f.write(
                f"""
shutdown_grace = 60
{extra}
[[listen]]
endpoint = "tcp:{front}:interface=127.0.0.1"
balancer = "web"

[[listen]]
endpoint = "tcp:{wsFront}:interface=127.0.0.1"
balancer = "ws"

[balancer.web]
[[balancer.web.member]]
name = "app1"
url = "{self.members[0].url}"
[[balancer.web.member]]
name = "app2"
url = "{self.members[1].url}"

[balancer.ws]
[[balancer.ws.member]]
name = "echo"
url = "http://127.0.0.1:{port.getHost().port}"

[manager]
endpoint = "tcp:{manager}:interface=127.0.0.1"
"""
            )
        self.logPath = self.mktemp()
        self.child = TwistdProcess(
            self.configPath,
            self.logPath,
            command=["-c", TWISTD, "-n", f"--pidfile={self.pidfile}"],
            env=env,
        )
        self.addCleanup(self.child.stop, 15.0)
        self.addCleanup(endSuccessors, self)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.client = HTTPClient(Agent(reactor, pool=pool))
        self.base = f"http://127.0.0.1:{front}"
        self.wsPort = wsFront
        self.manager = f"http://127.0.0.1:{manager}"
        await self.waitServing(1)
        await waitUntil(lambda: _pid(self.pidfile) == self.child.pid, reactor)

    async def command(self, *args):
        from playbalancer.ctl.cli import run

        out, err = io.StringIO(), io.StringIO()
        code = await run(reactor, ["--manager", self.manager] + list(args), out, err, environ={})
        return code, out.getvalue(), err.getvalue()

    def openTunnel(self):
        client = WebSocketClientFactory(f"ws://127.0.0.1:{self.wsPort}/")
        # (autobahn gives the closing handshake 1 s by default: too little
        # on a loaded machine.)
        client.setProtocolOptions(closeHandshakeTimeout=30)
        client.protocol = _Client
        client.protocols, client.messages, client.closed = [], [], defer.Deferred()
        reactor.connectTCP("127.0.0.1", self.wsPort, client)
        return client

    async def test_upgradeUnderLoad(self):
        """
        Under a stream of new connections, with a slow download and a
        WebSocket tunnel open and a member drained: the new process takes
        over (the CLI names it), no request fails and no connection is
        refused; the download completes and the tunnel goes on, on the old
        process, which exits once they are done; the drain carries over and
        the PID file names the new process.
        """
        await self.startBalancer()
        await self.change("app2", {"admin": "drain"})
        tunnel = self.openTunnel()
        await waitUntil(lambda: tunnel.messages, reactor)
        arrived = self.members[0].hold.arrival()
        download = self.client.get(self.base + "/hold")
        await arrived

        results = {"ok": 0, "failed": []}
        running = [True]

        async def load():
            while running[0]:
                try:
                    response = await self.client.get(self.base + "/")
                    await treq.content(response)
                    if response.code == 200:
                        results["ok"] += 1
                    else:
                        results["failed"].append(response.code)
                except Exception as e:
                    results["failed"].append(repr(e))

        loops = [defer.ensureDeferred(load()) for _ in range(3)]
        code, out, err = await self.command("upgrade")
        self.assertEqual((code, err), (0, ""), out)
        newPid = int(out.split("PID ")[1].split(")")[0])
        self.addCleanup(endProcess, newPid)
        self.assertNotEqual(newPid, self.child.pid)
        self.assertTrue(alive(newPid))
        before = results["ok"]
        await waitUntil(lambda: results["ok"] >= before + 20, reactor, timeout=30)

        status = await self.status()
        self.assertEqual(status["balancers"]["web"]["members"]["app2"]["admin"], "drain")
        self.assertTrue(self.child.running(), "the old process left before its requests ended")
        tunnel.protocols[0].sendMessage(b"after")
        await waitUntil(lambda: len(tunnel.messages) == 2, reactor)
        self.assertEqual(tunnel.messages[1], b"AFTER")
        tunnel.protocols[0].sendClose(1000)
        self.assertEqual(await tunnel.closed, (True, 1000))
        self.members[0].hold.release(b"the whole download\n")
        response = await download
        self.assertEqual((response.code, await treq.content(response)), (200, b"the whole download\n"))
        await waitUntil(lambda: not self.child.running(), reactor, timeout=30)
        running[0] = False
        await defer.gatherResults(loops)
        self.assertEqual(results["failed"], [])
        self.assertGreater(results["ok"], before)
        await waitUntil(lambda: _pid(self.pidfile) == newPid, reactor)
        self.assertFalse(os.path.exists(self.pidfile + ".oldbin"))
        self.assertEqual((await self.get("/")).code, 200)

    async def test_hangUpSignalOnTheNewProcess(self):
        """
        The new process is a whole balancer: C{SIGUSR2} upgrades it too
        (the PID file follows), and the new one serves.
        """
        await self.startBalancer()
        os.kill(self.child.pid, signal.SIGUSR2)
        await waitUntil(lambda: not self.child.running(), reactor, timeout=30)
        second = _pid(self.pidfile)
        await waitUntil(lambda: _pid(self.pidfile) not in (None, self.child.pid), reactor)
        second = _pid(self.pidfile)
        self.addCleanup(endProcess, second)
        os.kill(second, signal.SIGUSR2)
        await waitUntil(lambda: not alive(second), reactor, timeout=30)
        await waitUntil(lambda: _pid(self.pidfile) not in (None, second), reactor)
        third = _pid(self.pidfile)
        self.addCleanup(endProcess, third)
        self.assertEqual((await self.get("/")).code, 200)

    async def test_systemdNotified(self):
        """
        Under systemd (C{NOTIFY_SOCKET}, C{Type=notify}, C{NotifyAccess=all})
        the balancer says C{READY=1} once it serves; after an upgrade the new
        process names itself the main process.
        """
        import shutil
        import socket
        import tempfile

        # (A short path, wherever the tests run from: AF_UNIX paths are
        # limited to 108 bytes.)
        directory = tempfile.mkdtemp(prefix="pb")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "notify")
        notifications = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notifications.bind(path)
        notifications.setblocking(False)
        self.addCleanup(notifications.close)
        received = []

        def drain():
            while True:
                try:
                    received.append(notifications.recv(4096).decode())
                except BlockingIOError:
                    return bool(received)

        await self.startBalancer(env={"NOTIFY_SOCKET": path})
        await waitUntil(drain, reactor)
        self.assertEqual(received, ["READY=1"])
        code, out, err = await self.command("upgrade")
        self.assertEqual(code, 0, err)
        newPid = int(out.split("PID ")[1].split(")")[0])
        self.addCleanup(endProcess, newPid)
        await waitUntil(lambda: drain() and len(received) == 2, reactor)
        self.assertEqual(received[1], f"MAINPID={newPid}\nREADY=1")

    async def test_fileWinsWhereItChanged(self):
        """
        As with a reload: a weight set at run time stays unless the new file
        changes that member's weight; a member whose URL the file changes
        starts afresh (enabled), whatever the old process had.
        """
        await self.startBalancer()
        await self.change("app1", {"weight": 5})
        await self.change("app2", {"weight": 7, "admin": "drain"})
        third = MemberServer("app3", reactor).start()
        self.addCleanup(third.stop)
        with open(self.configPath) as f:
            text = f.read()
        text = text.replace(f'url = "{self.members[1].url}"', f'url = "{third.url}"')
        with open(self.configPath, "w") as f:
            f.write(text.replace('name = "app1"', 'name = "app1"\nweight = 1', 1))
        code, out, err = await self.command("upgrade")
        self.assertEqual(code, 0, err)
        self.addCleanup(endProcess, int(out.split("PID ")[1].split(")")[0]))
        members = (await self.status())["balancers"]["web"]["members"]
        self.assertEqual(members["app1"]["weight"], 5)
        self.assertEqual(
            (members["app2"]["url"], members["app2"]["weight"], members["app2"]["admin"]),
            (third.url, 1, "enabled"),
        )
        with open(self.configPath, "w") as f:
            f.write(text.replace('name = "app1"', 'name = "app1"\nweight = 2', 1))
        code, out, err = await self.command("upgrade")
        self.assertEqual(code, 0, err)
        self.addCleanup(endProcess, int(out.split("PID ")[1].split(")")[0]))
        members = (await self.status())["balancers"]["web"]["members"]
        self.assertEqual(members["app1"]["weight"], 2)

    async def test_healthCarriesOver(self):
        """
        A member the health checks took out is still out in the new process
        from its first moment (its own checks would need C{fall} failures).
        """
        await self.startBalancer(
            extra="",
        )
        with open(self.configPath) as f:
            text = f.read()
        await self.members[1].stop()
        with open(self.configPath, "w") as f:
            f.write(text.replace("[balancer.ws]", "[balancer.web.health]\npath = \"/\"\ninterval = 30\nfall = 1\n\n[balancer.ws]"))
        # The checks come with a reload (interval 30 s: one round at once).
        os.kill(self.child.pid, signal.SIGHUP)
        await waitUntil(
            lambda: "app2 down" in self.twistdLog(), reactor, timeout=30
        )
        code, out, err = await self.command("upgrade")
        self.assertEqual(code, 0, err)
        newPid = int(out.split("PID ")[1].split(")")[0])
        self.addCleanup(endProcess, newPid)
        member = (await self.status())["balancers"]["web"]["members"]["app2"]
        self.assertFalse(member["healthy"], member)

    async def test_newProcessThatDiesKeepsTheOldServing(self):
        """
        A new process that ends before it serves (here: a new listener on a
        port someone else holds) leaves the old one serving; the CLI says
        so.
        """
        import socket

        await self.startBalancer()
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        with open(self.configPath) as f:
            text = f.read()
        with open(self.configPath, "w") as f:
            f.write(
                text.replace(
                    "[balancer.web]",
                    f'[[listen]]\nendpoint = "tcp:{taken.getsockname()[1]}:interface=127.0.0.1"\n'
                    'balancer = "web"\n\n[balancer.web]',
                )
            )
        code, out, err = await self.command("upgrade")
        self.assertEqual(code, 1)
        self.assertEqual(
            err, "playbalancer: the new process ended before it served (see its log)\n"
        )
        self.assertIn(f"listener tcp:{taken.getsockname()[1]}: address already in use", self.twistdLog())
        self.assertTrue(self.child.running())
        self.assertEqual((await self.get("/")).code, 200)
        self.assertEqual(_pid(self.pidfile), self.child.pid)

    async def test_failedUpgradeKeepsServing(self):
        """
        A new process that cannot start (its config no longer checks out)
        leaves the old one serving, with its PID file; the CLI says why
        and exits 1.
        """
        await self.startBalancer()
        with open(self.configPath) as f:
            text = f.read()
        with open(self.configPath, "w") as f:
            f.write(text.replace('name = "app2"', 'name = "app2"\nweight = -1'))
        code, out, err = await self.command("upgrade")
        self.assertEqual(code, 1)
        self.assertEqual(
            err,
            "playbalancer: balancer.web.member[1].weight: expected a whole number >= 0, got -1\n",
        )
        self.assertTrue(self.child.running())
        self.assertEqual(_pid(self.pidfile), self.child.pid)
        self.assertEqual((await self.get("/")).code, 200)
        await waitUntil(lambda: not childrenOf(self.child.pid), reactor, timeout=20)
        self.assertIn("upgrade failed, this process serves on", self.twistdLog())


def _pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


class Load:
    """
    New connections, one request each, from a few loops, until stopped:
    counts the good answers and lists the failures.
    """

    def __init__(self, client, url, loops=3):
        self.ok = 0
        self.failed = []
        self.running = True

        async def loop():
            while self.running:
                try:
                    response = await client.get(url)
                    await treq.content(response)
                    if response.code == 200:
                        self.ok += 1
                    else:
                        self.failed.append(response.code)
                except Exception as e:
                    self.failed.append(repr(e))

        self.loops = [defer.ensureDeferred(loop()) for _ in range(loops)]

    async def stop(self):
        self.running = False
        await defer.gatherResults(self.loops)


class WorkersTests(TwistdTestCase):
    """
    Reload and upgrade with C{workers = 2}: a new generation of workers
    (or a new parent and its workers) takes over; none of the requests
    sent meanwhile fails.
    """

    timeout = 120

    async def command(self, *args):
        from playbalancer.ctl.cli import run

        out, err = io.StringIO(), io.StringIO()
        code = await run(reactor, ["--manager", self.manager] + list(args), out, err, environ={})
        return code, out.getvalue(), err.getvalue()

    async def test_reloadStartsANewGeneration(self):
        """
        A reload that adds a member and a listener is done once the new
        workers serve it; the old workers then exit; nothing fails.
        """
        await self.startTwoMembers(workers=2)
        old = childrenOf(self.child.pid)
        third = MemberServer("app3", reactor).start()
        self.addCleanup(third.stop)
        second = freePorts(1)[0]
        with open(self.configPath) as f:
            text = f.read()
        text = text.replace(
            "[balancer.web]",
            f'[[listen]]\nendpoint = "tcp:{second}:interface=127.0.0.1"\nbalancer = "web"\n\n'
            "[balancer.web]",
        ).replace("[manager]", f'[[balancer.web.member]]\nname = "app3"\nurl = "{third.url}"\n\n[manager]')
        with open(self.configPath, "w") as f:
            f.write(text)
        load = Load(self.client, self.base + "/")
        code, out, err = await self.command("reload")
        self.assertEqual((code, err), (0, ""), out)
        self.assertIn("version 2", out)
        new = childrenOf(self.child.pid) - old
        self.assertEqual(len(new), 2)
        response = await self.client.get(f"http://127.0.0.1:{second}/")
        await treq.content(response)
        self.assertEqual(response.code, 200)
        await waitUntil(lambda: childrenOf(self.child.pid) == new, reactor, timeout=30)
        await load.stop()
        self.assertEqual(load.failed, [])
        self.assertGreater(load.ok, 0)
        # The new workers spread over all three members.  (Bounded, not
        # 12 requests at once: seen twice, once under CPython 3.13, a
        # round of the robin that did not reach the new member right after
        # the reload; see the closing note of 2026-12-03.)
        served = set()
        deadline = time.monotonic() + 10
        while served != {"app1", "app2", "app3"} and time.monotonic() < deadline:
            response = await self.get("/")
            served.add(response.headers.getRawHeaders(b"x-served-by")[0].decode())
        self.assertEqual(served, {"app1", "app2", "app3"})

    async def test_upgrade(self):
        """
        An upgrade hands every worker socket to the new parent, whose
        workers serve before the old ones stop; nothing fails.
        """
        await self.startTwoMembers(workers=2)
        self.addCleanup(endSuccessors, self)
        load = Load(self.client, self.base + "/")
        code, out, err = await self.command("upgrade")
        self.assertEqual((code, err), (0, ""), out)
        newPid = int(out.split("PID ")[1].split(")")[0])
        self.addCleanup(endProcess, newPid)
        self.assertEqual(len(childrenOf(newPid)), 2)
        await waitUntil(lambda: not self.child.running(), reactor, timeout=30)
        before = load.ok
        await waitUntil(lambda: load.ok >= before + 20, reactor, timeout=30)
        await load.stop()
        self.assertEqual(load.failed, [])
        status = await self.status()
        self.assertEqual(sorted(status["balancers"]["web"]["members"]), ["app1", "app2"])


class PortTakenTests(TwistdTestCase):
    """
    A listener whose port is taken stops twistd with one line naming it,
    in the foreground and as a daemon.
    """

    async def startTwistdOn(self, *twistdArgs):
        import socket
        import sys

        from twisted.internet.utils import getProcessOutputAndValue

        taken = socket.socket()
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        config = os.path.abspath(self.mktemp())
        with open(config, "w") as f:
            f.write(
                f'[[listen]]\nendpoint = "tcp:{port}:interface=127.0.0.1"\nbalancer = "web"\n'
                '[balancer.web]\n[[balancer.web.member]]\nname = "a"\nurl = "http://127.0.0.1:1"\n'
            )
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-c", TWISTD] + list(twistdArgs) + ["playbalancer", "--config", config],
            env=dict(os.environ),
            path=os.path.dirname(os.path.abspath(config)),
        )
        return port, err.decode(), code

    async def test_foreground(self):
        port, err, code = await self.startTwistdOn("-n", "--pidfile=")
        self.assertEqual((code, err), (1, f"playbalancer: listener tcp:{port}: address already in use\n"))

    async def test_daemon(self):
        log = os.path.abspath(self.mktemp())
        pidfile = os.path.abspath(self.mktemp())
        port, err, code = await self.startTwistdOn(f"--pidfile={pidfile}", f"--logfile={log}")
        self.assertEqual(code, 1)
        self.assertIn(f"CannotServe: listener tcp:{port}: address already in use'", err)
        self.assertFalse(os.path.exists(pidfile))


class ManagerRouteWithWorkersTests(TwistdTestCase):
    """
    C{manager_path} on a listener that worker processes serve: the
    workers pass the connection to the parent's manager, which sees the
    real client.
    """

    timeout = 120

    async def test_managerUnderThePath(self):
        await self.startTwoMembers(workers=2, routes='manager_path = "/balancer-manager"')
        response = await self.client.get(self.base + "/balancer-manager/api/status")
        status = json.loads(await treq.content(response))
        self.assertEqual(response.code, 200)
        self.assertEqual(sorted(status["balancers"]["web"]["members"]), ["app1", "app2"])
        response = await self.client.post(
            self.base + "/balancer-manager/api/balancers/web/members/app2",
            data=json.dumps({"admin": "drain"}).encode(),
            headers={b"Content-Type": [b"application/json"]},
        )
        self.assertEqual(response.code, 200, await treq.content(response))
        self.assertEqual((await self.status())["balancers"]["web"]["members"]["app2"]["admin"], "drain")
        # Credited to the client, not to the worker's local socket.
        await waitUntil(lambda: "member web/app2 changed by 127.0.0.1" in self.twistdLog(), reactor)
        page = await self.client.get(self.base + "/balancer-manager/")
        self.assertEqual(page.code, 200)
        self.assertIn(b"app1", await treq.content(page))

    async def test_managerSeesTheRealClient(self):
        """
        The manager's allow list is checked against the client, not the
        worker that passes the connection on.
        """
        await self.startTwoMembers(workers=2, routes='manager_path = "/balancer-manager"')
        with open(self.configPath) as f:
            text = f.read()
        self.assertIn("[manager]\n", text)
        response = await self.client.get(self.base + "/balancer-manager/api/status")
        await treq.content(response)
        self.assertEqual(response.code, 200)
        other = text.replace("[manager]\n", '[manager]\nallow = ["10.9.9.9/32"]\n')
        with open(self.configPath, "w") as f:
            f.write(other)
        code, out, err = await self.reloadThroughManagerPort()
        self.assertEqual(code, 0, err)
        response = await self.client.get(self.base + "/balancer-manager/api/status")
        await treq.content(response)
        self.assertEqual(response.code, 403)

    async def reloadThroughManagerPort(self):
        os.kill(self.child.pid, signal.SIGHUP)
        await waitUntil(
            lambda: "configuration reloaded by SIGHUP (version 2)" in self.twistdLog()
            or "refused" in self.twistdLog(),
            reactor,
            timeout=30,
        )
        return (0 if "version 2" in self.twistdLog() else 1), "", self.twistdLog()
