"""
The C{playbalancer} control command against a fake manager on 127.0.0.1:
in this process through L{playbalancer.ctl.cli.run}, and as a real process.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from playbalancer.ctl import cli
from playbalancer.testing import closeAll

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def memberJSON(name, url, **fields):
    """
    A member as the manager's status shows it.
    """
    member = {
        "name": name,
        "url": url,
        "admin": "enabled",
        "standby": False,
        "weight": 1,
        "healthy": True,
        "down_reason": None,
        "down_since": None,
        "retry_at": None,
        "active": 0,
        "requests": 0,
        "failures": 0,
        "bytes_in": 0,
        "bytes_out": 0,
        "latency_mean_ms": None,
        "latency_p95_ms": None,
        "removing": False,
        "taking_traffic": True,
    }
    member.update(fields)
    return member


def initialBalancers():
    return {
        "web": {
            "scheduler": "round-robin",
            "retry": 60.0,
            "members": {
                "app1": memberJSON(
                    "app1",
                    "http://127.0.0.1:9001",
                    active=3,
                    requests=120,
                    failures=1,
                    latency_mean_ms=12.34,
                    latency_p95_ms=40.0,
                ),
                "app2": memberJSON(
                    "app2",
                    "http://127.0.0.1:9002",
                    healthy=False,
                    down_reason="connection refused",
                    down_since=1000.0,
                    retry_at=1060.0,
                    failures=7,
                    taking_traffic=False,
                ),
                "spare": memberJSON(
                    "spare", "http://127.0.0.1:9003", standby=True, weight=2
                ),
            },
        },
        "api": {"scheduler": "least-conn", "retry": 5.0, "members": {}},
    }


class FakeManager(Resource):
    """
    The manager's JSON API over an in-memory dict.

    While a member is in drain, each status request takes one from its
    C{active} count, unless C{stuck}.
    """

    isLeaf = True

    def __init__(self, token=None):
        Resource.__init__(self)
        self.token = token
        self.balancers = initialBalancers()
        self.seen = []
        self.refuse = None
        self.stuck = False
        self.plain = False
        self.hang = False
        self.afterPoll = None

    def render(self, request):
        path = "/" + "/".join(p.decode() for p in request.postpath)
        raw = request.content.read()
        auth = request.getHeader(b"authorization")
        contentType = request.getHeader(b"content-type")
        self.seen.append(
            {
                "method": request.method.decode(),
                "path": path,
                "authorization": auth.decode() if auth else None,
                "content-type": contentType.decode() if contentType else None,
                "body": json.loads(raw) if raw else None,
            }
        )
        if self.hang:
            return NOT_DONE_YET
        if self.plain:
            request.setHeader(b"content-type", b"text/html")
            return b"<html>a balanced page</html>"
        code, value = self.answer(request.method, path, auth, contentType, raw)
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(value).encode()

    def answer(self, method, path, auth, contentType, raw):
        if self.token is not None and auth != b"Bearer " + self.token.encode():
            return 401, {"error": "a valid token is required"}
        if self.refuse is not None:
            return 403, {"error": self.refuse}
        if path == "/api/status":
            if method != b"GET":
                return 405, {"error": "status is read with GET"}
            return 200, self.status()
        parts = path.split("/")
        if len(parts) != 6 or parts[:3] != ["", "api", "balancers"] or parts[4] != "members":
            return 404, {"error": "not found"}
        balancer = self.balancers.get(parts[3])
        if balancer is None:
            return 404, {"error": f"no balancer named {parts[3]!r}"}
        name = parts[5]
        if method == b"PUT":
            return self.add(balancer, parts[3], name, contentType, raw)
        member = balancer["members"].get(name)
        if member is None or member["removing"]:
            return 404, {"error": f"no member named {name!r} in balancer {parts[3]!r}"}
        if method == b"POST":
            return self.change(member, contentType, raw)
        if method == b"DELETE":
            member["removing"] = True
            if not member["active"]:
                del balancer["members"][name]
            return 200, dict(member)
        return 405, {"error": "use GET, POST, PUT or DELETE"}

    def status(self):
        for balancer in self.balancers.values():
            for member in balancer["members"].values():
                if member["admin"] == "drain" and member["active"] and not self.stuck:
                    member["active"] -= 1
        if self.afterPoll is not None:
            self.afterPoll()
        return {"version": "0.0-fake", "time": 1030.0, "balancers": self.balancers}

    def _body(self, contentType, raw):
        if contentType != b"application/json":
            return None
        try:
            body = json.loads(raw)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def change(self, member, contentType, raw):
        body = self._body(contentType, raw)
        if body is None:
            return 415, {"error": "the API takes Content-Type: application/json"}
        if body.get("admin", "enabled") not in ("enabled", "drain", "disabled"):
            return 400, {"error": "admin must be enabled, drain or disabled"}
        if set(body) - {"admin", "standby", "weight", "reset"}:
            return 400, {"error": "unknown keys"}
        member.update({k: v for k, v in body.items() if k != "reset"})
        if body.get("reset"):
            member.update(healthy=True, down_reason=None, down_since=None, retry_at=None)
        return 200, dict(member)

    def add(self, balancer, balancerName, name, contentType, raw):
        body = self._body(contentType, raw)
        if body is None or "url" not in body:
            return 400, {"error": "a new member needs a url"}
        if name in balancer["members"]:
            return 409, {"error": f"balancer {balancerName!r} already has a member {name!r}"}
        member = memberJSON(
            name, body["url"], standby=body.get("standby", False), weight=body.get("weight", 1)
        )
        balancer["members"][name] = member
        return 201, dict(member)


class CLITestCase(TestCase):
    """
    Starts a fake manager; runs the command against it.
    """

    timeout = 30

    def setUp(self):
        self.manager, self.url = self.startManager()

    def startManager(self, token=None, mount=None):
        fake = FakeManager(token)
        root = fake
        if mount is not None:
            root = Resource()
            root.putChild(mount.encode(), fake)
        factory = WrappingFactory(Site(root))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: closeAll(factory, reactor))
        return fake, f"http://127.0.0.1:{port.getHost().port}"

    async def command(self, *argv, environ=None, manager=None):
        """
        The command line C{argv} with C{--manager}: its exit status, output
        and error output.
        """
        out, err = io.StringIO(), io.StringIO()
        argv = ["--manager", manager or self.url] + list(argv)
        code = await cli.run(reactor, argv, out, err, environ or {})
        return code, out.getvalue(), err.getvalue()

    async def runOK(self, *argv, **kwargs):
        code, out, err = await self.command(*argv, **kwargs)
        self.assertEqual((code, err), (0, ""))
        return out

    async def runFailing(self, *argv, output="", **kwargs):
        """
        Run a command expected to fail, with C{output} before: its one
        error line.
        """
        code, out, err = await self.command(*argv, **kwargs)
        self.assertEqual(code, 1)
        self.assertEqual(out, output)
        self.assertEqual(err.count("\n"), 1, err)
        self.assertTrue(err.startswith("playbalancer: "), err)
        return err.strip()

    def tokenFile(self, text, mode=0o600):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def changes(self):
        """
        The requests that were not status polls.
        """
        return [(s["method"], s["path"], s["body"]) for s in self.manager.seen if s["method"] != "GET"]


class TokenSafetyTests(CLITestCase):
    """
    The command warns before it sends the token where it may be read.
    """

    async def test_readableTokenFile(self):
        self.manager.token = "s3cret"
        path = self.tokenFile("s3cret\n", mode=0o644)
        code, out, err = await self.command("status", "--token-file", path)
        self.assertEqual(code, 0)
        self.assertIn("playbalancer: warning: --token-file:", err)
        self.assertIn("chmod 600", err)

    def test_clearTextToAnotherHost(self):
        path = self.tokenFile("s3cret\n")
        warnings = cli.tokenWarnings("http://10.0.0.5:8081", path)
        self.assertEqual(len(warnings), 1)
        self.assertIn("in clear over http:// to 10.0.0.5", warnings[0])
        for quiet in ["http://127.0.0.1:8081", "http://[::1]:8081", "http://localhost:1",
                      "https://10.0.0.5:8443"]:
            self.assertEqual(cli.tokenWarnings(quiet, path), [], quiet)

    async def test_ipv6Manager(self):
        """
        C{--manager http://[::1]:PORT} works (hyperlink refused the IPv6
        literal on its way through IDNA).
        """
        fake = FakeManager(None)
        factory = WrappingFactory(Site(fake))
        port = reactor.listenTCP(0, factory, interface="::1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: closeAll(factory, reactor))
        self.manager = fake
        out = await self.runOK("status", manager=f"http://[::1]:{port.getHost().port}")
        self.assertIn("app1", out)


class StatusTests(CLITestCase):
    async def test_table(self):
        """
        C{status} prints a table per balancer: health with the down reason,
        numbers right-aligned, latency as mean/p95.
        """
        out = await self.runOK("status")
        self.assertEqual(
            out,
            "balancer web (round-robin, retry 60s)\n"
            "  MEMBER  URL                    ADMIN    STANDBY  WEIGHT  HEALTH"
            "                    ACTIVE  REQUESTS  FAILURES  LATENCY MEAN/P95\n"
            "  app1    http://127.0.0.1:9001  enabled  no            1  up"
            "                             3       120         1  12.3/40.0 ms\n"
            "  app2    http://127.0.0.1:9002  enabled  no            1  down: connection refused"
            "       0         0         7  -\n"
            "  spare   http://127.0.0.1:9003  enabled  yes           2  up"
            "                             0         0         0  -\n"
            "\n"
            "balancer api (least-conn, retry 5s)\n"
            "  (no members)\n",
        )
        self.assertEqual([s["path"] for s in self.manager.seen], ["/api/status"])

    async def test_json(self):
        """
        C{status --json} prints the manager's JSON as it came.
        """
        expected = self.manager.status()
        out = await self.runOK("status", "--json")
        self.assertEqual(json.loads(out), json.loads(json.dumps(expected)))

    async def test_jsonBeforeCommand(self):
        """
        The global options also go before the command.
        """
        out = await self.runOK("--json", "status")
        self.assertEqual(json.loads(out)["version"], "0.0-fake")

    async def test_removingShown(self):
        """
        A member being removed says so in the admin column.
        """
        self.manager.balancers["web"]["members"]["app1"]["removing"] = True
        out = await self.runOK("status")
        self.assertIn("  app1    http://127.0.0.1:9001  enabled (removing)  no", out)

    async def test_managerUnderPath(self):
        """
        A manager mounted under a path is reached below it.
        """
        fake, url = self.startManager(mount="manager")
        out = await self.runOK("status", "--json", manager=url + "/manager/")
        self.assertIn("web", json.loads(out)["balancers"])
        self.assertEqual(fake.seen[0]["path"], "/api/status")

    async def test_environment(self):
        """
        $PLAYBALANCER_MANAGER and $PLAYBALANCER_TOKEN_FILE stand in for the
        options.
        """
        fake, url = self.startManager(token="s3cret")
        out, err = io.StringIO(), io.StringIO()
        environ = {
            "PLAYBALANCER_MANAGER": url,
            "PLAYBALANCER_TOKEN_FILE": self.tokenFile("s3cret\n"),
        }
        code = await cli.run(reactor, ["status", "--json"], out, err, environ)
        self.assertEqual((code, err.getvalue()), (0, ""))
        self.assertEqual(fake.seen[0]["authorization"], "Bearer s3cret")


class ActionTests(CLITestCase):
    async def assertChange(self, argv, body, line):
        out = await self.runOK(*argv)
        self.assertEqual(self.changes(), [("POST", "/api/balancers/web/members/app1", body)])
        self.assertEqual(self.manager.seen[0]["content-type"], "application/json")
        self.assertEqual(out, line)

    async def test_enable(self):
        self.manager.balancers["web"]["members"]["app1"]["admin"] = "disabled"
        await self.assertChange(
            ["enable", "web/app1"],
            {"admin": "enabled"},
            "web/app1 (http://127.0.0.1:9001): enabled, weight 1, up, 3 active\n",
        )

    async def test_drain(self):
        await self.assertChange(
            ["drain", "web/app1"],
            {"admin": "drain"},
            "web/app1 (http://127.0.0.1:9001): drain, weight 1, up, 3 active\n",
        )

    async def test_disable(self):
        await self.assertChange(
            ["disable", "web/app1"],
            {"admin": "disabled"},
            "web/app1 (http://127.0.0.1:9001): disabled, weight 1, up, 3 active\n",
        )

    async def test_standbyOn(self):
        await self.assertChange(
            ["standby", "web/app1", "on"],
            {"standby": True},
            "web/app1 (http://127.0.0.1:9001): enabled, standby, weight 1, up, 3 active\n",
        )

    async def test_standbyOff(self):
        self.manager.balancers["web"]["members"]["app1"]["standby"] = True
        await self.assertChange(
            ["standby", "web/app1", "off"],
            {"standby": False},
            "web/app1 (http://127.0.0.1:9001): enabled, weight 1, up, 3 active\n",
        )

    async def test_weight(self):
        await self.assertChange(
            ["weight", "web/app1", "5"],
            {"weight": 5},
            "web/app1 (http://127.0.0.1:9001): enabled, weight 5, up, 3 active\n",
        )

    async def test_reset(self):
        out = await self.runOK("reset", "web/app2")
        self.assertEqual(self.changes(), [("POST", "/api/balancers/web/members/app2", {"reset": True})])
        self.assertEqual(out, "web/app2 (http://127.0.0.1:9002): enabled, weight 1, up, 0 active\n")

    async def test_jsonAnswer(self):
        """
        C{--json} prints the member as the manager answered it.
        """
        out = await self.runOK("weight", "web/app1", "0", "--json")
        member = json.loads(out)
        self.assertEqual((member["name"], member["weight"]), ("app1", 0))

    async def test_add(self):
        out = await self.runOK("add", "web/app4", "http://10.0.0.4:80", "--standby", "--weight", "3")
        self.assertEqual(
            self.changes(),
            [
                (
                    "PUT",
                    "/api/balancers/web/members/app4",
                    {"url": "http://10.0.0.4:80", "standby": True, "weight": 3},
                )
            ],
        )
        self.assertEqual(out, "web/app4 (http://10.0.0.4:80): enabled, standby, weight 3, up, 0 active\n")

    async def test_addPlain(self):
        """
        Without C{--standby} and C{--weight}, the body holds only the URL.
        """
        await self.runOK("add", "web/app4", "http://10.0.0.4:80")
        self.assertEqual(
            self.changes(), [("PUT", "/api/balancers/web/members/app4", {"url": "http://10.0.0.4:80"})]
        )

    async def test_addExisting(self):
        """
        Adding a member that exists gives the manager's 409 message.
        """
        err = await self.runFailing("add", "web/app1", "http://10.0.0.4:80")
        self.assertEqual(err, "playbalancer: balancer 'web' already has a member 'app1'")

    async def test_removeBusy(self):
        """
        Removing a busy member says it goes once its requests end.
        """
        out = await self.runOK("remove", "web/app1")
        self.assertEqual(self.changes(), [("DELETE", "/api/balancers/web/members/app1", None)])
        self.assertEqual(out, "web/app1: removing; it goes once its 3 active requests end\n")

    async def test_removeIdle(self):
        out = await self.runOK("remove", "web/spare")
        self.assertEqual(out, "web/spare: removed\n")
        self.assertNotIn("spare", self.manager.balancers["web"]["members"])


DRAINING = "web/app1 (http://127.0.0.1:9001): drain, weight 1, up, 3 active\n"


class DrainWaitTests(CLITestCase):
    async def test_waitUntilIdle(self):
        """
        C{drain --wait} polls the status until the member has no active
        request, telling each change.
        """
        out = await self.runOK("drain", "web/app1", "--wait")
        self.assertEqual(
            out,
            "web/app1 (http://127.0.0.1:9001): drain, weight 1, up, 3 active\n"
            "web/app1: 2 active\n"
            "web/app1: 1 active\n"
            "web/app1: drained\n",
        )
        self.assertEqual(self.manager.balancers["web"]["members"]["app1"]["active"], 0)
        polls = [s["path"] for s in self.manager.seen if s["method"] == "GET"]
        self.assertEqual(polls, ["/api/status"] * 3)

    async def test_alreadyIdle(self):
        """
        A member with nothing active is drained at once, without a poll.
        """
        out = await self.runOK("drain", "web/spare", "--wait")
        self.assertTrue(out.endswith("web/spare: drained\n"), out)
        self.assertEqual([s["method"] for s in self.manager.seen], ["POST"])

    async def test_waitJSON(self):
        """
        With C{--json}, only the member's last status is printed.
        """
        out = await self.runOK("drain", "web/app1", "--wait", "--json")
        self.assertEqual(json.loads(out)["active"], 0)

    async def test_timeout(self):
        """
        When the member stays busy past C{--timeout}, the command fails.
        """
        self.manager.stuck = True
        start = reactor.seconds()
        err = await self.runFailing(
            "drain", "web/app1", "--wait", "--timeout", "0.5", output=DRAINING
        )
        self.assertEqual(
            err, "playbalancer: web/app1 still has 3 active requests after 0.5s; it stays in drain"
        )
        self.assertGreaterEqual(reactor.seconds() - start, 0.5)
        self.assertEqual(self.manager.balancers["web"]["members"]["app1"]["admin"], "drain")

    async def test_enabledMeanwhile(self):
        """
        Someone enabling the member again ends the wait with an error.
        """
        self.manager.stuck = True

        def enable():
            self.manager.balancers["web"]["members"]["app1"]["admin"] = "enabled"

        self.manager.afterPoll = enable
        err = await self.runFailing("drain", "web/app1", "--wait", output=DRAINING)
        self.assertEqual(err, "playbalancer: web/app1 was enabled again while draining")

    def test_defaultTimeout(self):
        """
        C{--wait} alone waits for L{cli.DEFAULT_DRAIN_TIMEOUT} seconds.
        """
        options = cli.parseArguments(["drain", "web/app1", "--wait"], {})
        self.assertEqual(options.timeout, cli.DEFAULT_DRAIN_TIMEOUT)
        self.assertEqual(cli.DEFAULT_DRAIN_TIMEOUT, 300.0)


class ErrorTests(CLITestCase):
    async def test_unreachable(self):
        """
        A manager that does not listen gives one line naming it.
        """
        port = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
        url = f"http://127.0.0.1:{port.getHost().port}"
        await port.stopListening()
        err = await self.runFailing("status", manager=url)
        self.assertEqual(err, f"playbalancer: cannot reach the manager at {url}: connection refused")

    async def test_refused(self):
        """
        A 403 tells the manager's reason.
        """
        self.manager.refuse = "address 10.1.2.3 is not allowed to use the manager"
        err = await self.runFailing("drain", "web/app1")
        self.assertEqual(
            err,
            "playbalancer: the manager refused: "
            "address 10.1.2.3 is not allowed to use the manager",
        )

    async def test_tokenMissing(self):
        """
        A 401 without a token suggests giving one.
        """
        self.manager.token = "s3cret"
        err = await self.runFailing("status")
        self.assertEqual(
            err, "playbalancer: the manager refused: a valid token is required (give --token-file)"
        )

    async def test_tokenWrong(self):
        self.manager.token = "s3cret"
        err = await self.runFailing("status", "--token-file", self.tokenFile("guess"))
        self.assertEqual(err, "playbalancer: the manager refused: a valid token is required")

    async def test_tokenSent(self):
        """
        The token file's stripped content goes as a bearer token, with every
        request.
        """
        self.manager.token = "s3cret"
        path = self.tokenFile("  s3cret\n")
        await self.runOK("drain", "web/app1", "--wait", "--token-file", path)
        auths = {s["authorization"] for s in self.manager.seen}
        self.assertEqual(auths, {"Bearer s3cret"})
        self.assertEqual(len(self.manager.seen), 4)

    async def test_tokenFileMissing(self):
        path = self.mktemp()
        err = await self.runFailing("status", "--token-file", path)
        self.assertEqual(err, f"playbalancer: --token-file: cannot read {path}: No such file or directory")
        self.assertEqual(self.manager.seen, [])

    async def test_tokenFileEmpty(self):
        path = self.tokenFile("\n")
        err = await self.runFailing("status", "--token-file", path)
        self.assertEqual(err, f"playbalancer: --token-file: {path} is empty")

    async def test_unknownMember(self):
        err = await self.runFailing("disable", "web/nobody")
        self.assertEqual(err, "playbalancer: no member named 'nobody' in balancer 'web'")

    async def test_unknownBalancer(self):
        err = await self.runFailing("weight", "db/app1", "2")
        self.assertEqual(err, "playbalancer: no balancer named 'db'")

    async def test_badTarget(self):
        """
        BALANCER/MEMBER without a slash is a usage error; nothing is sent.
        """
        for bad in ["app1", "web/", "/app1", "web/app1/x"]:
            err = await self.runFailing("drain", bad)
            self.assertEqual(
                err,
                "playbalancer: argument BALANCER/MEMBER: expected BALANCER/MEMBER, "
                f"e.g. web/app1, got {bad!r} (see playbalancer drain --help)",
            )
        self.assertEqual(self.manager.seen, [])

    async def test_badWeight(self):
        err = await self.runFailing("weight", "web/app1", "-2")
        self.assertIn("expected a whole number, 0 or more, got '-2'", err)
        self.assertEqual(self.manager.seen, [])

    async def test_timeoutWithoutWait(self):
        err = await self.runFailing("drain", "web/app1", "--timeout", "5")
        self.assertEqual(err, "playbalancer: --timeout goes with --wait (see playbalancer drain --help)")
        self.assertEqual(self.manager.seen, [])

    async def test_noCommand(self):
        err = await self.runFailing()
        self.assertIn("required: COMMAND", err)

    async def test_badManagerURL(self):
        err = await self.runFailing("status", manager="127.0.0.1:8081")
        self.assertEqual(
            err, "playbalancer: --manager: expected an http:// or https:// URL, got '127.0.0.1:8081'"
        )

    async def test_notJSON(self):
        """
        A server that answers something else than JSON is not the manager.
        """
        self.manager.plain = True
        err = await self.runFailing("status")
        self.assertEqual(err, f"playbalancer: {self.url} did not answer JSON; is it the manager?")

    async def test_noAnswer(self):
        """
        A manager that never answers makes the request give up.
        """
        from treq.client import HTTPClient
        from twisted.web.client import Agent, HTTPConnectionPool

        self.manager.hang = True
        pool = HTTPConnectionPool(reactor, persistent=False)
        client = cli.ManagerClient(HTTPClient(Agent(reactor, pool=pool)), self.url, None, reactor, 0.3)
        with self.assertRaises(cli.CommandError) as caught:
            await client.status()
        self.assertEqual(
            str(caught.exception), f"cannot reach the manager at {self.url}: no answer within 0.3s"
        )

    async def test_help(self):
        """
        C{--help} prints to the output and succeeds.
        """
        out, err = io.StringIO(), io.StringIO()
        code = await cli.run(reactor, ["drain", "--help"], out, err, {})
        self.assertEqual((code, err.getvalue()), (0, ""))
        self.assertIn("--timeout S", out.getvalue())


class ProcessTests(CLITestCase):
    """
    C{python -m playbalancer.ctl.cli} as a real process, while this reactor
    serves the fake manager.
    """

    async def spawn(self, *argv):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYBALANCER_")}
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-m", "playbalancer.ctl.cli"] + list(argv), env=env, path=ROOT
        )
        return code, out.decode(), err.decode()

    async def test_status(self):
        code, out, err = await self.spawn("--manager", self.url, "status")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("  app2    http://127.0.0.1:9002  enabled  no", out)
        self.assertIn("down: connection refused", out)

    async def test_drainWait(self):
        path = self.tokenFile("s3cret")
        self.manager.token = "s3cret"
        code, out, err = await self.spawn(
            "drain", "web/app1", "--wait", "--manager", self.url, "--token-file", path
        )
        self.assertEqual((code, err), (0, ""))
        self.assertTrue(out.endswith("web/app1: drained\n"), out)

    async def test_errorIsOneLine(self):
        """
        An error exits 1 with one line, no traceback.
        """
        code, out, err = await self.spawn("--manager", self.url, "reset", "web/ghost")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, "playbalancer: no member named 'ghost' in balancer 'web'\n")

    async def test_usageErrorIsOneLine(self):
        code, out, err = await self.spawn("standby", "web/app1", "maybe")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err.count("\n"), 1, err)
        self.assertIn("invalid choice: 'maybe'", err)

    def test_noReactorImport(self):
        """
        Importing the command leaves the reactor unchosen.
        """
        code = "import sys, playbalancer.ctl.cli; print('twisted.internet.reactor' in sys.modules)"
        output = subprocess.check_output([sys.executable, "-c", code], cwd=ROOT)
        self.assertEqual(output.strip(), b"False")
