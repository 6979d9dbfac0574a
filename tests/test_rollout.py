"""
A rolling restart the manager runs itself, started from its page or API
(C{POST api/rolling/BALANCER}) with the command of the balancer's
C{[balancer.NAME.rolling_restart]} table: the table, the API over real
sockets, and a balancer started from a config file.
"""

from __future__ import annotations

import json
import os
import re
from html import unescape
from urllib.parse import urlencode

import treq
from twisted.internet import defer, reactor, task
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.config import ConfigError, parseConfig
from playbalancer.config.rolling import DEFAULT_TIMEOUT, RollingRestartConfig
from playbalancer.manager.rollout import LogLines, Rollouts
from playbalancer.testing import waitUntil
from playbalancer.testing.twistd import TwistdTestCase

from tests.test_reload import ConfigServiceCase, configText
from tests.test_rolling_cli import _RollingCase

SCHEDULERS = {"round-robin": object(), "standby": object()}
HEALTH = {"path": "/health", "interval": 0.05, "rise": 1}


async def until(condition, timeout=20.0):
    """
    Poll the async C{condition()} until it is true; fail after
    C{timeout} seconds.
    """
    deadline = reactor.seconds() + timeout
    while not await condition():
        if reactor.seconds() > deadline:
            raise AssertionError("condition not met in time")
        await task.deferLater(reactor, 0.05, lambda: None)


def _config(rolling, health=HEALTH):
    balancer = {
        "rolling_restart": rolling,
        "member": [
            {"name": "app1", "url": "http://127.0.0.1:9999"},
            {"name": "app2", "url": "http://127.0.0.1:9998"},
        ],
    }
    if health is not None:
        balancer["health"] = health
    return {"listen": [{"endpoint": "tcp:8080", "balancer": "web"}], "balancer": {"web": balancer}}


class RollingRestartConfigTests(SynchronousTestCase):
    def assertRefused(self, raw, key, words):
        with self.assertRaises(ConfigError) as caught:
            parseConfig(raw, SCHEDULERS)
        self.assertEqual(caught.exception.path, key)
        self.assertIn(words, caught.exception.message)

    def test_table(self):
        config = parseConfig(_config({"command": "systemctl restart app@$PLAYBALANCER_MEMBER"}), SCHEDULERS)
        self.assertEqual(
            config.balancers["web"].rollingRestart,
            RollingRestartConfig(command="systemctl restart app@$PLAYBALANCER_MEMBER", timeout=DEFAULT_TIMEOUT),
        )
        config = parseConfig(_config({"command": "true", "timeout": 30}), SCHEDULERS)
        self.assertEqual(config.balancers["web"].rollingRestart.timeout, 30)

    def test_noTableNoCommand(self):
        raw = _config({"command": "true"})
        del raw["balancer"]["web"]["rolling_restart"]
        self.assertIsNone(parseConfig(raw, SCHEDULERS).balancers["web"].rollingRestart)

    def test_refused(self):
        self.assertRefused(_config({}), "balancer.web.rolling_restart.command", "missing")
        self.assertRefused(_config({"command": "  "}), "balancer.web.rolling_restart.command", "empty")
        self.assertRefused(_config({"command": 3}), "balancer.web.rolling_restart.command", "expected")
        self.assertRefused(_config({"command": "true", "timeout": -1}), "balancer.web.rolling_restart.timeout", "")
        self.assertRefused(_config({"command": "true", "exec": "x"}), "balancer.web.rolling_restart.exec", "")
        self.assertRefused(
            _config({"command": "true"}, health=None), "balancer.web.rolling_restart", "needs health checks"
        )


