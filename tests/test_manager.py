"""
The manager over real sockets: JSON API, drain semantics, run-time members,
access control, anti-CSRF, escaping, and the state file.
"""

from __future__ import annotations

import base64
import json
import re

from twisted.internet import defer, reactor
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import TestCase

from playbalancer.manager.mount import ManagerMount
from playbalancer.http.routing import routesOf
from playbalancer.manager import ManagerRoot
from playbalancer.manager.guard import AccessPolicy
from playbalancer.manager.root import MAX_MANAGER_BODY, GuardedRequest, managerSite
from playbalancer.testing import closeAll, waitUntil

from tests.proxyharness import ProxyTestCase, servedBy

JSON = {b"Content-Type": [b"application/json"]}


class ManagerTestCase(ProxyTestCase):
    def startManager(self, allow=("127.0.0.0/8",), token=None, balancers=None):
        self.policy = AccessPolicy(list(allow), token, reactor)
        self.manager = ManagerRoot(
            balancers or {"test": self.balancer}, self.policy, reactor
        )
        factory = WrappingFactory(managerSite(self.manager, self.policy))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: closeAll(factory, reactor))
        self.managerURL = f"http://127.0.0.1:{port.getHost().port}/"
        self.api = self.client()

    async def call(self, method, path, body=None, headers=None, raw=None):
        """
        One manager request: C{(status, parsed JSON or text, response)}.
        """
        allHeaders = dict(JSON) if (body is not None or raw is not None) else {}
        allHeaders.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        response = await self.api.request(method, self.managerURL + path, data=data, headers=allHeaders)
        text = (await response.content()).decode("utf-8")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return response.code, parsed, response

    async def status(self):
        code, body, _ = await self.call("GET", "api/status")
        self.assertEqual(code, 200)
        return body["balancers"]["test"]["members"]


