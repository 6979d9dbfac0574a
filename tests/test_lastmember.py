"""
Draining, disabling, zero-weighting or removing the last usable member of a
balancer (every new request would then get 503) is refused unless forced,
from the API, the page's forms and the CLI, over real sockets.
"""

from __future__ import annotations

import io
import re

from twisted.internet import reactor

from playbalancer.ctl.cli import run

from tests.proxyharness import servedBy
from tests.test_manager import ManagerTestCase

APP1 = "api/balancers/test/members/app1"
APP2 = "api/balancers/test/members/app2"


class ApiGuardTests(ManagerTestCase):
    async def test_lastUsableRefused(self):
        """
        With app2 disabled, draining, disabling, weight 0 or removing app1
        is a 409 that says what would happen and changes nothing.
        """
        a, b = self.startMembers("app1", "app2")
        self.startBalancer([a.url, b.url])
        self.startManager()
        code, _, _ = await self.call("POST", APP2, {"admin": "disabled"})
        self.assertEqual(code, 200)
        for method, body in [
            ("POST", {"admin": "drain"}),
            ("POST", {"admin": "disabled"}),
            ("POST", {"weight": 0}),
            ("POST", {"admin": "drain", "force": False}),
            ("DELETE", None),
        ]:
            code, answer, _ = await self.call(method, APP1, body)
            self.assertEqual(code, 409, (method, body, answer))
            self.assertTrue(answer["needs_force"])
            self.assertIn("app1 is the last usable member of test", answer["error"])
            self.assertIn("every new request to test gets 503", answer["error"])
        members = await self.status()
        self.assertEqual(
            (members["app1"]["admin"], members["app1"]["weight"], members["app1"]["removing"]),
            ("enabled", 1, False),
        )
        response, _ = await self.fetch(self.client(), "/")
        self.assertEqual(servedBy(response), "app1")

    async def test_inFlightSaid(self):
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager()
        arrived = a.hold.arrival()
        from twisted.internet import defer

        slow = defer.ensureDeferred(self.fetch(self.client(), "/hold"))
        await arrived
        code, answer, _ = await self.call("POST", APP1, {"admin": "drain"})
        self.assertEqual(code, 409)
        self.assertIn("(1 in flight would finish)", answer["error"])
        a.hold.release()
        await slow

    async def test_forced(self):
        """
        C{"force": true} (C{?force=true} for C{DELETE}) goes ahead: the
        balancer then answers 503.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager()
        code, member, _ = await self.call("POST", APP1, {"admin": "drain", "force": True})
        self.assertEqual((code, member["admin"]), (200, "drain"))
        response, _ = await self.fetch(self.client(), "/")
        self.assertEqual(response.code, 503)
        code, _, _ = await self.call("POST", APP1, {"admin": "enabled"})
        self.assertEqual(code, 200)
        code, member, _ = await self.call("DELETE", APP1 + "?force=true")
        self.assertEqual((code, member["removing"]), (200, True))

    async def test_othersUsable(self):
        """
        No question while another member could serve: a hot standby counts;
        a member that is down, disabled or of weight 0 does not; changing a
        member that serves nothing anyway is never refused.
        """
        a, b, c = self.startMembers("app1", "app2", "app3")
        balancer = self.startBalancer([a.url, b.url, c.url], standby={1})
        self.startManager()
        code, _, _ = await self.call("POST", APP1, {"admin": "drain"})
        self.assertEqual(code, 200)  # app2, the standby, is usable
        await self.call("POST", APP1, {"admin": "enabled"})
        await self.call("POST", APP2, {"weight": 0})
        balancer.memberFailed(balancer.member("app3"), "test failure")
        code, answer, _ = await self.call("POST", APP1, {"admin": "disabled"})
        self.assertEqual(code, 409, answer)
        code, _, _ = await self.call("POST", APP2, {"admin": "disabled"})
        self.assertEqual(code, 200)  # app2 took nothing (weight 0)
        code, _, _ = await self.call("POST", APP1, {"standby": True})
        self.assertEqual(code, 200)  # still usable: not guarded
        code, _, _ = await self.call("POST", "api/balancers/test/members/app3", {"admin": "drain"})
        self.assertEqual(code, 200)  # down already

    async def test_badForce(self):
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager()
        code, answer, _ = await self.call("POST", APP1, {"admin": "drain", "force": "yes"})
        self.assertEqual((code, answer["error"]), (400, "force must be true or false"))


class FormGuardTests(ManagerTestCase):
    async def form(self, action, extra=b""):
        page = await self.api.get(self.managerURL)
        html = (await page.content()).decode()
        csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
        body = b"csrf=" + csrf.encode() + b"&balancer=test&member=app1&action=" + action + extra
        response = await self.api.post(
            self.managerURL + "actions",
            data=body,
            headers={b"Content-Type": [b"application/x-www-form-urlencoded"],
                     b"Origin": [self.managerURL.rstrip("/").encode()]},
            allow_redirects=False,
        )
        return response.code, await response.content()

    async def test_formRefusedThenForced(self):
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager()
        code, body = await self.form(b"disable")
        self.assertEqual(code, 409)
        self.assertIn(b"last usable member", body)
        self.assertEqual((await self.status())["app1"]["admin"], "enabled")
        code, _ = await self.form(b"disable", b"&force=true")
        self.assertEqual(code, 303)
        self.assertEqual((await self.status())["app1"]["admin"], "disabled")
        code, body = await self.form(b"remove")
        self.assertEqual(code, 200)  # disabled: not usable, nothing to guard; but asked
        self.assertIn(b"Remove app1 from test? It gets no new requests from now", body)
        self.assertIsNotNone(self.balancer.member("app1"))
        code, _ = await self.form(b"remove", b"&confirm=yes")
        self.assertEqual(code, 303)
        self.assertIsNone(self.balancer.member("app1"))

    async def test_formAsksWithAButton(self):
        """
        Without JavaScript, a refusal for the last usable member is a page
        that says why, with a button that posts the same change forced.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager()
        code, body = await self.form(b"drain")
        self.assertEqual(code, 409)
        html = body.decode()
        self.assertIn("every new request to test gets 503", html)
        self.assertIn('name="force" value="true"', html)
        self.assertIn('name="action" value="drain"', html)
        self.assertNotIn("manager.js", html)  # only browsers without it come here
        csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
        fields = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', html))
        self.assertEqual(fields["csrf"], csrf)
        response = await self.api.post(
            self.managerURL + "actions",
            data="&".join(f"{k}={v}" for k, v in fields.items()).encode(),
            headers={b"Content-Type": [b"application/x-www-form-urlencoded"],
                     b"Origin": [self.managerURL.rstrip("/").encode()]},
            allow_redirects=False,
        )
        self.assertEqual(response.code, 303)
        self.assertEqual(self.balancer.member("app1").admin, "drain")


class CLIGuardTests(ManagerTestCase):
    async def cli(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        code = await run(reactor, ["--manager", self.managerURL, *argv], out, err, environ={})
        return code, out.getvalue(), err.getvalue()

    async def test_cliRefusesWithoutForce(self):
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager()
        for command in (["drain", "test/app1"], ["disable", "test/app1"],
                        ["weight", "test/app1", "0"], ["remove", "test/app1"]):
            code, out, err = await self.cli(*command)
            self.assertEqual(code, 1, command)
            self.assertIn("last usable member of test", err)
            self.assertIn("(--force)", err)
        self.assertEqual((await self.status())["app1"]["admin"], "enabled")
        code, out, err = await self.cli("drain", "test/app1", "--force")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("drain", out)
        self.assertEqual((await self.status())["app1"]["admin"], "drain")
