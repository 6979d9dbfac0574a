"""
Reloading the config of a running balancer (L{playbalancer.reload}): the
difference applied in place, over real sockets, with requests in flight.
"""

from __future__ import annotations

import io
import os
import signal
import socket

import treq

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.config import ConfigError, parseConfig
from playbalancer.configdiff import diffConfigs
from playbalancer.testing.client import rawExchange
from playbalancer.testing import waitUntil
from playbalancer.testing.members import MemberServer
from playbalancer.testing.twistd import TwistdTestCase
from tests.routeharness import RoutedTestCase, servedBy

FRONT = "tcp:0:interface=127.0.0.1"
SECOND = "tcp:0:interface=127.0.0.1:backlog=64"


def configText(members, listeners=(FRONT,), extra="", balancer="web"):
    """
    A config: each listener sends everything to C{balancer}; C{members}
    are C{(name, url)} or C{(name, url, settings)}.
    """
    lines = []
    for endpoint in listeners:
        lines += ["[[listen]]", f'endpoint = "{endpoint}"', f'balancer = "{balancer}"', ""]
    lines += [f"[balancer.{balancer}]", extra]
    for member in members:
        name, url = member[:2]
        lines += [f"[[balancer.{balancer}.member]]", f'name = "{name}"', f'url = "{url}"']
        if len(member) > 2:
            lines.append(member[2])
    return "\n".join(lines) + "\n"


class DiffTests(SynchronousTestCase):
    """
    What a reload would change (L{diffConfigs}), without a balancer.
    """

    def diff(self, old, new):
        return diffConfigs(parseConfig(_toml(old)), parseConfig(_toml(new)))

    def test_membersAddedRemovedChanged(self):
        old = configText([("a", "http://127.0.0.1:1"), ("b", "http://127.0.0.1:2")])
        new = configText(
            [("a", "http://127.0.0.1:1", "weight = 3"), ("c", "http://127.0.0.1:3")]
        )
        diff = self.diff(old, new)
        [change] = diff.balancers
        self.assertEqual((change.added, change.removed), (["c"], ["b"]))
        [member] = change.changed
        self.assertEqual((member.name, member.changed, member.replaced), ("a", ("weight",), False))
        self.assertIn("balancer web: +c -b ~a(weight)", diff.summary())

    def test_urlChangeIsANewMember(self):
        diff = self.diff(
            configText([("a", "http://127.0.0.1:1")]), configText([("a", "http://127.0.0.1:9")])
        )
        self.assertTrue(diff.balancers[0].changed[0].replaced)

    def test_poolSettingsNeedNewPools(self):
        old = configText([("a", "http://127.0.0.1:1")])
        diff = self.diff(old, configText([("a", "http://127.0.0.1:1")], extra="keepalive = 8"))
        self.assertEqual(diff.balancers[0].settings, ("keepalive",))
        self.assertTrue(diff.balancers[0].newPools)
        diff = self.diff(old, configText([("a", "http://127.0.0.1:1")], extra="retry = 5"))
        self.assertFalse(diff.balancers[0].newPools)

    def test_listeners(self):
        old = configText([("a", "http://127.0.0.1:1")])
        new = configText([("a", "http://127.0.0.1:1")], listeners=(FRONT, SECOND))
        diff = self.diff(old, new)
        self.assertEqual([l.endpoint for l in diff.listenersAdded], [SECOND])
        self.assertEqual(diff.listenersRemoved, [])
        diff = self.diff(new, old)
        self.assertEqual([l.endpoint for l in diff.listenersRemoved], [SECOND])

    def test_noChanges(self):
        text = configText([("a", "http://127.0.0.1:1")])
        self.assertEqual(self.diff(text, text).summary(), "no changes")

    def test_whatNeedsARestart(self):
        """
        Changes a reload cannot make are refused, naming the key.
        """
        base = configText([("a", "http://127.0.0.1:1")])
        cases = [
            ("workers = 2\n" + base, "workers"),
            (base.replace(FRONT, "tcp:0:interface=127.0.0.2"), "listen[0].endpoint"),
            (base + "[manager]\n", "manager"),
            (
                base.replace('balancer = "web"\n', 'balancer = "web"\nprotocols = ["http/1.1", "h2c"]\n', 1),
                "listen[0].protocols",
            ),
        ]
        for text, key in cases:
            with self.assertRaises(ConfigError) as caught:
                self.diff(base, text)
            self.assertEqual(caught.exception.path, key)


def _toml(text):
    from playbalancer.config import tomllib

    return tomllib.loads(text)


