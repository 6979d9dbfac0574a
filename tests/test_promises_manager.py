"""
README promises about the manager, its API and what it logs, proved over
real sockets (see the audit of README.rst; the row numbers are its own).
"""

from __future__ import annotations

import base64
import io
import re

from twisted.internet import defer, reactor
from twisted.logger import globalLogPublisher

from playbalancer.config import HealthConfig
from playbalancer.tap import makeHealthChecker
from playbalancer.testing import waitUntil
from playbalancer.testing.faultmember import FaultMember

from tests.proxyharness import servedBy
from tests.test_manager import ManagerTestCase


def captureEvents(case):
    """
    Every twisted.logger event from now to the end of the test.
    """
    events = []
    globalLogPublisher.addObserver(events.append)
    case.addCleanup(globalLogPublisher.removeObserver, events.append)
    return events


def playbalancerEvents(events, kind):
    return [e for e in events if e.get("playbalancer_event") == kind]


class AdminStateTests(ManagerTestCase):
    async def test_disableNeverCutsOffARequestInFlight(self):
        """
        #93: C{disabled} takes no new requests, and a request in flight on
        the member when it is disabled through the API still gets its whole
        answer.
        """
        a, b = self.startMembers("app1", "app2")
        balancer = self.startBalancer([a.url, b.url], scheduler="standby")
        self.startManager()
        arrived = a.hold.arrival()
        slow = defer.ensureDeferred(self.fetch(self.client(), "/hold"))
        await arrived
        code, member, _ = await self.call(
            "POST", "api/balancers/test/members/app1", {"admin": "disabled"}
        )
        self.assertEqual((code, member["admin"], member["active"]), (200, "disabled", 1))
        client = self.client()
        for _ in range(3):
            response, _ = await self.fetch(client, "/")
            self.assertEqual(servedBy(response), "app2")
        self.assertEqual(a.hold.cancelled, [])
        a.hold.release()
        response, body = await slow
        self.assertEqual((response.code, body), (200, b"released\n"))
        self.assertEqual(balancer.member("app1").active, 0)

    async def test_standbyThroughTheAPI(self):
        """
        #96: C{POST {"standby": true}} on the real manager makes a member a
        hot standby: traffic moves to the other member, comes back to it
        only while the other is out, and C{false} makes it a primary again.
        """
        a, b = self.startMembers("app1", "app2")
        balancer = self.startBalancer([a.url, b.url])
        self.startManager()
        client = self.client()
        served = {servedBy((await self.fetch(client, "/"))[0]) for _ in range(4)}
        self.assertEqual(served, {"app1", "app2"})
        path = "api/balancers/test/members/app1"
        code, member, _ = await self.call("POST", path, {"standby": True})
        self.assertEqual((code, member["standby"]), (200, True))
        served = [servedBy((await self.fetch(client, "/"))[0]) for _ in range(6)]
        self.assertEqual(served, ["app2"] * 6)
        code, _, _ = await self.call(
            "POST", "api/balancers/test/members/app2", {"admin": "disabled"}
        )
        self.assertEqual(code, 200)
        served = [servedBy((await self.fetch(client, "/"))[0]) for _ in range(3)]
        self.assertEqual(served, ["app1"] * 3)
        await self.call("POST", "api/balancers/test/members/app2", {"admin": "enabled"})
        code, member, _ = await self.call("POST", path, {"standby": False})
        self.assertEqual((code, member["standby"]), (200, False))
        served = {servedBy((await self.fetch(client, "/"))[0]) for _ in range(4)}
        self.assertEqual(served, {"app1", "app2"})
        self.assertFalse(balancer.member("app1").standby)