class LogLinesTests(SynchronousTestCase):
    def test_linesLogged(self):
        """
        Whole lines go to the log, each naming the balancer; a last line
        without its newline goes at the end.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        out = LogLines("web")
        out.write("one\ntw")
        out.write("o\n\nthree")
        self.assertFalse(out.isatty())
        out.flush()
        lines = [e["line"] for e in events if e.get("balancer") == "web"]
        self.assertEqual(lines, ["one", "two", "three"])


class _RunCase(_RollingCase):
    """
    A balancer with health checks and a manager that runs rolling
    restarts.
    """

    def setUpRuns(self, command, names=("app1", "app2")):
        balancer = self.setUpCluster(names=names)
        balancer.rollingRestart = RollingRestartConfig(command=command, timeout=20)
        self.manager.rollouts = Rollouts(self.manager, reactor)
        return balancer

    async def rolling(self):
        code, answer, _ = await self.call("GET", "api/rolling")
        self.assertEqual(code, 200)
        return answer["balancers"]["test"]

    async def waitEnded(self):
        await waitUntil(lambda: not self.manager.rollouts.running, reactor, timeout=30)
        return (await self.rolling())["run"]


class ManagerRunTests(_RunCase):
    """
    Rolling restarts started with C{POST api/rolling/test}, over real
    sockets.
    """

    async def test_startedFromTheAPI(self):
        """
        The configured command runs for each member in turn, with the
        member in its environment; the run is shown done, every member
        is enabled again, and the changes say who started the run.
        """
        done = os.path.abspath(self.mktemp())
        balancer = self.setUpRuns(f'echo "$PLAYBALANCER_MEMBER $PLAYBALANCER_URL" >> "{done}"')
        await waitUntil(lambda: all(m.checkPasses >= 2 for m in balancer.members), reactor)
        self.assertEqual((await self.rolling()), {"configured": True, "run": None})
        code, run, _ = await self.call("POST", "api/rolling/test", {})
        self.assertEqual(code, 202, run)
        self.assertEqual(
            (run["state"], run["origin"], run["who"], run["total"]), ("running", "page", "127.0.0.1", 2)
        )
        run = await self.waitEnded()
        self.assertEqual((run["state"], run["done"], run["reason"]), ("done", 2, None), run)
        self.assertEqual([m["step"] for m in run["members"]], ["enabled", "enabled"])
        with open(done) as f:
            self.assertEqual(f.read().splitlines(), [f"{m.name} {m.url}" for m in balancer.members])
        self.assertEqual([m.admin for m in balancer.members], ["enabled", "enabled"])
        events = [text for _, text in balancer.member("app1").stats.history]
        self.assertIn("admin=drain by 127.0.0.1 (rolling restart)", events)
        self.assertIn("admin=enabled by 127.0.0.1 (rolling restart)", events)

    async def test_oneAtATime(self):
        """
        While a run goes, a second start is refused (from the page or the
        command line), and the run shows the command running.
        """
        gate = os.path.abspath(self.mktemp())
        balancer = self.setUpRuns(f'while [ ! -e "{gate}" ]; do sleep 0.05; done')
        await waitUntil(lambda: all(m.checkPasses >= 2 for m in balancer.members), reactor)
        code, run, _ = await self.call("POST", "api/rolling/test", {})
        self.assertEqual(code, 202, run)

        async def running():
            return (await self.rolling())["run"]["members"][0]["step"] == "running"

        await until(running)
        code, answer, _ = await self.call("POST", "api/rolling/test", {})
        self.assertEqual(code, 409)
        self.assertIn("under way", answer["error"])
        code, out, err = await self.cli("rolling-restart", "test", "--exec", "true")
        self.assertEqual(code, 1)
        self.assertIn("a rolling restart of test is under way (from the page, by 127.0.0.1)", err)
        with open(gate, "w"):
            pass
        run = await self.waitEnded()
        self.assertEqual(run["state"], "done", run)
        code, run, _ = await self.call("POST", "api/rolling/test", {})
        self.assertEqual(code, 202, run)  # (the next one may start)
        await self.waitEnded()

    async def test_failureShownAndLogged(self):
        """
        A command that fails stops the run there: the run says why, the
        member stays drained, and the command's output is in the log.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        balancer = self.setUpRuns('echo "no such unit: $PLAYBALANCER_MEMBER"; exit 3')
        await waitUntil(lambda: all(m.checkPasses >= 2 for m in balancer.members), reactor)
        code, run, _ = await self.call("POST", "api/rolling/test", {})
        self.assertEqual(code, 202, run)
        run = await self.waitEnded()
        self.assertEqual(run["state"], "failed")
        self.assertEqual(run["reason"], "the command failed for test/app1 (exit 3); it stays drained")
        self.assertEqual([m["step"] for m in run["members"]], ["failed", "waiting"])
        self.assertEqual([m.admin for m in balancer.members], ["drain", "enabled"])
        logged = [e.get("line") for e in events if e.get("balancer") == "test"]
        self.assertIn("no such unit: app1", logged)

    async def test_refusals(self):
        """
        No command configured, a body that is not an empty object, the
        wrong method, another site, a manager that cannot run them: each
        refused with a JSON error, and nothing starts.
        """
        balancer = self.setUpCluster()
        code, answer, _ = await self.call("POST", "api/rolling/test", {})
        self.assertEqual((code, answer["error"]), (404, "this manager cannot run rolling restarts"))
        self.manager.rollouts = Rollouts(self.manager, reactor)
        self.assertEqual(await self.rolling(), {"configured": False, "run": None})
        code, answer, _ = await self.call("POST", "api/rolling/test", {})
        self.assertEqual(code, 404)
        self.assertEqual(
            answer["error"],
            "test has no rolling restart command: set one in its [balancer.test.rolling_restart] table",
        )
        balancer.rollingRestart = RollingRestartConfig(command="true")
        code, answer, _ = await self.call("POST", "api/rolling/test", {"command": "rm -rf /"})
        self.assertEqual(code, 400)
        self.assertIn("its command is the config file's", answer["error"])
        code, answer, _ = await self.call("POST", "api/rolling/test", raw=b"command=x")
        self.assertEqual(code, 400)
        code, _, _ = await self.call("POST", "api/rolling/test", {}, headers={b"Content-Type": [b"text/plain"]})
        self.assertEqual(code, 415)
        code, _, _ = await self.call("GET", "api/rolling/test")
        self.assertEqual(code, 405)
        code, answer, _ = await self.call("POST", "api/rolling/nope", {})
        self.assertEqual((code, answer["error"]), (404, "no balancer named 'nope'"))
        host = self.managerURL.split("/")[2].encode()
        code, _, _ = await self.call(
            "POST", "api/rolling/test", {}, headers={b"Host": [host], b"Origin": [b"http://evil.example"]}
        )
        self.assertEqual(code, 403)
        self.assertEqual(await self.rolling(), {"configured": True, "run": None})
        self.assertEqual([m.admin for m in balancer.members], ["enabled", "enabled"])

    async def test_oneMemberRefusedInTheRun(self):
        """
        A balancer whose only member cannot be drained: the run fails at
        once, saying why, and the member is left as it was.
        """
        balancer = self.setUpRuns("true", names=("app1",))
        code, run, _ = await self.call("POST", "api/rolling/test", {})
        self.assertEqual(code, 202, run)
        run = await self.waitEnded()
        self.assertEqual(run["state"], "failed")
        self.assertEqual(
            run["reason"], "refusing to drain test/app1: no other member could take its traffic"
        )
        self.assertEqual(balancer.member("app1").admin, "enabled")