class ApiTests(ManagerTestCase):
    async def test_status(self):
        """
        C{GET api/status} lists every balancer and member with its state and
        counters, members in configured order.
        """
        a, b = self.startMembers("app1", "app2")
        self.startBalancer([a.url, b.url], scheduler="standby", standby={1})
        self.startManager()
        await self.fetch(self.client(), "/")
        code, body, response = await self.call("GET", "api/status")
        self.assertEqual(code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"application/json"])
        balancer = body["balancers"]["test"]
        self.assertEqual(list(balancer["members"]), ["app1", "app2"])
        app1, app2 = balancer["members"]["app1"], balancer["members"]["app2"]
        self.assertEqual(
            {k: app1[k] for k in ("url", "admin", "standby", "weight", "healthy", "active", "requests", "failures")},
            {"url": a.url, "admin": "enabled", "standby": False, "weight": 1, "healthy": True,
             "active": 0, "requests": 1, "failures": 0},
        )
        self.assertGreater(app1["bytes_in"], 0)
        self.assertIsNotNone(app1["latency_p95_ms"])
        self.assertEqual((app1["state"], app1["taking_traffic"]), ("serving", True))
        self.assertEqual((app2["state"], app2["standby"], app2["requests"]), ("standby", True, 0))

    async def test_drainKeepsInFlightRequest(self):
        """
        Draining a member with a slow request in flight lets that request
        finish normally while new requests go to the other member.
        """
        a, b = self.startMembers("app1", "app2")
        self.startBalancer([a.url, b.url], scheduler="standby")
        self.startManager()
        arrived = a.hold.arrival()
        slow = defer.ensureDeferred(self.fetch(self.client(), "/hold"))
        await arrived
        code, member, _ = await self.call("POST", "api/balancers/test/members/app1", {"admin": "drain"})
        self.assertEqual((code, member["admin"], member["active"]), (200, "drain", 1))
        self.assertEqual(member["state_text"], "draining: 1 in flight")
        client = self.client()
        for _ in range(3):
            response, _ = await self.fetch(client, "/")
            self.assertEqual(servedBy(response), "app2")
        a.hold.release()
        response, body = await slow
        self.assertEqual((response.code, body), (200, b"released\n"))
        members = await self.status()
        self.assertEqual((members["app1"]["active"], members["app1"]["state_text"]), (0, "draining: nothing in flight"))

    async def test_disableEnableWeightReset(self):
        """
        Disable takes a member out, enable brings it back, weight 0 gives it
        no new requests, reset forgets a failure.
        """
        a, b = self.startMembers("app1", "app2")
        balancer = self.startBalancer([a.url, b.url])
        self.startManager()
        client = self.client()
        path = "api/balancers/test/members/app1"
        code, member, _ = await self.call("POST", path, {"admin": "disabled"})
        self.assertEqual((code, member["admin"], member["taking_traffic"]), (200, "disabled", False))
        served = [servedBy((await self.fetch(client, "/"))[0]) for _ in range(4)]
        self.assertEqual(served, ["app2"] * 4)
        await self.call("POST", path, {"admin": "enabled", "weight": 0})
        served = [servedBy((await self.fetch(client, "/"))[0]) for _ in range(4)]
        self.assertEqual(served, ["app2"] * 4)
        await self.call("POST", path, {"weight": 1})
        served = {servedBy((await self.fetch(client, "/"))[0]) for _ in range(4)}
        self.assertEqual(served, {"app1", "app2"})
        balancer.memberFailed(balancer.member("app1"), "test failure")
        code, member, _ = await self.call("POST", path, {"reset": True})
        self.assertEqual((code, member["healthy"], member["down_reason"]), (200, True, None))

    async def test_addAndRemoveAtRuntime(self):
        """
        A member added with PUT gets traffic; PUT again is a conflict; a
        member removed with DELETE while a request is in flight stays until
        that request ends, and gets no new ones.
        """
        a, c = self.startMembers("app1", "app3")
        self.startBalancer([a.url])
        self.startManager()
        client = self.client()
        path = "api/balancers/test/members/app3"
        code, member, _ = await self.call("PUT", path, {"url": c.url, "weight": 1})
        self.assertEqual((code, member["name"], member["url"]), (201, "app3", c.url))
        code, error, _ = await self.call("PUT", path, {"url": c.url})
        self.assertEqual(code, 409)
        self.assertIn("exists", error["error"])
        served = [servedBy((await self.fetch(client, "/"))[0]) for _ in range(4)]
        self.assertEqual(sorted(served), ["app1", "app1", "app3", "app3"])
        arrived = defer.DeferredList([a.hold.arrival(), c.hold.arrival()], fireOnOneCallback=True)
        slow = defer.ensureDeferred(self.fetch(self.client(), "/hold"))
        await arrived
        holder = c if c.hold.held else a
        holderName = holder.name
        code, member, _ = await self.call("DELETE", f"api/balancers/test/members/{holderName}")
        self.assertEqual((code, member["removing"], member["active"]), (200, True, 1))
        code, member, _ = await self.call("DELETE", f"api/balancers/test/members/{holderName}")
        self.assertEqual((code, member["removing"]), (200, True))
        code, member, _ = await self.call("GET", f"api/balancers/test/members/{holderName}")
        self.assertEqual((code, member["state_text"]), (200, "removing: 1 in flight"))
        code, _, _ = await self.call("POST", f"api/balancers/test/members/{holderName}", {"admin": "enabled"})
        self.assertEqual(code, 404)
        members = await self.status()
        self.assertIn(holderName, members)
        other = "app1" if holderName == "app3" else "app3"
        served = [servedBy((await self.fetch(client, "/"))[0]) for _ in range(3)]
        self.assertEqual(served, [other] * 3)
        holder.hold.release()
        response, _ = await slow
        self.assertEqual(response.code, 200)
        members = await self.status()
        self.assertEqual(list(members), [other])
        code, _, _ = await self.call("GET", f"api/balancers/test/members/{holderName}")
        self.assertEqual(code, 404)

    async def test_errors(self):
        """
        Every refusal is JSON C{{"error": ...}} with the right status, and
        changes nothing.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager()
        member = "api/balancers/test/members/app1"
        cases = [
            ("POST", "api/balancers/nope/members/app1", {"admin": "drain"}, None, 404),
            ("POST", "api/balancers/test/members/nope", {"admin": "drain"}, None, 404),
            ("POST", "api/balancers/test/members/a%20b", {"admin": "drain"}, None, 400),
            ("POST", "api/balancers/test/members/%3Cscript%3E", {"admin": "drain"}, None, 400),
            ("POST", member, {"admin": "maybe"}, None, 400),
            ("POST", member, {"weight": -1}, None, 400),
            ("POST", member, {"weight": "3"}, None, 400),
            ("POST", member, {"standby": "yes"}, None, 400),
            ("POST", member, {"colour": "red"}, None, 400),
            ("POST", member, [1, 2], None, 400),
            ("POST", member, None, b"{not json", 400),
            ("PATCH", member, {"admin": "drain"}, None, 405),
            ("POST", "api/status", {}, None, 405),
            ("PUT", "api/balancers/test/members/app9", {"url": "ftp://x"}, None, 400),
            ("PUT", "api/balancers/test/members/app9", {}, None, 400),
            # A request line injected through the URL (CR, LF, spaces).
            (
                "PUT",
                "api/balancers/test/members/app9",
                {"url": "http://127.0.0.1:18999/echo HTTP/1.1\r\nX-Injected: yes\r\nX-Pad:"},
                None,
                400,
            ),
            ("PUT", "api/balancers/test/members/app9", {"url": "http://127.0.0.1:1/a b"}, None, 400),
            ("PUT", "api/balancers/test/members/app9", {"url": "http://127.0.0.1:1/%zz"}, None, 400),
            ("GET", "api/nothing", None, None, 404),
        ]
        for method, path, body, raw, expected in cases:
            code, answer, _ = await self.call(method, path, body, raw=raw)
            self.assertEqual(code, expected, (method, path, body, answer))
            self.assertIsInstance(answer.get("error"), str, answer)
        code, answer, _ = await self.call(
            "POST", member, raw=b'{"admin": "drain"}', headers={b"Content-Type": [b"text/plain"]}
        )
        self.assertEqual(code, 415)
        members = await self.status()
        self.assertEqual((members["app1"]["admin"], members["app1"]["weight"]), ("enabled", 1))
        self.assertEqual(list(members), ["app1"])


class GuardedBodyTests(TestCase):
    """
    L{GuardedRequest}: a manager request's body is stored only for a
    client the allow-list lets in.
    """

    def request(self, allow):
        from twisted.web.test.requesthelper import DummyChannel

        policy = AccessPolicy(allow, None, reactor)
        channel = DummyChannel()  # the client is 192.168.1.1
        return GuardedRequest(channel, policy=policy)

    def test_bodyOfAClientNotAllowedIsDropped(self):
        request = self.request(["127.0.0.0/8"])
        request.gotLength(10_000_000)
        for _ in range(100):
            request.handleContentChunk(b"x" * 100_000)
        request.content.seek(0)
        self.assertEqual(request.content.read(), b"")

    def test_bodyOfAnAllowedClientIsKept(self):
        request = self.request(["192.168.1.0/24"])
        request.gotLength(6)
        request.handleContentChunk(b"drain!")
        request.content.seek(0)
        self.assertEqual(request.content.read(), b"drain!")
        self.assertFalse(request.bodyTooLarge)

    def test_declaredLengthOverTheLimit(self):
        request = self.request(["192.168.1.0/24"])
        request.gotLength(MAX_MANAGER_BODY + 1)
        self.assertTrue(request.bodyTooLarge)
        request.handleContentChunk(b"x" * 1000)
        request.content.seek(0)
        self.assertEqual(request.content.read(), b"")

    def test_chunkedBodyOverTheLimit(self):
        """
        A body of unknown length is kept until it passes the limit, then
        dropped.
        """
        request = self.request(["192.168.1.0/24"])
        request.gotLength(None)
        piece = b"x" * 65536
        for _ in range(MAX_MANAGER_BODY // len(piece)):
            request.handleContentChunk(piece)
        self.assertFalse(request.bodyTooLarge)
        request.handleContentChunk(b"y")
        self.assertTrue(request.bodyTooLarge)
        request.content.seek(0)
        self.assertEqual(request.content.read(), b"")


class ProtectionTests(ManagerTestCase):
    async def test_bodyTooLarge(self):
        """
        An allowed client's body over the limit gets 413 and changes
        nothing.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager()
        padding = " " * MAX_MANAGER_BODY
        code, answer, _ = await self.call(
            "POST", "api/balancers/test/members/app1", raw=b'{"admin": "drain"}' + padding.encode()
        )
        self.assertEqual(code, 413, answer)
        self.assertIn("over", answer["error"])
        self.assertEqual(self.balancer.member("app1").admin, "enabled")

    async def test_addressNotAllowed(self):
        """
        A client outside C{allow} gets 403, whatever it asks.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager(allow=["127.0.0.2"])
        for method, path, body in [("GET", "", None), ("GET", "api/status", None),
                                   ("POST", "api/balancers/test/members/app1", {"admin": "drain"})]:
            code, answer, _ = await self.call(method, path, body)
            self.assertEqual(code, 403, path)
            self.assertIn("not allowed", answer["error"])
        self.assertEqual(self.balancer.member("app1").admin, "enabled")

    async def test_token(self):
        """
        With a token, requests need it as a bearer token or as the basic
        auth password.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager(token="s3cret")
        code, _, response = await self.call("GET", "api/status")
        self.assertEqual(code, 401)
        self.assertTrue(response.headers.hasHeader(b"www-authenticate"))
        code, _, _ = await self.call("GET", "api/status", headers={b"Authorization": [b"Bearer wrong"]})
        self.assertEqual(code, 401)
        code, _, _ = await self.call("GET", "api/status", headers={b"Authorization": [b"Bearer s3cret"]})
        self.assertEqual(code, 200)
        basic = b"Basic " + base64.b64encode(b"admin:s3cret")
        code, _, _ = await self.call("GET", "", headers={b"Authorization": [basic]})
        self.assertEqual(code, 200)

    async def _page(self):
        code, page, response = await self.call("GET", "")
        self.assertEqual(code, 200)
        return page, response

    def _form(self, action, csrf, member="app1", extra=b""):
        body = b"balancer=test&member=" + member.encode() + b"&action=" + action.encode()
        if csrf is not None:
            body += b"&csrf=" + csrf.encode()
        return body + extra

    async def _post(self, body, origin=None):
        headers = {b"Content-Type": [b"application/x-www-form-urlencoded"]}
        if origin:
            headers[b"Origin"] = [origin]
        response = await self.api.request("POST", self.managerURL + "actions", data=body,
                                          headers=headers, allow_redirects=False)
        await response.content()
        return response

    async def test_formNeedsCsrfToken(self):
        """
        A form post without the anti-CSRF token, with a forged one, or from
        another site is refused with 403 and changes nothing; with the
        page's token it works and redirects back to the page.
        """
        a, b = self.startMembers("app1", "app2")  # app2 serves while app1 drains
        self.startBalancer([a.url, b.url])
        self.startManager()
        page, _ = await self._page()
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        for body, origin in [
            (self._form("drain", None), None),
            (self._form("drain", forged), None),
            (self._form("drain", "123.abc.def"), None),
            (self._form("drain", token), b"http://evil.example"),
        ]:
            response = await self._post(body, origin)
            self.assertEqual(response.code, 403, body)
            self.assertEqual(self.balancer.member("app1").admin, "enabled")
        response = await self._post(self._form("drain", token))
        self.assertEqual(response.code, 303)
        self.assertEqual(response.headers.getRawHeaders(b"location"), [b"./"])
        self.assertEqual(self.balancer.member("app1").admin, "drain")

    async def test_getNeverChangesState(self):
        """
        State changes only by POST, PUT and DELETE: a GET of the actions
        is refused.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager()
        page, _ = await self._page()
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        code, _, _ = await self.call("GET", "actions?" + self._form("drain", token).decode())
        self.assertEqual(code, 405)
        self.assertEqual(self.balancer.member("app1").admin, "enabled")

    async def test_securityHeadersAndNoCors(self):
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager()
        for path in ["", "api/status", "static/manager.js"]:
            code, _, response = await self.call("GET", path, headers={b"Origin": [b"http://evil.example"]})
            self.assertEqual(code, 200, path)
            csp = response.headers.getRawHeaders(b"content-security-policy")[0]
            self.assertIn(b"frame-ancestors 'none'", csp)
            self.assertEqual(response.headers.getRawHeaders(b"x-content-type-options"), [b"nosniff"])
            self.assertFalse(response.headers.hasHeader(b"access-control-allow-origin"))

    async def test_pageCharset(self):
        """
        The page says its charset in C{Content-Type}, not only in a meta tag.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager()
        code, _, response = await self.call("GET", "")
        self.assertEqual(code, 200)
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"), [b"text/html; charset=utf-8"]
        )

    async def test_markupEscapedOrRejected(self):
        """
        A member name or URL with markup is rejected; what may be in a URL
        and means something in HTML (C{&}, C{'}) is shown escaped.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager()
        code, _, _ = await self.call("PUT", "api/balancers/test/members/%3Cb%3E", {"url": a.url})
        self.assertEqual(code, 400)
        hostile = a.url + "/<script>alert(1)</script>"
        code, _, _ = await self.call("PUT", "api/balancers/test/members/odd", {"url": hostile})
        self.assertEqual(code, 400)
        odd = a.url + "/a&amp;b'c"
        code, _, _ = await self.call("PUT", "api/balancers/test/members/odd", {"url": odd})
        self.assertEqual(code, 201)
        page, _ = await self._page()
        self.assertNotIn("/a&amp;b'c", page)
        self.assertIn("/a&amp;amp;b", page)

    async def test_mountedUnderFrontListener(self):
        """
        With C{manager_path}, the front listener serves the manager under
        that path (never proxied) and proxies everything else.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager()
        self.front.routes = routesOf(self.front.proxy, ManagerMount("/balancer-manager", self.manager))
        front = self.base
        client = self.client()
        response = await client.get(front + "/balancer-manager/api/status")
        body = json.loads(await response.content())
        self.assertIn("test", body["balancers"])
        response = await client.get(front + "/balancer-manager", allow_redirects=False)
        await response.content()
        self.assertEqual(response.code, 302)
        self.assertEqual(response.headers.getRawHeaders(b"location")[0].split(b"/", 3)[3], b"balancer-manager/")
        response = await client.get(front + "/balancer-manager-not/x")
        await response.content()
        self.assertEqual(response.code, 404)
        self.assertEqual([r.uri for r in a.seen], [b"/balancer-manager-not/x"])