class ConfigServiceCase(RoutedTestCase):
    """
    A balancer started by C{makeService} from a config file a test can
    rewrite and reload.
    """

    async def startWith(self, text):
        self.configPath = self.mktemp()
        self.write(text)
        from playbalancer.tap import Options, makeService

        options = Options()
        options.parseOptions(["--config", self.configPath])
        service = makeService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        self.service = service
        port = await service.runtime.served[FRONT].service._waitingForPort
        self.port = port.getHost().port
        self.base = f"http://127.0.0.1:{self.port}"
        return service

    def write(self, text):
        with open(self.configPath, "w") as f:
            f.write(text)

    def reload(self, text):
        self.write(text)
        return self.successResultOf(self.service.reloader.reload("test"))

    async def portOf(self, endpoint):
        port = await self.service.runtime.served[endpoint].service._waitingForPort
        return port.getHost().port


class ReloadTests(ConfigServiceCase):
    """
    Reloads of a balancer started by C{makeService}, on real sockets.
    """

    async def test_addsAndRemovesUnderRequests(self):
        """
        A reload adds a listener and a member and removes another member
        while a request to it is in flight and a keep-alive connection is
        open: the request finishes, the connection stays and takes the new
        routes, the removed member gets nothing new, the new listener
        serves.
        """
        old, new = self.startMembers("old", "new")
        await self.startWith(configText([("old", old.url)]))
        keptAlive = self.client(persistent=True)
        response = await keptAlive.get(self.base + "/")
        await treq.content(response)
        self.assertEqual(servedBy(response), "old")

        arrived = old.hold.arrival()
        inFlight = self.client(persistent=False).get(self.base + "/hold")
        await arrived
        result = self.reload(configText([("new", new.url)], listeners=(FRONT, SECOND)))
        self.assertTrue(result.ok, result.error)
        self.assertEqual(result.version, 2)
        self.assertIn("+new -old", result.changes)
        self.assertIn(SECOND, result.changes)

        seenByOld = len(old.seen)
        for client in (keptAlive, self.client(persistent=False)):
            response = await client.get(self.base + "/")
            await treq.content(response)
            self.assertEqual((response.code, servedBy(response)), (200, "new"))
        second = await self.portOf(SECOND)
        response = await self.client(persistent=False).get(f"http://127.0.0.1:{second}/")
        await treq.content(response)
        self.assertEqual((response.code, servedBy(response)), (200, "new"))
        self.assertEqual(len(old.seen), seenByOld)

        old.hold.release(b"finished\n")
        response = await inFlight
        self.assertEqual((response.code, await treq.content(response)), (200, b"finished\n"))
        balancer = self.service.balancers["web"]
        self.assertEqual([m.name for m in balancer.members], ["new"])
        self.assertNotIn(("http", "127.0.0.1", old.port), self.service.runtime.pools["web"]._pools)

    async def test_badConfigChangesNothing(self):
        """
        A config that does not check out is refused with the key named,
        and the balancer goes on as before.
        """
        first, second = self.startMembers("first", "second")
        await self.startWith(configText([("first", first.url)]))
        result = self.reload(configText([("second", second.url, "weight = -1")]))
        self.assertFalse(result.ok)
        self.assertIn("balancer.web.member[0].weight", result.error)
        self.assertEqual(result.version, 1)
        self.write("not [toml")
        result = self.successResultOf(self.service.reloader.reload("test"))
        self.assertIn("not valid TOML", result.error)
        response, _ = await self.get("/")
        self.assertEqual(servedBy(response), "first")
        self.assertEqual([m.name for m in self.service.balancers["web"].members], ["first"])

    async def test_listenerThatCannotBindChangesNothing(self):
        """
        A new listener whose port is taken refuses the whole reload: the
        member changes in the same file are not made either.
        """
        first, second = self.startMembers("first", "second")
        await self.startWith(configText([("first", first.url)]))
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        busy = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
        result = self.reload(configText([("second", second.url)], listeners=(FRONT, busy)))
        self.assertFalse(result.ok)
        self.assertIn("listen[1].endpoint", result.error)
        response, _ = await self.get("/")
        self.assertEqual(servedBy(response), "first")
        self.assertEqual(sorted(self.service.runtime.served), [FRONT])

    async def test_refusedReloadClosesTheLogsItOpened(self):
        """
        A reload refused after it opened a new access log (a later listener
        cannot listen) closes that log again.
        """
        a = self.startMembers("a")[0]
        await self.startWith(configText([("a", a.url)]))
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        log = os.path.abspath(self.mktemp())
        text = configText(
            [("a", a.url)], listeners=(FRONT, f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1")
        ).replace('balancer = "web"', f'balancer = "web"\naccess_log = "{log}"', 1)
        result = self.reload(text)
        self.assertFalse(result.ok)
        self.assertNotIn(log, self.service.runtime._accessLogs)
        self.assertEqual(
            [s for s in self.service if getattr(getattr(s, "log", None), "path", None) == log], []
        )

    async def test_accessLogThatCannotBeOpened(self):
        """
        An access log that cannot be opened refuses the reload, naming the
        key; the member change in the same file is not made.
        """
        first, second = self.startMembers("first", "second")
        await self.startWith(configText([("first", first.url)]))
        text = configText([("second", second.url)]).replace(
            'balancer = "web"', 'balancer = "web"\naccess_log = "/nonexistent/dir/a.log"', 1
        )
        result = self.reload(text)
        self.assertFalse(result.ok)
        self.assertEqual(
            result.error,
            "listen[0].access_log: cannot open /nonexistent/dir/a.log: No such file or directory",
        )
        self.assertEqual([m.name for m in self.service.balancers["web"].members], ["first"])

    async def test_runTimeStateKeptUnlessTheFileChangesIt(self):
        """
        A member drained at run time stays drained; a weight set at run time
        stays unless the file changes the weight; a member whose URL changes
        is a new one, enabled.
        """
        a, b, c = self.startMembers("a", "b", "c")
        await self.startWith(configText([("a", a.url), ("b", b.url), ("c", c.url)]))
        balancer = self.service.balancers["web"]
        balancer.setAdmin(balancer.member("a"), "drain", who="manager")
        balancer.setWeight(balancer.member("b"), 5, who="manager")
        balancer.setWeight(balancer.member("c"), 7, who="manager")
        d = self.startMembers("d")[0]
        result = self.reload(
            configText([("a", a.url), ("b", b.url), ("c", d.url, "weight = 2")])
        )
        self.assertTrue(result.ok, result.error)
        self.assertEqual(balancer.member("a").admin, "drain")
        self.assertEqual(balancer.member("b").weight, 5)
        self.assertEqual(
            (balancer.member("c").url, balancer.member("c").weight, balancer.member("c").admin),
            (d.url, 2, "enabled"),
        )
        result = self.reload(
            configText([("a", a.url), ("b", b.url, "weight = 3"), ("c", d.url, "weight = 2")])
        )
        self.assertEqual(balancer.member("b").weight, 3)

    async def test_memberAddedBackWhileItsLastRequestsFinish(self):
        """
        A member removed by one reload while a request to it is in flight,
        and added back by the next before that request ends, is a member
        again for good (not dropped once the old request ends).
        """
        a, b = self.startMembers("a", "b")
        await self.startWith(configText([("a", a.url), ("b", b.url)]))
        balancer = self.service.balancers["web"]
        balancer.setAdmin(balancer.member("b"), "disabled")
        arrived = a.hold.arrival()
        held = self.client(persistent=False).get(self.base + "/hold")
        await arrived
        self.assertTrue(self.reload(configText([("b", b.url)])).ok)
        self.assertTrue(self.reload(configText([("a", a.url, "weight = 4"), ("b", b.url)])).ok)
        a.hold.release()
        await treq.content(await held)
        await waitUntil(lambda: balancer.member("a") is not None and not balancer.member("a").active, reactor)
        member = balancer.member("a")
        self.assertEqual((member.removing, member.admin, member.weight), (False, "enabled", 4))
        self.assertEqual([m.name for m in balancer.members], ["a", "b"])

    async def test_schedulerAndSettingsSwapped(self):
        """
        A changed scheduler takes the next requests; the listener's limits
        change for new connections.
        """
        a, b = self.startMembers("a", "b")
        await self.startWith(configText([("a", a.url), ("b", b.url, "standby = true")]))
        result = self.reload(
            configText([("a", a.url), ("b", b.url)], extra='scheduler = "least-conn"')
        )
        self.assertTrue(result.ok, result.error)
        balancer = self.service.balancers["web"]
        self.assertEqual(balancer.schedulerName, "least-conn")
        self.assertFalse(balancer.member("b").standby)
        text = configText([("a", a.url), ("b", b.url)], extra='scheduler = "least-conn"')
        text = text.replace('balancer = "web"', 'balancer = "web"\nmax_request_line = 256', 1)
        result = self.reload(text)
        self.assertTrue(result.ok, result.error)
        answer = await rawExchange(
            reactor, self.port, b"GET /" + b"x" * 400 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 414"), answer[:40])

    async def test_balancerAddedAndRemoved(self):
        """
        A listener moved to a new balancer serves from it; the old balancer
        is gone from the balancer (and so from the manager).
        """
        a, b = self.startMembers("a", "b")
        await self.startWith(configText([("a", a.url)]))
        result = self.reload(configText([("b", b.url)], balancer="api"))
        self.assertTrue(result.ok, result.error)
        self.assertEqual(sorted(self.service.balancers), ["api"])
        response, _ = await self.get("/")
        self.assertEqual(servedBy(response), "b")

    async def test_listenerRemoved(self):
        """
        A removed listener stops accepting; the others go on.
        """
        a = self.startMembers("a")[0]
        await self.startWith(configText([("a", a.url)], listeners=(FRONT, SECOND)))
        second = await self.portOf(SECOND)
        served = self.service.runtime.served[SECOND]
        self.assertTrue(self.reload(configText([("a", a.url)])).ok)
        await served.stopped
        probe = socket.socket()
        self.addCleanup(probe.close)
        with self.assertRaises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", second))
        response, _ = await self.get("/")
        self.assertEqual(response.code, 200)


class TwistdReloadTests(TwistdTestCase):
    """
    C{kill -HUP} and C{playbalancer reload} on a real C{twistd playbalancer}.
    """

    async def reloadCommand(self):
        from playbalancer.ctl.cli import run

        out, err = io.StringIO(), io.StringIO()
        code = await run(reactor, ["--manager", self.manager, "reload"], out, err, environ={})
        return code, out.getvalue(), err.getvalue()

    async def test_hangUpReloads(self):
        """
        C{SIGHUP} reloads the file (a third member appears and serves) and
        the balancer goes on running; before, it ended the process.
        """
        await self.startTwoMembers(workers=1)
        third = MemberServer("app3", reactor).start()
        self.addCleanup(third.stop)
        with open(self.configPath) as f:
            text = f.read()
        with open(self.configPath, "w") as f:
            f.write(text.replace("[manager]", f'[[balancer.web.member]]\nname = "app3"\nurl = "{third.url}"\n\n[manager]'))
        os.kill(self.child.pid, signal.SIGHUP)
        await self.waitFor(lambda: "configuration reloaded by SIGHUP (version 2)" in self.twistdLog())
        self.assertIn("balancer web: +app3", self.twistdLog())
        served = set()
        for _ in range(6):
            response = await self.get("/")
            served.add(response.headers.getRawHeaders(b"x-served-by")[0].decode())
        self.assertEqual(served, {"app1", "app2", "app3"})
        self.assertTrue(self.child.running())

    async def test_reloadCommand(self):
        """
        C{playbalancer reload} says what changed; with a config that does
        not check out it prints why, exits 1, and the balancer serves on
        unchanged.
        """
        await self.startTwoMembers(workers=1)
        with open(self.configPath) as f:
            text = f.read()
        with open(self.configPath, "w") as f:
            f.write(text.replace('scheduler = "round-robin"', 'scheduler = "least-conn"'))
        code, out, err = await self.reloadCommand()
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out, "reloaded: version 2: balancer web: scheduler\n")
        with open(self.configPath, "w") as f:
            f.write(text.replace('scheduler = "round-robin"', 'scheduler = "no-such"'))
        code, out, err = await self.reloadCommand()
        self.assertEqual(code, 1)
        self.assertIn("balancer.web.scheduler", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIn("reload by ", self.twistdLog())
        self.assertEqual((await self.get("/")).code, 200)
        status = await self.status()
        self.assertEqual(status["balancers"]["web"]["scheduler"], "least-conn")


class ShutdownGraceTests(ConfigServiceCase):
    """
    C{shutdown_grace}: how long a stop lets requests in flight finish.
    """

    def test_checked(self):
        text = "shutdown_grace = -1\n" + configText([("a", "http://127.0.0.1:1")])
        with self.assertRaises(ConfigError) as caught:
            parseConfig(_toml(text))
        self.assertEqual(caught.exception.path, "shutdown_grace")
        self.assertEqual(parseConfig(_toml(text.replace("-1", "2.5"))).shutdownGrace, 2.5)

    async def test_reloadChangesIt(self):
        a = self.startMembers("a")[0]
        await self.startWith(configText([("a", a.url)]))
        self.assertEqual(self.service.runtime.served[FRONT].service.grace, 10.0)
        self.assertTrue(self.reload("shutdown_grace = 3\n" + configText([("a", a.url)])).ok)
        self.assertEqual(self.service.runtime.served[FRONT].service.grace, 3.0)

    async def stopWithHeldRequest(self, grace):
        a = self.startMembers("a")[0]
        await self.startWith(f"shutdown_grace = {grace}\n" + configText([("a", a.url)]))
        arrived = a.hold.arrival()
        inFlight = self.client(persistent=False).get(self.base + "/hold")
        await arrived
        stopped = self.service.stopService()
        return a, inFlight, stopped

    async def test_requestsFinishWithinTheGrace(self):
        a, inFlight, stopped = await self.stopWithHeldRequest(60)
        self.assertFalse(stopped.called)
        a.hold.release(b"done\n")
        response = await inFlight
        self.assertEqual(await treq.content(response), b"done\n")
        await stopped

    async def test_noGraceCutsThem(self):
        a, inFlight, stopped = await self.stopWithHeldRequest(0)
        self.assertEqual(self.service.runtime.served[FRONT].service.grace, 0)
        await stopped
        with self.assertRaises(Exception):
            await inFlight


class RunTimeChangesTests(ConfigServiceCase):
    """
    What a reload does to members added and removed at run time, and to
    the manager's access settings.
    """

    async def test_addedAndRemovedAtRunTimeStay(self):
        from playbalancer.balancer import Member

        a, b, c = self.startMembers("a", "b", "c")
        await self.startWith(configText([("a", a.url), ("b", b.url)]))
        balancer = self.service.balancers["web"]
        balancer.addMember(Member("c", c.url), who="manager")
        balancer.removeMember(balancer.member("b"), who="manager")
        result = self.reload(configText([("a", a.url, "weight = 2"), ("b", b.url)]))
        self.assertTrue(result.ok, result.error)
        self.assertEqual([m.name for m in balancer.members], ["a", "c"])
        self.assertEqual(balancer.member("a").weight, 2)
        result = self.reload(configText([("a", a.url, "weight = 2"), ("b", b.url, "weight = 3")]))
        self.assertEqual([m.name for m in balancer.members], ["a", "b", "c"])

    async def test_managerAccessReloaded(self):
        """
        The manager's token file is read again and its allow list taken
        from the file: requests are let in, or not, by the new ones.
        """
        a = self.startMembers("a")[0]
        token = self.mktemp()
        with open(token, "w") as f:
            f.write("first-token\n")
        os.chmod(token, 0o600)
        manager = f'[manager]\nendpoint = "tcp:0:interface=127.0.0.1"\ntoken_file = "{token}"\n'
        await self.startWith(configText([("a", a.url)]) + manager)
        port = (await self.service.runtime.others["tcp:0:interface=127.0.0.1"]._waitingForPort)
        url = f"http://127.0.0.1:{port.getHost().port}/api/status"

        async def status(secret):
            response = await self.client(persistent=False).get(
                url, headers={b"Authorization": [b"Bearer " + secret]}
            )
            await treq.content(response)
            return response.code

        self.assertEqual(await status(b"first-token"), 200)
        with open(token, "w") as f:
            f.write("second-token\n")
        self.assertTrue(self.reload(configText([("a", a.url)]) + manager).ok)
        self.assertEqual(await status(b"first-token"), 401)
        self.assertEqual(await status(b"second-token"), 200)
        closed = manager + 'allow = ["10.9.9.9/32"]\n'
        self.assertTrue(self.reload(configText([("a", a.url)]) + closed).ok)
        self.assertEqual(await status(b"second-token"), 403)


class StartErrorsTests(ConfigServiceCase):
    async def test_accessLogThatCannotBeOpened(self):
        """
        At start-up too, an access log that cannot be opened is one line
        naming the key.
        """
        text = configText([("a", "http://127.0.0.1:1")]).replace(
            'balancer = "web"', 'balancer = "web"\naccess_log = "/nonexistent/dir/a.log"', 1
        )
        with self.assertRaises(SystemExit) as caught:
            await self.startWith(text)
        self.assertEqual(
            str(caught.exception),
            "playbalancer: listen[0].access_log: cannot open /nonexistent/dir/a.log: "
            "No such file or directory",
        )


class SignalsWhileStoppingTests(SynchronousTestCase):
    def test_strayHangUpIgnoredOnceStopped(self):
        """
        Once stopped (an upgrade's old process drains), SIGHUP and SIGUSR2
        no longer end the process as their default would.
        """
        from twisted.internet.task import Clock

        from playbalancer.lifecycle import OnSignal

        previous = signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        self.addCleanup(signal.signal, signal.SIGUSR2, previous)
        service = OnSignal(signal.SIGUSR2, lambda name: None, Clock())
        service.startService()
        service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGUSR2), signal.SIG_IGN)