class FromConfigTests(ConfigServiceCase):
    """
    The table in a config file, through C{makeService}: the manager says
    it can run one, runs it, and a reload that removes the table takes
    that away.
    """

    def text(self, members, rolling):
        base = configText(
            [(m.name, m.url) for m in members],
            extra='[balancer.web.health]\npath = "/health"\ninterval = 0.05\nrise = 1\n',
        )
        manager = '\n[manager]\nendpoint = "tcp:0:interface=127.0.0.1"\n'
        return base + (f"\n[balancer.web.rolling_restart]\n{rolling}\n" if rolling else "") + manager

    async def call(self, method, path, body=None):
        port = await self.service.runtime.others["tcp:0:interface=127.0.0.1"]._waitingForPort
        url = f"http://127.0.0.1:{port.getHost().port}/{path}"
        headers = {b"Content-Type": [b"application/json"]} if body is not None else {}
        data = json.dumps(body).encode() if body is not None else None
        response = await self.client(persistent=False).request(method, url, data=data, headers=headers)
        return response.code, json.loads(await treq.content(response))

    async def currentRun(self):
        return (await self.call("GET", "api/rolling"))[1]["balancers"]["web"]["run"]

    async def runEnded(self, done):
        """
        Wait for the run to end; check it ended done, having run the
        command for both members in turn.
        """

        async def ended():
            return (await self.currentRun())["state"] != "running"

        await until(ended)
        run = await self.currentRun()
        self.assertEqual(run["state"], "done", run)
        with open(done) as f:
            self.assertEqual(f.read().split(), ["a", "b"])

    async def runDone(self, done):
        code, run = await self.call("POST", "api/rolling/web", {})
        self.assertEqual(code, 202, run)
        await self.runEnded(done)

    async def test_configuredRunAndReload(self):
        members = self.startMembers("a", "b")
        done = os.path.abspath(self.mktemp())
        rolling = f"command = 'echo \"$PLAYBALANCER_MEMBER\" >> \"{done}\"'\ntimeout = 20"
        await self.startWith(self.text(members, rolling))
        code, answer = await self.call("GET", "api/rolling")
        self.assertEqual(answer["balancers"]["web"], {"configured": True, "run": None})
        balancer = self.service.balancers["web"]
        await waitUntil(lambda: all(m.healthy and m.checkPasses >= 1 for m in balancer.members), reactor)
        await self.runDone(done)

        self.assertTrue(self.reload(self.text(members, None)).ok)
        code, answer = await self.call("GET", "api/rolling")
        self.assertFalse(answer["balancers"]["web"]["configured"])
        code, answer = await self.call("POST", "api/rolling/web", {})
        self.assertEqual(code, 404)

    async def test_runGoesOnThroughAReload(self):
        """
        A reload that removes the table while a run goes: the run ends
        with the command it started with.
        """
        members = self.startMembers("a", "b")
        gate, done = os.path.abspath(self.mktemp()), os.path.abspath(self.mktemp())
        rolling = (f"command = 'while [ ! -e \"{gate}\" ]; do sleep 0.05; done; "
                   f"echo \"$PLAYBALANCER_MEMBER\" >> \"{done}\"'")
        await self.startWith(self.text(members, rolling))
        balancer = self.service.balancers["web"]
        await waitUntil(lambda: all(m.healthy and m.checkPasses >= 1 for m in balancer.members), reactor)
        code, run = await self.call("POST", "api/rolling/web", {})
        self.assertEqual(code, 202, run)
        self.assertTrue(self.reload(self.text(members, None)).ok)
        self.assertIsNone(balancer.rollingRestart)
        with open(gate, "w"):
            pass
        await self.runEnded(done)

    async def test_badTableChangesNothing(self):
        members = self.startMembers("a", "b")
        await self.startWith(self.text(members, "command = 'true'"))
        result = self.reload(self.text(members, "command = ''"))
        self.assertFalse(result.ok)
        self.assertIn("balancer.web.rolling_restart.command", result.error)
        self.assertEqual(self.service.balancers["web"].rollingRestart.command, "true")


