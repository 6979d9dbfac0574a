"""
Reload and upgrade on real C{twistd playbalancer} processes, the harder
cases: unix: listeners, daemon mode, new workers that never serve, TCP
mode, the workers' manager sockets, changes during an upgrade, counters.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import stat
import sys

import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from playbalancer.demo import TWISTD
from playbalancer.handover import alive
from playbalancer.testing import MemberServer, freePorts, waitUntil
from playbalancer.testing.twistd import TwistdTestCase, childrenOf


def endProcess(pid):
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
        return waitUntil(lambda: not alive(pid), reactor, timeout=20)
    return None


def unixGet(path):
    """
    One HTTP/1.0 request over the Unix socket at C{path} (blocking: run in
    a thread): the bytes that came back.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(path)
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    finally:
        s.close()


class _CLI:
    async def command(self, *args):
        from playbalancer.ctl.cli import run

        out, err = io.StringIO(), io.StringIO()
        code = await run(reactor, ["--manager", self.manager] + list(args), out, err, environ={})
        return code, out.getvalue(), err.getvalue()


class UnixListenerUpgradeTests(_CLI, TwistdTestCase):
    """
    A C{unix:} listener keeps its path and its mode across an upgrade (the
    old process must not remove the path it hands over).
    """

    timeout = 120

    async def startUnix(self):
        self.member = MemberServer("app1", reactor).start()
        self.addCleanup(self.member.stop)
        import shutil
        import tempfile

        # (A short path: AF_UNIX paths are limited to 108 bytes.)
        directory = tempfile.mkdtemp(prefix="pb17-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.sock = os.path.join(directory, "front.sock")
        (manager,) = freePorts(1)
        self.manager = f"http://127.0.0.1:{manager}"
        self.startTwistd(
            f"""
[[listen]]
endpoint = "unix:{self.sock}:mode=600"
balancer = "web"

[balancer.web]
[[balancer.web.member]]
name = "app1"
url = "{self.member.url}"

[manager]
endpoint = "tcp:{manager}:interface=127.0.0.1"
"""
        )
        await waitUntil(lambda: os.path.exists(self.sock), reactor, timeout=20)
        # (The path exists once the socket is bound, a moment before it
        # listens: a connection then is refused.)
        for _ in range(100):
            try:
                answer = await deferToThread(unixGet, self.sock)
                break
            except ConnectionRefusedError:
                await deferLater(reactor, 0.05, lambda: None)
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:80])

    async def upgrade(self):
        code, out, err = await self.command("upgrade")
        self.assertEqual((code, err), (0, ""), out)
        newPid = int(out.split("PID ")[1].split(")")[0])
        self.addCleanup(endProcess, newPid)
        return newPid

    async def test_socketPathSurvivesTheOldProcess(self):
        await self.startUnix()
        await self.upgrade()
        await waitUntil(lambda: not self.child.running(), reactor, timeout=30)
        self.assertTrue(
            os.path.exists(self.sock),
            "the old process unlinked the listener's socket path as it exited",
        )
        answer = await deferToThread(unixGet, self.sock)
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:80])

    async def test_socketModeKept(self):
        """
        The new process adopts the socket with Twisted's default mode (it
        chmods the path to 0666): a C{mode=600} socket (say, a manager
        without a token, which trusts every Unix-socket client) is open to
        every local user.  The modes are sampled while the upgrade runs
        (the old process unlinks the path as it stops: see above).
        """
        from twisted.internet.task import LoopingCall

        await self.startUnix()
        self.assertEqual(stat.S_IMODE(os.stat(self.sock).st_mode), 0o600)
        modes = set()

        def sample():
            try:
                modes.add(stat.S_IMODE(os.stat(self.sock).st_mode))
            except OSError:
                pass

        sampler = LoopingCall(sample)
        sampler.start(0.0005)
        try:
            await self.upgrade()
            await waitUntil(lambda: not self.child.running(), reactor, timeout=30)
        finally:
            sampler.stop()
        self.assertEqual(
            sorted(oct(m) for m in modes),
            [oct(0o600)],
            "the new process made the socket world-writable (mode=600 in the endpoint)",
        )