class BehindAProxyTests(ManagerTestCase):
    """
    Behind a local proxy (a TLS terminator, say) every client looks local:
    manager requests that a proxy passed on are refused unless the manager
    has a token, or the listener trusts that proxy and the client it names
    passes the allow-list.
    """

    async def mounted(self, trustedProxies=()):
        import ipaddress

        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager()
        networks = [ipaddress.ip_network(n) for n in trustedProxies]
        mount = ManagerMount("/balancer-manager", self.manager, networks)
        self.front.routes = routesOf(self.front.proxy, mount)
        return self.client(persistent=False)

    async def get(self, client, headers):
        response = await client.get(
            self.base + "/balancer-manager/api/status", headers=headers
        )
        await response.content()
        return response.code

    async def test_forwardedRefusedWithoutToken(self):
        client = await self.mounted()
        for name, value in [
            (b"X-Forwarded-For", b"203.0.113.9"),
            (b"Forwarded", b"for=203.0.113.9;proto=https"),
            (b"X-Real-IP", b"203.0.113.9"),
            (b"X-Forwarded-For", b"127.0.0.1"),
        ]:
            self.assertEqual(await self.get(client, {name: [value]}), 403, name)
        self.assertEqual(await self.get(client, {}), 200)

    async def test_trustedProxyForAllowedClient(self):
        client = await self.mounted(trustedProxies=["127.0.0.0/8"])
        self.assertEqual(await self.get(client, {b"X-Forwarded-For": [b"127.0.0.5"]}), 200)
        self.assertEqual(
            await self.get(client, {b"Forwarded": [b'for="127.0.0.9:4711";proto=https']}), 200
        )
        # The allow-list here is 127.0.0.0/8 only.
        self.assertEqual(
            await self.get(client, {b"Forwarded": [b'for="[::1]:4711";proto=https']}), 403
        )
        self.assertEqual(await self.get(client, {b"X-Forwarded-For": [b"203.0.113.9"]}), 403)
        self.assertEqual(await self.get(client, {b"X-Forwarded-For": [b"junk"]}), 403)

    async def test_everyForwardedAddressMustPass(self):
        """
        A client cannot pick which header counts: when any forwarding
        header names an address outside the allow-list (a proxy that sets
        X-Real-IP and passes the client's own X-Forwarded-For on), the
        request is refused.
        """
        client = await self.mounted(trustedProxies=["127.0.0.0/8"])
        for headers in [
            {b"X-Forwarded-For": [b"127.0.0.1"], b"X-Real-IP": [b"203.0.113.9"]},
            {b"X-Forwarded-For": [b"127.0.0.1"], b"Forwarded": [b"for=203.0.113.9"]},
            {b"x-forwarded-for": [b"127.0.0.1", b"203.0.113.9"]},
            {b"X-Forwarded-For": [b"203.0.113.9, 127.0.0.1"]},
            {b"Forwarded": [b"for=127.0.0.1, for=203.0.113.9"]},
            {b"Forwarded": [b"for=unknown"]},
            {b"Forwarded": [b"proto=https"]},
        ]:
            self.assertEqual(await self.get(client, headers), 403, headers)
        both = {b"X-Forwarded-For": [b"127.0.0.2"], b"X-Real-IP": [b"127.0.0.2"]}
        self.assertEqual(await self.get(client, both), 200)

    async def test_tokenStillWorks(self):
        client = await self.mounted()
        self.manager.policy.token = "s3cret"
        headers = {b"X-Forwarded-For": [b"203.0.113.9"], b"Authorization": [b"Bearer s3cret"]}
        self.assertEqual(await self.get(client, headers), 200)
        self.assertEqual(await self.get(client, {b"X-Forwarded-For": [b"203.0.113.9"]}), 401)