class ProtectionOrderTests(ManagerTestCase):
    async def test_allowListBeforeToken(self):
        """
        #99: the address allow-list is checked first, then the token: a
        client outside C{allow} gets 403 (not 401) with or without a valid
        token, and changes nothing.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager(allow=["127.0.0.2"], token="s3cret")
        good = {b"Authorization": [b"Bearer s3cret"]}
        basic = {b"Authorization": [b"Basic " + base64.b64encode(b"admin:s3cret")]}
        for headers in [good, basic, {}, {b"Authorization": [b"Bearer wrong"]}]:
            code, answer, response = await self.call("GET", "api/status", headers=headers)
            self.assertEqual(code, 403, headers)
            self.assertIn("not allowed", answer["error"])
            self.assertFalse(response.headers.hasHeader(b"www-authenticate"))
        code, _, _ = await self.call(
            "POST", "api/balancers/test/members/app1", {"admin": "drain"}, headers=good
        )
        self.assertEqual(code, 403)
        self.assertEqual(self.balancer.member("app1").admin, "enabled")
        # The same token from an allowed address passes: the 403 came from
        # the allow-list.
        self.startManager(allow=["127.0.0.1"], token="s3cret")
        code, _, _ = await self.call("GET", "api/status", headers=good)
        self.assertEqual(code, 200)
        code, _, _ = await self.call("GET", "api/status")
        self.assertEqual(code, 401)

    async def test_foreignOriginRefusedOnTheAPI(self):
        """
        #104: an API change whose C{Origin} names another site is refused
        with 403 and changes nothing, though its C{Host} is the manager's
        own; the same request naming the manager itself in C{Origin} (or
        with no C{Origin}, as curl sends it) works.
        """
        (a, b) = self.startMembers("app1", "app2")
        self.startBalancer([a.url])
        self.startManager()
        host = self.managerURL.split("/")[2].encode()
        evil = {b"Host": [host], b"Origin": [b"http://evil.example"]}
        for method, path, body in [
            ("POST", "api/balancers/test/members/app1", {"admin": "drain"}),
            ("PUT", "api/balancers/test/members/app2", {"url": b.url}),
            ("DELETE", "api/balancers/test/members/app1", None),
        ]:
            code, answer, _ = await self.call(method, path, body, headers=evil)
            self.assertEqual(code, 403, method)
            self.assertIn("cross-site", answer["error"])
        app1 = self.balancer.member("app1")
        self.assertEqual((app1.admin, app1.removing), ("enabled", False))
        self.assertIsNone(self.balancer.member("app2"))
        own = {b"Host": [host], b"Origin": [b"http://" + host]}
        code, member, _ = await self.call(  # (app1 is the only member: forced)
            "POST", "api/balancers/test/members/app1", {"admin": "drain", "force": True}, headers=own
        )
        self.assertEqual((code, member["admin"]), (200, "drain"))


class ChangeLogTests(ManagerTestCase):
    async def test_changesLoggedWithWhoMadeThem(self):
        """
        #108: a change made through the API and one made with the page's
        form are each logged as a C{member.admin} event naming who made it
        (the client's address) and what changed.
        """
        a, b = self.startMembers("app1", "app2")  # app2 serves while app1 drains
        self.startBalancer([a.url, b.url])
        self.startManager()
        events = captureEvents(self)
        code, _, _ = await self.call("POST", "api/balancers/test/members/app1", {"admin": "drain"})
        self.assertEqual(code, 200)
        (event,) = playbalancerEvents(events, "member.admin")
        self.assertEqual(
            (event["who"], event["change"], event["balancer"], event["member"]),
            ("127.0.0.1", {"admin": "drain"}, "test", "app1"),
        )
        code, page, _ = await self.call("GET", "")
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        form = b"balancer=test&member=app1&action=enable&csrf=" + token.encode()
        response = await self.api.request(
            "POST", self.managerURL + "actions", data=form,
            headers={b"Content-Type": [b"application/x-www-form-urlencoded"]},
            allow_redirects=False,
        )
        await response.content()
        self.assertEqual(response.code, 303)
        first, second = playbalancerEvents(events, "member.admin")
        self.assertEqual((second["who"], second["change"]), ("127.0.0.1", {"admin": "enabled"}))
        code, member, _ = await self.call("GET", "api/balancers/test/members/app1")
        texts = [e["text"] for e in member["events"]]
        self.assertIn("admin=enabled by 127.0.0.1", texts)
        self.assertIn("admin=drain by 127.0.0.1", texts)


class MemberUpEventTests(ManagerTestCase):
    async def test_memberUpAfterHealthChecksRecover(self):
        """
        #120: a member that fails its health checks is logged as
        C{member.down} with its reason; once its checks pass again,
        C{member.up}.
        """
        member = FaultMember(reactor, "ok", name="app1").start()
        self.addCleanup(member.stop)
        other = FaultMember(reactor, "ok", name="app2").start()
        self.addCleanup(other.stop)
        balancer = self.startBalancer([member.url, other.url], clock=reactor)
        balancer.activeChecks = True
        balancer.healthSettings = settings = HealthConfig(
            path="/health", interval=0.05, timeout=0.5, rise=2, fall=2
        )
        checker = makeHealthChecker(balancer, settings, reactor)
        checker.startService()
        self.addCleanup(checker.stopService)
        app1 = balancer.member("app1")
        await waitUntil(lambda: app1.checkPasses >= 2, reactor)
        events = captureEvents(self)
        member.behaviour = "status"  # 503: the checks fail
        await waitUntil(lambda: not app1.healthy, reactor)
        member.behaviour = "ok"
        await waitUntil(lambda: app1.healthy, reactor)
        kinds = [
            (e["playbalancer_event"], e.get("member"))
            for e in events
            if "playbalancer_event" in e
        ]
        self.assertEqual(kinds, [("member.down", "app1"), ("member.up", "app1")])
        (down,) = playbalancerEvents(events, "member.down")
        self.assertIn("503", down["reason"])
        (up,) = playbalancerEvents(events, "member.up")
        self.assertEqual(up["balancer"], "test")


class RollingMembersTests(ManagerTestCase):
    async def test_rollingRestartOnlyTheMembersNamed(self):
        """
        #155: C{rolling-restart --members app2} restarts app2 only: the
        command runs once, for app2; app1 and app3 are never drained.
        """
        from playbalancer.ctl.cli import run

        members = self.startMembers("app1", "app2", "app3")
        balancer = self.startBalancer([m.url for m in members], clock=reactor)
        balancer.activeChecks = True
        balancer.healthSettings = settings = HealthConfig(
            path="/health", interval=0.05, timeout=0.5, rise=2, fall=2
        )
        checker = makeHealthChecker(balancer, settings, reactor)
        checker.startService()
        self.addCleanup(checker.stopService)
        self.startManager()
        await waitUntil(lambda: all(m.checkPasses >= 2 for m in balancer.members), reactor)
        events = captureEvents(self)
        out, err = io.StringIO(), io.StringIO()
        code = await run(
            reactor,
            ["--manager", self.managerURL, "rolling-restart", "test", "--members", "app2",
             "--exec", 'echo "restart $PLAYBALANCER_MEMBER"'],
            stdout=out, stderr=err, environ={}, http=self.client(),
        )
        self.assertEqual(code, 0, err.getvalue())
        restarted = [line.split()[1] for line in out.getvalue().splitlines() if line.startswith("restart ")]
        self.assertEqual(restarted, ["app2"])
        changed = {e["member"] for e in playbalancerEvents(events, "member.admin")}
        self.assertEqual(changed, {"app2"})
        self.assertEqual([m.admin for m in balancer.members], ["enabled"] * 3)
        self.assertNotIn("app1", out.getvalue())
        self.assertNotIn("app3", out.getvalue())