class DaemonUpgradeTests(_CLI, TwistdTestCase):
    """
    C{twistd} without C{-n}: the new process of an upgrade daemonizes too,
    and tells the old one its own PID, after it daemonized.
    """

    timeout = 120

    async def test_upgradeReportsTheServingPid(self):
        member = MemberServer("app1", reactor).start()
        self.addCleanup(member.stop)
        front, manager = freePorts(2)
        self.manager = f"http://127.0.0.1:{manager}"
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        config = os.path.join(directory, "pb.toml")
        pidfile = os.path.join(directory, "pb.pid")
        logfile = os.path.join(directory, "pb.log")
        with open(config, "w") as f:
            f.write(
                f"""
[[listen]]
endpoint = "tcp:{front}:interface=127.0.0.1"
balancer = "web"

[balancer.web]
[[balancer.web.member]]
name = "app1"
url = "{member.url}"

[manager]
endpoint = "tcp:{manager}:interface=127.0.0.1"
"""
            )
        from twisted.internet.utils import getProcessValue

        code = await getProcessValue(
            sys.executable,
            ["-c", TWISTD, f"--pidfile={pidfile}", f"--logfile={logfile}", "playbalancer",
             "--config", config],
            env=dict(os.environ),
            path=directory,
        )
        self.assertEqual(code, 0)
        await waitUntil(lambda: _pid(pidfile) is not None, reactor, timeout=20)
        old = _pid(pidfile)
        self.addCleanup(endProcess, old)
        code, out, err = await self.command("upgrade")
        self.assertEqual((code, err), (0, ""), out)
        await waitUntil(lambda: not alive(old), reactor, timeout=30)
        await waitUntil(lambda: _pid(pidfile) not in (None, old), reactor, timeout=20)
        serving = _pid(pidfile)
        self.addCleanup(endProcess, serving)
        reported = int(out.split("PID ")[1].split(")")[0])
        self.assertEqual(
            reported,
            serving,
            f"`playbalancer upgrade` named PID {reported} (alive: {alive(reported)}); "
            f"the new balancer is PID {serving}",
        )


def _pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


class WorkersReloadThatNeverServesTests(_CLI, TwistdTestCase):
    """
    With C{workers = N}, a reload whose new workers could not start on the
    new config is refused at once, with why; the old workers serve on and
    still get the state (a drain reaches them).
    """

    timeout = 120

    async def test_reloadIsRefusedOrAnswered(self):
        await self.startTwoMembers(workers=2)
        with open(self.configPath) as f:
            text = f.read()
        bad = os.path.join(os.path.abspath(self.mktemp()), "missing", "access.log")
        with open(self.configPath, "w") as f:
            f.write(text.replace('balancer = "web"', f'balancer = "web"\naccess_log = "{bad}"', 1))
        os.kill(self.child.pid, signal.SIGHUP)
        try:
            await waitUntil(
                lambda: "configuration reloaded" in self.twistdLog()
                or "refused" in self.twistdLog(),
                reactor,
                timeout=20,
            )
        except AssertionError:
            self.fail("the reload was neither applied nor refused within 20 s")

    async def test_drainReachesTheWorkersThatServe(self):
        """
        After a refused reload the workers that serve still get the state:
        a drain reaches them.
        """
        await self.startTwoMembers(workers=2)
        with open(self.configPath) as f:
            text = f.read()
        bad = os.path.join(os.path.abspath(self.mktemp()), "missing", "access.log")
        with open(self.configPath, "w") as f:
            f.write(text.replace('balancer = "web"', f'balancer = "web"\naccess_log = "{bad}"', 1))
        code, out, err = await self.command("reload")
        self.assertEqual(code, 1)
        self.assertIn("listen[0].access_log: cannot open", err)
        await self.change("app2", {"admin": "drain"})

        async def applied():
            status = await self.status()
            return not status["balancers"]["web"]["members"]["app2"]["tier"]["behind"]

        for _ in range(200):
            if await applied():
                break
        served = []
        for _ in range(10):
            response = await self.get("/")
            served.append(response.headers.getRawHeaders(b"x-served-by", [b"-"])[0].decode())
        self.assertNotIn("app2", served, "a drained member still gets new requests")


class TCPModeUpgradeTests(_CLI, TwistdTestCase):
    """
    A C{mode = "tcp"} listener's open connections survive an upgrade: the
    old process lets them finish (within C{shutdown_grace}) before it exits.
    """

    timeout = 120

    async def test_tcpTunnelSurvivesTheUpgrade(self):
        from twisted.internet import defer
        from twisted.internet.protocol import Factory, Protocol

        class Echo(Protocol):
            def dataReceived(self, data):
                self.transport.write(data)

        member = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
        self.addCleanup(member.stopListening)
        front, manager = freePorts(2)
        self.manager = f"http://127.0.0.1:{manager}"
        self.startTwistd(
            f"""
shutdown_grace = 30

[[listen]]
endpoint = "tcp:{front}:interface=127.0.0.1"
mode = "tcp"
balancer = "db"

[balancer.db]
[[balancer.db.member]]
name = "db1"
url = "tcp://127.0.0.1:{member.getHost().port}"

[manager]
endpoint = "tcp:{manager}:interface=127.0.0.1"
"""
        )

        class Client(Protocol):
            def __init__(self):
                self.received = b""
                self.lost = defer.Deferred()

            def dataReceived(self, data):
                self.received += data

            def connectionLost(self, reason):
                self.lost.callback(None)

        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        client = None
        for _ in range(100):
            try:
                client = Client()
                await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", front), client)
                break
            except Exception:
                from twisted.internet.task import deferLater

                await deferLater(reactor, 0.1, lambda: None)
        self.addCleanup(lambda: client.transport.abortConnection())
        client.transport.write(b"one")
        await waitUntil(lambda: client.received == b"one", reactor, timeout=10)
        code, out, err = await self.command("upgrade")
        self.assertEqual((code, err), (0, ""), out)
        newPid = int(out.split("PID ")[1].split(")")[0])
        self.addCleanup(endProcess, newPid)
        # The old process has stopped accepting: it is draining.
        await waitUntil(
            lambda: f"listener tcp:{front} stopping" in self.twistdLog(), reactor, timeout=30
        )
        self.assertFalse(
            client.lost.called, "the open TCP-mode connection was cut by the upgrade at once"
        )
        self.assertTrue(self.child.running())
        client.transport.write(b"two")
        await waitUntil(lambda: client.received == b"onetwo", reactor, timeout=10)
        client.transport.loseConnection()
        await client.lost
        # Its last connection closed, the old process exits.
        await waitUntil(lambda: not self.child.running(), reactor, timeout=30)