class LiveCLITests(ManagerTestCase):
    async def test_cliAgainstRealManager(self):
        """
        The C{playbalancer} command against the real manager: status, drain
        with --wait while a request is in flight, enable, weight, add,
        remove, and a one-line error for an unknown member.
        """
        import io

        from playbalancer.ctl.cli import run

        a, b = self.startMembers("app1", "app2")
        balancer = self.startBalancer([a.url, b.url], scheduler="standby")
        self.startManager()
        http = self.client()

        async def cli(*argv):
            out, err = io.StringIO(), io.StringIO()
            code = await run(reactor, ["--manager", self.managerURL] + list(argv),
                             stdout=out, stderr=err, environ={}, http=http)
            return code, out.getvalue(), err.getvalue()

        code, out, _ = await cli("status")
        self.assertEqual(code, 0)
        self.assertIn("app1", out)
        self.assertIn(a.url, out)
        arrived = a.hold.arrival()
        slow = defer.ensureDeferred(self.fetch(self.client(), "/hold"))
        await arrived
        draining = defer.ensureDeferred(cli("drain", "test/app1", "--wait", "--timeout", "30"))
        await waitUntil(lambda: balancer.member("app1").admin == "drain", reactor)
        done = []
        draining.addCallback(lambda result: done.append(result) or result)
        await defer.succeed(None)
        self.assertEqual(done, [])
        a.hold.release()
        await slow
        code, out, err = await draining
        self.assertEqual(code, 0, err)
        self.assertIn("drained", out)
        self.assertEqual((await cli("enable", "test/app1"))[0], 0)
        self.assertEqual((await cli("weight", "test/app2", "3"))[0], 0)
        self.assertEqual(balancer.member("app2").configuredWeight, 3)
        (c,) = self.startMembers("app3")
        self.assertEqual((await cli("add", "test/app3", c.url))[0], 0)
        self.assertEqual(balancer.member("app3").url, c.url)
        self.assertEqual((await cli("remove", "test/app3"))[0], 0)
        self.assertIsNone(balancer.member("app3"))
        code, out, err = await cli("drain", "test/nope")
        self.assertEqual(code, 1)
        self.assertEqual(len(err.strip().splitlines()), 1)
        self.assertIn("nope", err)


class RebindingTests(ManagerTestCase):
    async def test_foreignHostNameRefused(self):
        """
        A request naming another site in Host (a DNS-rebinding attack from a
        browser on this machine) is refused and changes nothing; IP
        addresses, localhost and the configured names pass.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        self.startManager()
        self.policy.hosts.add("lb.example.org")
        evil = {b"Host": [b"evil.example:8081"], b"Origin": [b"http://evil.example:8081"]}
        code, answer, _ = await self.call("PUT", "api/balancers/test/members/x",
                                          {"url": "http://203.0.113.7:80"}, headers=evil)
        self.assertEqual(code, 403)
        self.assertIn("evil.example", answer["error"])
        code, _, _ = await self.call("GET", "api/status", headers={b"Host": [b"evil.example"]})
        self.assertEqual(code, 403)
        self.assertIsNone(self.balancer.member("x"))
        for host in [b"localhost:8081", b"[::1]:8081", b"127.0.0.1", b"LB.example.org:443"]:
            code, _, _ = await self.call("GET", "api/status", headers={b"Host": [host]})
            self.assertEqual(code, 200, host)
