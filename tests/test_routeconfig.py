"""
The C{[[listen.route]]} tables: what they build, and bad routes stopping
start-up with one line naming the key.
"""

from __future__ import annotations

import copy

from twisted.trial.unittest import SynchronousTestCase

from playbalancer.config import ConfigError, RouteConfig, parseConfig
from playbalancer.schedulers import availableSchedulers

SCHEDULERS = availableSchedulers()

BASE = {
    "listen": [
        {
            "endpoint": "tcp:80",
            "route": [
                {"host": "mysuperwebapp.com", "path": "/balancer-manager", "manager": True},
                {"host": "mysuperwebapp.com", "path": "/", "balancer": "mycluster"},
                {"path": "/", "status": 404},
            ],
        }
    ],
    "manager": {},
    "balancer": {"mycluster": {"member": [{"name": "app1", "url": "http://127.0.0.1:9999"}]}},
}


def mutated(change):
    data = copy.deepcopy(BASE)
    change(data)
    return data


def routes(data):
    return data["listen"][0]["route"]


class GoodRouteTests(SynchronousTestCase):
    def test_issueExample(self):
        """
        The issue's example builds three routes, named by their index.
        """
        config = parseConfig(copy.deepcopy(BASE), SCHEDULERS)
        self.assertEqual(
            config.listeners[0].routes,
            [
                RouteConfig("0", "mysuperwebapp.com", "/balancer-manager", manager=True),
                RouteConfig("1", "mysuperwebapp.com", "/", balancer="mycluster"),
                RouteConfig("2", None, "/", status=404),
            ],
        )
        self.assertEqual([r.kind for r in config.listeners[0].routes], ["manager", "balancer", "status"])

    def test_listenerBalancerIsTheLastRoute(self):
        """
        C{balancer =} next to routes is the catch-all after them.
        """

        def change(data):
            data["listen"][0]["balancer"] = "mycluster"
            routes(data).pop()

        config = parseConfig(mutated(change), SCHEDULERS)
        self.assertEqual(config.listeners[0].routes[-1], RouteConfig("default", balancer="mycluster"))

    def test_redirectDefaultsTo302(self):
        def change(data):
            routes(data)[2] = {"path": "/", "redirect": "https://mysuperwebapp.com/"}

        config = parseConfig(mutated(change), SCHEDULERS)
        self.assertEqual(config.listeners[0].routes[2].status, 302)

    def test_hostAndPathNormalized(self):
        def change(data):
            routes(data)[1].update(host="MySuperWebApp.com.", path="/app/")

        config = parseConfig(mutated(change), SCHEDULERS)
        route = config.listeners[0].routes[1]
        self.assertEqual((route.host, route.path), ("mysuperwebapp.com", "/app"))


