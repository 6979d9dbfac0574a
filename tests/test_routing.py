"""
Routes on a listener over real sockets: which route a request takes (host
precedence, wildcards, longest prefix on segment boundaries, absolute-form
targets), what each kind of route does (a balancer with strip_prefix, the
manager, answers and redirects of our own), who may reach a route, and the
counters and access log that name it.
"""

from __future__ import annotations

import json

from twisted.internet import defer, reactor, task

from playbalancer.testing import waitUntil
from tests.routeharness import RoutedTestCase, members, servedBy

LISTEN = """
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
"""


def hostSeen(echoed):
    return [value for name, value in json.loads(echoed)["headers"] if name.lower() == "host"]


def route(**keys):
    lines = ["[[listen.route]]"]
    for key, value in keys.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


class ChoiceTests(RoutedTestCase):
    """
    Which route a request takes.
    """

    async def hosts(self):
        a, b, c, d = self.startMembers("exact", "wild", "longwild", "any")
        await self.startConfig(
            LISTEN
            + route(host="www.example.test", balancer="exact")
            + route(host="*.example.test", balancer="wild")
            + route(host="*.api.example.test", balancer="longwild")
            + route(balancer="any")
            + members(a, balancer="exact")
            + members(b, balancer="wild")
            + members(c, balancer="longwild")
            + members(d, balancer="any")
        )

    async def test_hostPrecedence(self):
        """
        An exact name beats a wildcard, the longest wildcard beats a
        shorter one, and a route without a host takes the rest.
        """
        await self.hosts()
        cases = {
            "www.example.test": "exact",
            "img.example.test": "wild",
            "v1.api.example.test": "longwild",
            "api.example.test": "wild",
            "example.test": "any",
            "other.test": "any",
        }
        for host, expected in cases.items():
            response, body = await self.get("/", host=host)
            self.assertEqual((host, response.code, servedBy(response)), (host, 200, expected))

    async def test_hostCaseAndPort(self):
        """
        I{Host} is matched without regard to case, without its port, and
        without a final dot.
        """
        await self.hosts()
        for host in ("WWW.Example.TEST", "www.example.test:8080", "www.example.test."):
            response, _ = await self.get("/", host=host)
            self.assertEqual(servedBy(response), "exact", host)

    async def test_absoluteFormAuthorityIsTheHost(self):
        """
        The authority of an absolute-form target is the host a request is
        for, whatever its I{Host} says.
        """
        await self.hosts()
        answer = await self.raw(
            b"GET http://www.example.test/ HTTP/1.1\r\nHost: other.test\r\n"
            b"Connection: close\r\n\r\n"
        )
        self.assertIn(b"X-Served-By: exact", answer.replace(b"x-served-by", b"X-Served-By"))

    async def test_longestPrefixOnSegments(self):
        """
        The longest path prefix wins, matched on whole segments: C{/app}
        takes C{/app}, C{/app/} and C{/app/x}, never C{/application}.
        """
        app, api, rest = self.startMembers("app", "api", "rest")
        await self.startConfig(
            LISTEN
            + route(path="/app", balancer="app")
            + route(path="/app/api/", balancer="api")
            + route(path="/", balancer="rest")
            + members(app, balancer="app")
            + members(api, balancer="api")
            + members(rest, balancer="rest")
        )
        cases = {
            "/app": "app",
            "/app/": "app",
            "/app/x?y=1": "app",
            "/app/api": "api",
            "/app/api/v1": "api",
            "/app/apis": "app",
            "/application": "rest",
            "/": "rest",
        }
        servers = {"app": app, "api": api, "rest": rest}
        for path, expected in cases.items():
            await self.get(path)
            got = [name for name, server in servers.items() if server.paths[-1:] == [path.encode()]]
            self.assertEqual((path, got), (path, [expected]))
            servers[expected].seen.clear()

    async def test_pathWrittenAnotherWay(self):
        """
        A path with dot segments, repeated slashes or escaped unreserved
        characters takes the route a member would see it under (as nginx
        matches locations); one that climbs above the root is refused.
        """
        app, rest = self.startMembers("app", "rest")
        await self.startConfig(
            LISTEN
            + route(path="/admin", balancer="app", allow=["192.0.2.1"])
            + route(path="/", balancer="rest")
            + members(app, balancer="app")
            + members(rest, balancer="rest")
        )
        for path in (b"/x/../admin", b"//admin", b"/%61dmin", b"/./admin/"):
            answer = await self.raw(b"GET " + path + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            self.assertTrue(answer.startswith(b"HTTP/1.1 403 "), (path, answer))
        answer = await self.raw(b"GET /../x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer)
        # Paths that lax members read as /admin/... (WSGI decodes %2F,
        # Tomcat drops ;parameters, IIS takes \ for /) are refused as
        # ambiguous: they would slip past /admin's allow list.
        for path in (
            b"/admin%2Fusers",
            b"/admin%2fusers",
            b"/admin;x/users",
            b"/x/..;/admin/users",
            b"/admin%5Cusers",
            b"/public%2F..%2Fadmin",
        ):
            answer = await self.raw(b"GET " + path + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), (path, answer))
        # Escapes that read the same way to every member are served.
        response, _ = await self.get("/a%20b;c/%2e/")
        self.assertEqual(rest.paths, [b"/a%20b;c/%2e/"])
        self.assertEqual(app.paths, [])

    async def test_noFallThroughAcrossHosts(self):
        """
        A host whose routes have no prefix for a path gets a 404 of ours,
        not another host's route (as in nginx); the members see nothing.
        """
        a, b = self.startMembers("a", "b")
        await self.startConfig(
            LISTEN
            + route(host="a.test", path="/only", balancer="a")
            + route(path="/", balancer="b")
            + members(a, balancer="a")
            + members(b, balancer="b")
        )
        response, body = await self.get("/other", host="a.test")
        self.assertEqual((response.code, body), (404, b"Not Found: no route for this host and path\n"))
        self.assertEqual(a.paths + b.paths, [])
        front = self.service.listeners[0][1]
        self.assertEqual(front.noRoute.hits, 1)


class TargetTests(RoutedTestCase):
    """
    What each kind of route does.
    """

    async def test_stripPrefix(self):
        """
        With C{strip_prefix}, C{/app} of the public site is C{/} of the
        members, and their Location and Content-Location come back under
        C{/app} (C{ProxyPass /app balancer://c/} + C{ProxyPassReverse}).
        """
        (app,) = self.startMembers("app1")
        await self.startConfig(
            LISTEN + route(path="/app", balancer="web", strip_prefix=True) + members(app)
        )
        response, body = await self.get("/app/echo?x=1", host="site.test")
        self.assertEqual(json.loads(body)["uri"], "/echo?x=1")
        await self.get("/app", host="site.test")
        await self.get("/app?q", host="site.test")
        self.assertEqual(app.paths[1:], [b"/", b"/?q"])
        response, _ = await self.get("/app/redirect", host="site.test")
        self.assertEqual(response.code, 302)
        self.assertEqual(response.headers.getRawHeaders(b"location"), [b"http://site.test/app/"])
        response, _ = await self.get("/app/headers", host="site.test")
        self.assertEqual(
            response.headers.getRawHeaders(b"content-location"), [b"http://site.test/app/c"]
        )
        # A path written another way loses the prefix as it was matched.
        await self.raw(b"GET //app/./x/../echo?z HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        self.assertEqual(app.paths[-1], b"/echo?z")

    async def test_answers(self):
        """
        A C{status} route answers by itself, reading and dropping a body
        and keeping the connection; a C{redirect} route sends the rest of
        the path and the query after its URL.
        """
        (app,) = self.startMembers("app1")
        await self.startConfig(
            LISTEN
            + route(path="/gone", status=410)
            + route(path="/old", redirect="https://new.example/docs/", status=301)
            + route(path="/", balancer="web")
            + members(app)
        )
        answer = await self.raw(
            b"POST /gone HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /old/a/b?c=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        )
        first, _, second = answer.partition(b"HTTP/1.1 301 ")
        self.assertTrue(first.startswith(b"HTTP/1.1 410 Gone\r\n"), answer)
        self.assertIn(b"Location: https://new.example/docs/a/b?c=1\r\n", second)
        self.assertEqual(app.paths, [])

    async def test_redirectKeepsItsHost(self):
        """
        Whatever the client writes before a redirect route's prefix (dot
        segments, slashes, an @), the Location stays on the route's host:
        the rest comes from the path as matched.
        """
        (app,) = self.startMembers("app1")
        await self.startConfig(
            LISTEN
            + route(path="/old", redirect="https://new.example", status=301)
            + route(path="/", balancer="web")
            + members(app)
        )
        cases = {
            b"/abc@evil.test/../old": b"https://new.example",
            b"/x.evil.test/../old/a?q=1": b"https://new.example/a?q=1",
            b"//old/x": b"https://new.example/x",
        }
        for target, expected in cases.items():
            answer = await self.raw(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            self.assertIn(b"\r\nLocation: " + expected + b"\r\n", answer, target)

    async def test_managerRoute(self):
        """
        A C{manager = true} route serves the manager under its path on the
        route's host (C{ProxyPass /balancer-manager !}); the same path on
        another host goes to the members.
        """
        (app,) = self.startMembers("app1")
        await self.startConfig(
            LISTEN
            + route(host="site.test", path="/balancer-manager", manager=True)
            + route(balancer="web")
            + members(app)
            + '[manager]\nendpoint = "tcp:0:interface=127.0.0.1"\n'
        )
        response, body = await self.get("/balancer-manager/api/status", host="site.test")
        self.assertEqual(response.code, 200, body)
        self.assertIn("web", json.loads(body)["balancers"])
        await self.get("/balancer-manager/api/status", host="other.test")
        # The manager gets the path the route matched, in origin form.
        for target in (b"http://site.test/balancer-manager/api/status", b"/x/../balancer-manager/api/status"):
            answer = await self.raw(
                b"GET " + target + b" HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n"
            )
            self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), (target, answer[:200]))
        self.assertEqual(app.paths, [b"/balancer-manager/api/status"])

    async def test_routeSettings(self):
        """
        A route's C{preserve_host} and C{max_body} apply to its requests
        only.
        """
        (app,) = self.startMembers("app1")
        await self.startConfig(
            LISTEN
            + route(path="/small", balancer="web", max_body=4, preserve_host=False, strip_prefix=True)
            + route(path="/", balancer="web", name="rest")
            + members(app)
        )
        response, body = await self.get("/small/echo", host="site.test")
        self.assertEqual(hostSeen(body), [f"127.0.0.1:{app.port}"])
        response, body = await self.get("/echo", host="site.test")
        self.assertEqual(hostSeen(body), ["site.test"])
        response, _ = await self.get("/small/echo", method="POST", data=b"12345")
        self.assertEqual(response.code, 413)
        response, _ = await self.get("/echo", method="POST", data=b"12345")
        self.assertEqual(response.code, 200)

    async def test_routeTimeout(self):
        """
        A route's timeout bounds its member's answer (504), not the other
        routes' to the same balancer.
        """
        (app,) = self.startMembers("app1")
        self.addCleanup(app.hold.release)
        await self.startConfig(
            LISTEN
            + route(path="/quick", balancer="web", timeout=0.2, strip_prefix=True)
            + route(path="/", balancer="web")
            + members(app)
        )
        response, _ = await self.get("/quick/hold")
        self.assertEqual(response.code, 504)
        await waitUntil(lambda: len(app.hold.cancelled) == 1, reactor)
        arrived = app.hold.arrival()
        waiting = defer.ensureDeferred(self.get("/hold"))
        await arrived
        await task.deferLater(reactor, 0.4, lambda: None)
        self.assertFalse(waiting.called)
        app.hold.release()
        response, _ = await waiting
        self.assertEqual(response.code, 200)

    async def test_maxBodyEverywhere(self):
        """
        A route's max_body may be larger than the listener's; requests no
        route takes keep the listener's.
        """
        (app,) = self.startMembers("app1")
        await self.startConfig(
            LISTEN.replace('"\n', '"\nmax_body = 4\n', 1)
            + route(host="big.test", path="/", balancer="web", max_body=100)
            + route(host="small.test", path="/", balancer="web")
            + members(app)
        )
        response, _ = await self.get("/echo", host="big.test", method="POST", data=b"x" * 50)
        self.assertEqual(response.code, 200)
        response, _ = await self.get("/echo", host="small.test", method="POST", data=b"x" * 50)
        self.assertEqual(response.code, 413)
        response, _ = await self.get("/echo", host="none.test", method="POST", data=b"x" * 50)
        self.assertEqual(response.code, 413)
        self.assertEqual(len(app.paths), 1)


class AccessTests(RoutedTestCase):
    """
    A route's C{allow} list.
    """

    async def test_addressRules(self):
        """
        A client whose address is not on a route's list gets a 403 and its
        request reaches no member; one on it passes.
        """
        a, b = self.startMembers("a", "b")
        await self.startConfig(
            LISTEN
            + route(path="/closed", balancer="a", allow=["10.0.0.0/8", "192.0.2.1"])
            + route(path="/open", balancer="b", allow=["127.0.0.0/8"], strip_prefix=True)
            + members(a, balancer="a")
            + members(b, balancer="b")
        )
        response, body = await self.get("/closed/x", method="POST", data=b"body")
        self.assertEqual(response.code, 403, body)
        response, _ = await self.get("/open/")
        self.assertEqual(response.code, 200)
        self.assertEqual((a.paths, b.paths), ([], [b"/"]))
        routes = self.service.listeners[0][1].routes
        closed = [t for t in routes.targets if t.path == "/closed"][0]
        self.assertEqual((closed.hits, closed.denied), (1, 1))


    async def test_behindTrustedProxies(self):
        """
        Behind a trusted proxy, the allow list checks the client the proxy
        names (the last address not itself trusted); none named: 403.
        """
        (app,) = self.startMembers("app1")
        await self.startConfig(
            LISTEN
            + 'trusted_proxies = ["127.0.0.0/8"]\n'
            + route(path="/", balancer="web", allow=["192.0.2.1"])
            + members(app)
        )
        cases = [
            (None, 403),
            ("192.0.2.1", 200),
            ("192.0.2.1, 198.51.100.1", 403),
            ("198.51.100.1, 192.0.2.1", 200),
            ("192.0.2.1, 127.0.0.5", 200),
        ]
        for forwarded, expected in cases:
            headers = {b"X-Forwarded-For": [forwarded.encode()]} if forwarded else {}
            response, _ = await self.get("/", headers=headers)
            self.assertEqual((forwarded, response.code), (forwarded, expected))


class LogTests(RoutedTestCase):
    async def test_accessLogNamesTheRoute(self):
        """
        The access log line of a request names its route, and shows the
        target as the client sent it (before C{strip_prefix}).
        """
        (app,) = self.startMembers("app1")
        log = self.mktemp()
        await self.startConfig(
            LISTEN.replace("\n[[listen]]\n", "\n[[listen]]\n")
            + f'access_log = "{log}"\n'
            + route(name="shop", path="/shop", balancer="web", strip_prefix=True)
            + route(name="closed", path="/closed", balancer="web", allow=["192.0.2.1"])
            + members(app)
        )
        await self.get("/shop/echo")
        await self.get("/closed/x")
        front = self.service.listeners[0][1]
        front.accessLog.flush()
        await waitUntil(lambda: open(log).read(), reactor)
        await waitUntil(lambda: open(log).read().count("\n") == 2, reactor)
        first, second = open(log).read().splitlines()
        self.assertIn('"GET /shop/echo HTTP/1.1" 200', first)
        self.assertTrue(first.endswith("route=shop"), first)
        # A request its route's allow list refused: a request's line too.
        self.assertIn('"GET /closed/x HTTP/1.1" 403', second)
        self.assertTrue(second.endswith("route=closed"), second)


class ShownTests(RoutedTestCase):
    """
    The manager and the metrics show the routes and their counters.
    """

    async def test_statusPageAndMetrics(self):
        (app,) = self.startMembers("app1")
        await self.startConfig(
            LISTEN
            + route(name="site", host="site.test", balancer="web")
            + route(name="gone", path="/gone", status=410)
            + members(app)
            + '[manager]\nendpoint = "tcp:0:interface=127.0.0.1"\n'
        )
        await self.get("/", host="site.test")
        await self.get("/", host="site.test")
        await self.get("/gone/x", host="other.test")
        await self.get("/", host="other.test")
        manager = f"http://127.0.0.1:{self.ports[-1].getHost().port}"
        response = await self.client().get(manager + "/api/status")
        status = json.loads(await response.content())
        (listener,) = status["listeners"]
        self.assertEqual(
            [(r["name"], r["host"], r["path"], r["target"], r["hits"], r["responses"]) for r in listener["routes"]],
            [
                ("site", "site.test", "/", "balancer web", 2, {"2xx": 2}),
                ("gone", None, "/gone", "answer 410", 1, {"4xx": 1}),
                ("-", None, "/", "no route: answer 404", 1, {"4xx": 1}),
            ],
        )
        response = await self.client().get(manager + "/metrics")
        metrics = (await response.content()).decode()
        self.assertIn('playbalancer_route_requests_total{listener="tcp:0",route="site"} 2.0', metrics)
        self.assertIn(
            'playbalancer_route_responses_total{code="4xx",listener="tcp:0",route="gone"} 1.0', metrics
        )
        response = await self.client().get(manager + "/")
        page = (await response.content()).decode()
        self.assertIn("routes of tcp:0", page)
        self.assertIn('<td data-label="host">site.test</td>', page)


class NameRuleTests(RoutedTestCase):
    """
    Host-name C{allow} rules over a real DNS server.
    """

    async def test_pipelinedWhileLookingUp(self):
        """
        Requests pipelined behind one whose client is being looked up wait
        for it and are served in order once the lookup allows it.
        """
        from playbalancer.testing.dns import MemoryAuthority, listenDNS

        (app,) = self.startMembers("app1")
        authority = MemoryAuthority(
            pointers={"127.0.0.1": ["me.example.test"]}, addresses={"me.example.test": ["127.0.0.1"]}
        )
        port, server = listenDNS(reactor, authority=authority)
        self.addCleanup(port.stopListening)
        await self.startConfig(
            LISTEN
            + route(balancer="web", allow=[".example.test"])
            + members(app)
            + f'[resolver]\nservers = ["{server}"]\n'
        )
        answer = await self.raw(
            b"GET /echo?1 HTTP/1.1\r\nHost: h\r\n\r\n"
            b"GET /echo?2 HTTP/1.1\r\nHost: h\r\n\r\n"
            b"GET /echo?3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        )
        self.assertEqual(answer.count(b"HTTP/1.1 200 OK"), 3, answer)
        self.assertEqual(app.paths, [b"/echo?1", b"/echo?2", b"/echo?3"])
        # One lookup (PTR, then A) for all three: the verdict is cached.
        self.assertEqual([kind for kind, _ in authority.queries], ["PTR", "A"])
