"""
Unit tests for L{playbalancer.routes}: nginx's precedence (host first,
then the longest prefix on segment boundaries), host normalization, the
checks that refuse bad routes, and lookups that do not scan every route.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from playbalancer.routes import Route, RouteError, RouteTable, normalHost, normalPrefix


def table(*specs):
    return RouteTable(Route(name, host, path) for name, host, path in specs)


def matched(routes, host, path):
    route = routes.match(normalHost(host) if host is not None else None, path)
    return route.name if route is not None else None


class HostTests(SynchronousTestCase):
    def test_normalHost(self):
        """
        Lower case, no port, no final dot; IPv6 literals keep their
        brackets; bytes or text.
        """
        self.assertEqual(normalHost(b"Example.COM:8080"), "example.com")
        self.assertEqual(normalHost("example.com."), "example.com")
        self.assertEqual(normalHost(b"[::1]:80"), "[::1]")
        self.assertEqual(normalHost(b"[::1]"), "[::1]")
        self.assertIsNone(normalHost(b""))
        self.assertIsNone(normalHost(b":80"))

    def test_precedence(self):
        """
        An exact name beats the longest wildcard, which beats a shorter
        one, which beats routes without a host.
        """
        routes = table(
            ("exact", "www.example.com", "/"),
            ("deep", "*.api.example.com", "/"),
            ("wild", "*.example.com", "/"),
            ("any", None, "/"),
        )
        self.assertEqual(matched(routes, b"www.example.com", "/x"), "exact")
        self.assertEqual(matched(routes, b"WWW.Example.com:8443", "/x"), "exact")
        self.assertEqual(matched(routes, b"v1.api.example.com", "/x"), "deep")
        self.assertEqual(matched(routes, b"shop.example.com", "/x"), "wild")
        self.assertEqual(matched(routes, b"a.b.shop.example.com", "/x"), "wild")
        self.assertEqual(matched(routes, b"example.com", "/x"), "any")  # *.x is not x itself
        self.assertEqual(matched(routes, b"other.org", "/x"), "any")
        self.assertEqual(matched(routes, None, "/x"), "any")

    def test_noFallThroughToOtherHosts(self):
        """
        Once a host's routes are chosen, a path none of them takes matches
        nothing (nginx's server, then location).
        """
        routes = table(("admin", "example.com", "/admin"), ("any", None, "/"))
        self.assertEqual(matched(routes, b"example.com", "/admin/x"), "admin")
        self.assertIsNone(matched(routes, b"example.com", "/shop"))
        self.assertEqual(matched(routes, b"other.org", "/admin"), "any")

    def test_noRouteForHost(self):
        routes = table(("one", "example.com", "/"))
        self.assertIsNone(matched(routes, b"other.org", "/"))
        self.assertIsNone(matched(routes, None, "/"))


class PathTests(SynchronousTestCase):
    def test_longestPrefixOnSegments(self):
        """
        The longest prefix wins, on whole segments: /app takes /app, /app/
        and /app/x but not /application.
        """
        routes = table(("root", None, "/"), ("app", None, "/app"), ("deep", None, "/app/admin/"))
        self.assertEqual(matched(routes, None, "/app"), "app")
        self.assertEqual(matched(routes, None, "/app/"), "app")
        self.assertEqual(matched(routes, None, "/app/x/y"), "app")
        self.assertEqual(matched(routes, None, "/application"), "root")
        self.assertEqual(matched(routes, None, "/app/admin"), "deep")
        self.assertEqual(matched(routes, None, "/app/admin/users"), "deep")
        self.assertEqual(matched(routes, None, "/app/administer"), "app")
        self.assertEqual(matched(routes, None, "/"), "root")
        self.assertEqual(matched(routes, None, ""), "root")

    def test_noRoot(self):
        routes = table(("app", None, "/app"))
        self.assertIsNone(matched(routes, None, "/"))
        self.assertIsNone(matched(routes, None, "/other/app"))

    def test_normalPrefix(self):
        self.assertEqual(normalPrefix("/app/"), "/app")
        self.assertEqual(normalPrefix("/"), "/")
        self.assertEqual(normalPrefix("//"), "/")
        self.assertRaises(RouteError, normalPrefix, "app")

    def test_caseSensitivePaths(self):
        routes = table(("app", None, "/App"), ("root", None, "/"))
        self.assertEqual(matched(routes, None, "/app"), "root")
        self.assertEqual(matched(routes, None, "/App/x"), "app")


class CheckTests(SynchronousTestCase):
    def test_duplicate(self):
        """
        Two routes with the same host and path (/app and /app/ are one
        prefix; hosts compare in lower case) are refused, naming both.
        """
        with self.assertRaises(RouteError) as caught:
            table(("a", "Example.com", "/app"), ("b", "example.com", "/app/"))
        self.assertIn("'a'", str(caught.exception))
        self.assertIn("'b'", str(caught.exception))
        table(("a", "example.com", "/app"), ("b", None, "/app"))  # different hosts

    def test_malformedHosts(self):
        for host in ("a.*.com", "*example.com", "*", "*.", "example.com:80", "", "a/b"):
            self.assertRaises(RouteError, table, ("r", host, "/"))
        table(("r", "[::1]", "/"))

    def test_pathMustBeAbsolute(self):
        self.assertRaises(RouteError, table, ("r", None, "app"))


class OrderTests(SynchronousTestCase):
    def test_inOrder(self):
        """
        The order routes are tried in: exact hosts, wildcards longest
        first, then any host; longest path first within each.
        """
        routes = table(
            ("any-root", None, "/"),
            ("wild", "*.example.com", "/"),
            ("exact-root", "example.com", "/"),
            ("exact-app", "example.com", "/app"),
            ("deep", "*.api.example.com", "/"),
            ("any-app", None, "/app"),
        )
        self.assertEqual(
            [r.name for r in routes.inOrder()],
            ["exact-app", "exact-root", "deep", "wild", "any-app", "any-root"],
        )


class ScaleTests(SynchronousTestCase):
    def test_lookupsDoNotScan(self):
        """
        With 1,000 routes (500 hosts x 2 paths), a match probes the host
        dictionary and a few path prefixes, not every route: counted with
        a dictionary that records its lookups.
        """
        specs = []
        for i in range(500):
            specs.append((f"h{i}-root", f"host{i}.example.com", "/"))
            specs.append((f"h{i}-api", f"host{i}.example.com", "/api"))
        routes = table(*specs)
        probes = []

        class Counting(dict):
            def get(self, key, default=None):
                probes.append(key)
                return dict.get(self, key, default)

            def _scanned(self, *args):
                probes.extend(["scan"] * 1000)
                return dict.keys(self)

            __iter__ = keys = values = items = _scanned

        for paths in routes._exact.values():
            paths.byPrefix = Counting(paths.byPrefix)
        routes._exact = Counting(routes._exact)
        self.assertEqual(matched(routes, b"host321.example.com", "/api/v1/users"), "h321-api")
        self.assertLessEqual(len(probes), 5, probes[:10])
        del probes[:]
        self.assertIsNone(matched(routes, b"nohost.example.org", "/api"))
        self.assertLessEqual(len(probes), 5, probes[:10])
        # A long path is cut to the longest prefix's depth first: its
        # probes do not grow with its segments (which made matching
        # quadratic in the path's length).
        del probes[:]
        longPath = "/api" + "/a" * 4000
        self.assertEqual(matched(routes, b"host7.example.com", longPath), "h7-api")
        self.assertEqual(len(probes), 2, probes[:3])
        self.assertEqual(probes[1], "/api")