class WithoutJavaScriptTests(_RunCase):
    """
    The panel as the server draws it, and its form: asked first, then
    started, over real sockets.
    """

    async def page(self):
        response = await self.api.get(self.managerURL)
        return (await response.content()).decode()

    async def post(self, fields):
        response = await self.api.post(
            self.managerURL + "actions",
            data=urlencode(fields).encode(),
            headers={b"Content-Type": [b"application/x-www-form-urlencoded"],
                     b"Origin": [self.managerURL.rstrip("/").encode()]},
            allow_redirects=False,
        )
        return response.code, (await response.content()).decode()

    def panel(self, html):
        return re.search(r'<section[^>]* id="rolling"[^>]*>.*?</section>', html, re.S).group(0)

    async def test_askedThenStarted(self):
        gate = os.path.abspath(self.mktemp())
        balancer = self.setUpRuns(f'while [ ! -e "{gate}" ]; do sleep 0.05; done')
        await waitUntil(lambda: all(m.checkPasses >= 2 for m in balancer.members), reactor)
        html = await self.page()
        panel = self.panel(html)
        self.assertNotIn("hidden", panel.split(">")[0])
        self.assertIn("rolling restart of test <small>not running</small>", panel)
        self.assertIn('name="action" value="rolling-restart"', panel)
        csrf = re.search(r'name="csrf" value="([^"]+)"', panel).group(1)
        start = {"csrf": csrf, "action": "rolling-restart", "balancer": "test"}

        code, question = await self.post(start)
        self.assertEqual(code, 200)
        self.assertIn("Restart every member of test in turn? Each is drained first", question)
        self.assertIn(f"({balancer.rollingRestart.command})", unescape(question))
        self.assertNotIn("manager.js", question)
        self.assertIsNone((await self.rolling())["run"])
        fields = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', question))
        self.assertEqual(fields["confirm"], "yes")

        code, _ = await self.post(fields)
        self.assertEqual(code, 303)

        async def running():
            return (await self.rolling())["run"]["members"][0]["step"] == "running"

        await until(running)
        panel = self.panel(await self.page())
        self.assertIn("running \u00b7 0/2 members", unescape(panel))
        self.assertIn('data-member="app1" data-step="running"', panel)
        self.assertNotIn('value="rolling-restart"', panel)  # (one at a time)
        code, refusal = await self.post(fields)
        self.assertEqual(code, 409)
        self.assertIn("is under way (from the page, by 127.0.0.1)", refusal)
        with open(gate, "w"):
            pass
        run = await self.waitEnded()
        self.assertEqual(run["state"], "done")
        panel = self.panel(await self.page())
        self.assertIn('<progress value="2" max="2"', panel)

    async def test_panelHiddenWithoutCommandOrRun(self):
        self.setUpCluster()
        self.manager.rollouts = Rollouts(self.manager, reactor)
        panel = self.panel(await self.page())
        self.assertIn('hidden="hidden"', panel.split(">")[0])
        self.assertNotIn("rolling-restart", panel)