class BadRouteTests(SynchronousTestCase):
    def assertBad(self, change, expected):
        error = self.assertRaises(ConfigError, parseConfig, mutated(change), SCHEDULERS)
        self.assertEqual(str(error), expected)
        self.assertEqual(len(str(error).splitlines()), 1)

    def test_duplicateHostAndPath(self):
        self.assertBad(
            lambda d: routes(d).append({"host": "MYSUPERWEBAPP.com", "path": "/", "status": 410}),
            "listen[0].route[3].path: route '1' has the same host and path "
            "(mysuperwebapp.com, /)",
        )

    def test_samePathWrittenWithSlash(self):
        self.assertBad(
            lambda d: routes(d).append(
                {"host": "mysuperwebapp.com", "path": "/balancer-manager/", "status": 410}
            ),
            "listen[0].route[3].path: route '0' has the same host and path "
            "(mysuperwebapp.com, /balancer-manager)",
        )

    def test_missingBalancer(self):
        self.assertBad(
            lambda d: routes(d)[1].update(balancer="nosuch"),
            "listen[0].route[1].balancer: no balancer named 'nosuch'",
        )

    def test_balancerAndManager(self):
        self.assertBad(
            lambda d: routes(d)[0].update(balancer="mycluster"),
            "listen[0].route[0].manager: a route has one target: balancer, manager = true, "
            "status or redirect (this one has balancer and manager)",
        )

    def test_noTarget(self):
        self.assertBad(
            lambda d: routes(d)[2].pop("status"),
            "listen[0].route[2]: a route has one target: balancer, manager = true, "
            "status or redirect (this one has none)",
        )

    def test_malformedWildcard(self):
        for host in ("*example.com", "a.*.example.com", "*.", "www.*"):
            self.assertBad(
                lambda d: routes(d)[1].update(host=host),
                f"listen[0].route[1].host: host {host!r}: a wildcard is *. followed by a name",
            )

    def test_hostWithPort(self):
        self.assertBad(
            lambda d: routes(d)[1].update(host="mysuperwebapp.com:80"),
            "listen[0].route[1].host: host 'mysuperwebapp.com:80' must be a name without "
            "a port, or *.name",
        )

    def test_badPath(self):
        for path in ("app", "/a b", "/a?x", "/a/../b", "/%zz"):
            error = self.assertRaises(
                ConfigError, parseConfig, mutated(lambda d: routes(d)[1].update(path=path)), SCHEDULERS
            )
            self.assertTrue(str(error).startswith("listen[0].route[1].path: expected"), str(error))

    def test_managerWithoutManagerTable(self):
        self.assertBad(
            lambda d: d.pop("manager"),
            "listen[0].route[0].manager: needs a [manager] table (even an empty one)",
        )

    def test_managerWithWorkers(self):
        """
        Worker processes pass manager routes on to the parent's manager.
        """
        config = parseConfig(mutated(lambda d: d.update(workers=2)), SCHEDULERS)
        self.assertTrue(config.listeners[0].routes[0].manager)

    def test_routesInTCPMode(self):
        def change(data):
            data["listen"][0].update(mode="tcp", balancer="mycluster")

        self.assertBad(change, "listen[0].route: not available in tcp mode")

    def test_balancerSettingsOnOtherRoutes(self):
        self.assertBad(
            lambda d: routes(d)[2].update(strip_prefix=True),
            "listen[0].route[2].strip_prefix: only for a route to a balancer",
        )

    def test_answerStatus(self):
        self.assertBad(
            lambda d: routes(d)[2].update(status=301),
            "listen[0].route[2].status: a 3xx answer needs a redirect = URL",
        )
        self.assertBad(
            lambda d: routes(d)[2].update(status=99),
            "listen[0].route[2].status: expected an HTTP status: 200, 3xx with redirect, "
            "or 400 to 599; got 99",
        )
        # 204 has no body; ours always have one.
        self.assertBad(
            lambda d: routes(d)[2].update(status=204),
            "listen[0].route[2].status: expected an HTTP status: 200, 3xx with redirect, "
            "or 400 to 599; got 204",
        )
        self.assertBad(
            lambda d: routes(d)[2].update(redirect="https://x.example/", status=200),
            "listen[0].route[2].status: a redirect's status is 301, 302, 303, 307 or 308, not 200",
        )

    def test_badRedirect(self):
        self.assertBad(
            lambda d: routes(d)[2].update(redirect="javascript:alert(1)"),
            "listen[0].route[2].redirect: expected an http:// or https:// URL, or a path "
            "like /new, got 'javascript:alert(1)'",
        )

    def test_redirectHeaderInjection(self):
        """
        A redirect goes out as a Location header: only URL characters,
        ASCII, no fragment, anywhere in it (its query included).
        """
        for url in ("/new?x\r\nSet-Cookie: a=b", "https://x.example/?\u00e9=1", "https://x.example/?a b", "/a#b"):
            error = self.assertRaises(
                ConfigError,
                parseConfig,
                mutated(lambda d: routes(d)[2].update(redirect=url, status=302)),
                SCHEDULERS,
            )
            self.assertTrue(str(error).startswith("listen[0].route[2].redirect: expected"), str(error))
            self.assertEqual(len(str(error).splitlines()), 1)

    def test_unknownKey(self):
        error = self.assertRaises(
            ConfigError,
            parseConfig,
            mutated(lambda d: routes(d)[1].update(prefix="/x")),
            SCHEDULERS,
        )
        self.assertTrue(str(error).startswith("listen[0].route[1].prefix"), str(error))

    def test_duplicateName(self):
        def change(data):
            routes(data)[1]["name"] = "site"
            routes(data)[2]["name"] = "site"

        self.assertBad(change, "listen[0].route[2].name: another route of this listener is named 'site'")

    def test_listenerWithoutTarget(self):
        self.assertBad(
            lambda d: d["listen"][0].pop("route"),
            "listen[0].balancer: missing (or give the listener [[listen.route]] tables)",
        )

    def test_unusedBalancer(self):
        def change(data):
            data["balancer"]["other"] = copy.deepcopy(data["balancer"]["mycluster"])

        self.assertBad(change, "balancer.other: no listener uses this balancer")