class ManagerSocketsCloseTests(TwistdTestCase):
    """
    Reloads of a C{workers = N} balancer with a manager route close the
    parent's Unix sockets of the old routes (stopped before their directory
    is removed).
    """

    timeout = 120

    def parentSockets(self):
        count = 0
        for name in os.listdir(f"/proc/{self.child.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{self.child.pid}/fd/{name}")
            except OSError:
                continue
            if target.startswith("socket:"):
                count += 1
        return count

    async def test_reloadsDoNotLeakSockets(self):
        await self.startTwoMembers(workers=2, routes='manager_path = "/balancer-manager"')
        before = self.parentSockets()
        for version in (2, 3, 4):
            os.kill(self.child.pid, signal.SIGHUP)
            await waitUntil(
                lambda: f"(version {version})" in self.twistdLog(), reactor, timeout=30
            )
            # The old generation has left and its manager sockets are closed.
            await waitUntil(lambda: len(childrenOf(self.child.pid)) == 2, reactor, timeout=30)
        from twisted.internet.task import deferLater

        await deferLater(reactor, 1.0, lambda: None)
        # (Each reload leaves one more socket: the stopped Unix port raised
        # FileNotFoundError in connectionLost before closing it.)
        self.assertEqual(self.parentSockets(), before)


class ChangeDuringUpgradeTests(_CLI, TwistdTestCase):
    """
    While an upgrade starts, the old process refuses admin changes (503,
    C{Retry-After}): one it took would not reach the new process.  Tried
    again, the change is made by the new process and kept.
    """

    timeout = 120

    async def test_drainDuringTheUpgradeIsKept(self):
        await self.startTwoMembers(workers=1)
        os.kill(self.child.pid, signal.SIGUSR2)
        # At once: the new process is still starting its interpreter.  The
        # old one refuses changes meanwhile (503, Retry-After), so the
        # operator tries again until one is taken: by the new process.
        await waitUntil(lambda: "upgrade by SIGUSR2" in self.twistdLog(), reactor, timeout=30)
        refused = 0
        while True:
            response = await self.client.post(
                f"{self.manager}/api/balancers/web/members/app2",
                data=json.dumps({"admin": "drain"}).encode(),
                headers={b"Content-Type": [b"application/json"]},
            )
            await treq.content(response)
            if response.code == 200:
                break
            self.assertEqual(response.code, 503)
            self.assertEqual(response.headers.getRawHeaders(b"retry-after"), [b"1"])
            refused += 1
            await deferLater(reactor, 0.05, lambda: None)
        self.assertGreater(refused, 0)
        await waitUntil(lambda: "the new process (PID " in self.twistdLog(), reactor, timeout=30)
        newPid = int(self.twistdLog().split("the new process (PID ")[1].split(")")[0])
        self.addCleanup(endProcess, newPid)
        await waitUntil(lambda: not self.child.running(), reactor, timeout=30)
        status = await self.status()
        self.assertEqual(
            status["balancers"]["web"]["members"]["app2"]["admin"],
            "drain",
            "a drain answered 200 during the upgrade was lost",
        )


class WorkersReloadCountersTests(_CLI, TwistdTestCase):
    """
    Counters are monotonic (Prometheus C{_total}): with C{workers = N} the
    listeners' counters go on across a reload (a new generation of workers).
    """

    timeout = 120

    async def test_acceptedKeepsCounting(self):
        await self.startTwoMembers(workers=2)
        listener = "tcp:" + self.base.rsplit(":", 1)[1]
        name = "playbalancer_listener_accepted_connections_total"
        for _ in range(20):
            await self.get("/")

        async def accepted():
            return await self.metric(name, listener=listener) or 0

        before = 0
        for _ in range(100):
            before = await accepted()
            if before >= 20:
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertGreaterEqual(before, 20)
        code, out, err = await self.command("reload")
        self.assertEqual((code, err), (0, ""), out)
        await self.waitFor(lambda: len(childrenOf(self.child.pid)) == 2)
        after = await accepted()
        self.assertGreaterEqual(after, before, "a counter went backwards on a reload")