class WorkersRunTests(TwistdTestCase):
    """
    C{workers = 2}: the parent's manager runs the rolling restart; a
    request in flight in a worker holds its member's drain.
    """

    async def test_waitsForAWorkersRequest(self):
        done = os.path.abspath(self.mktemp())
        await self.startTwoMembers(balancer=(
            '[balancer.web.health]\npath = "/health"\ninterval = 0.1\nrise = 1\n'
            "[balancer.web.rolling_restart]\n"
            f"command = 'echo \"$PLAYBALANCER_MEMBER\" >> \"{done}\"'\ntimeout = 30\n"
        ))
        arrivals = [m.hold.arrival() for m in self.members]
        held = defer.ensureDeferred(self.get("/hold"))
        _, index = await defer.DeferredList(arrivals, fireOnOneCallback=True)
        holding = self.members[index].name

        async def rolling():
            response = await self.client.get(self.manager + "/api/rolling")
            return json.loads(await treq.content(response))["balancers"]["web"]

        self.assertTrue((await rolling())["configured"])
        response = await self.client.post(
            self.manager + "/api/rolling/web", data=b"{}",
            headers={b"Content-Type": [b"application/json"]},
        )
        self.assertEqual(response.code, 202, await treq.content(response))

        async def step(name):
            run = (await rolling())["run"]
            return {m["name"]: m["step"] for m in run["members"]}[name]

        async def draining():
            return await step(holding) == "draining"

        await until(draining, timeout=30)
        await task.deferLater(reactor, 1.0, lambda: None)
        self.assertEqual(await step(holding), "draining")  # (its request is still in flight)
        self.members[index].hold.release()
        self.assertEqual((await held).code, 200)

        async def ended():
            return (await rolling())["run"]["state"] != "running"

        await until(ended, timeout=60)
        run = (await rolling())["run"]
        self.assertEqual((run["state"], run["done"]), ("done", 2), run)
        with open(done) as f:
            self.assertEqual(f.read().split(), ["app1", "app2"])
        for _ in range(10):
            self.assertEqual((await self.get("/")).code, 200)
        self.assertIn("rolling restart of web: ", self.twistdLog())
