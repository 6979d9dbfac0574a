"""
The C{examples/hash-scheduler} plugin: consistent (rendezvous) hashing of a
key read from the L{IRequestView}.  Its scheduler is tested here with fake
views and members (the module is loaded from its file, nothing is added to
this process's C{sys.path}); discovery and C{twistd playbalancer} run in
children with the example on C{PYTHONPATH}, as for the p2c example.
"""

from __future__ import annotations

import importlib.util
import os
from collections import Counter

from zope.interface.verify import verifyObject

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.plugin import IPlugin
from twisted.trial import unittest
from twisted.web.http_headers import Headers

from playbalancer.interfaces import IScheduler, ISchedulerFactory
from playbalancer.tcp import ConnectionView
from playbalancer.testing import candidateMember, candidateMembers, requestView

from tests.pluginharness import (
    BUILTINS,
    EXAMPLES,
    TwistdBalancer,
    childEnv,
    configErrorLine,
    describe,
    installedPlugins,
    listSchedulers,
    runChild,
    servedBy,
    startDemoMember,
)

EXAMPLE = os.path.join(EXAMPLES, "hash-scheduler")


def _loadExample():
    spec = importlib.util.spec_from_file_location(
        "_hash_scheduler_under_test", os.path.join(EXAMPLE, "hash_scheduler", "__init__.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hash_scheduler = _loadExample()
factory = hash_scheduler.hashScheduler


def user(value):
    return requestView(headers=[(b"X-User", value)])


USERS = [b"user-%d" % (i,) for i in range(2000)]


class PickTests(unittest.SynchronousTestCase):
    def scheduler(self, key="header:X-User"):
        s = factory.makeScheduler({"key": key})
        verifyObject(IScheduler, s)
        return s

    def placement(self, scheduler, candidates, views):
        return {key: scheduler.pick(candidates, view).name for key, view in views.items()}

    def test_plugin(self):
        self.assertTrue(IPlugin.providedBy(factory))
        verifyObject(ISchedulerFactory, factory)
        self.assertEqual(factory.name, "rendezvous")
        self.assertTrue(factory.description)

    def test_sameKeySameMember(self):
        """
        A key always maps to the same member, across scheduler instances
        (and processes: the hash is not Python's C{hash()}), whatever the
        order of the candidates; different keys spread evenly.
        """
        candidates = candidateMembers("a", "b", "c", "d")
        views = {u: user(u) for u in USERS}
        first = self.placement(self.scheduler(), candidates, views)
        again = self.placement(self.scheduler(), list(reversed(candidates)), views)
        self.assertEqual(first, again)
        counts = Counter(first.values())
        self.assertEqual(set(counts), {"a", "b", "c", "d"})
        self.assertTrue(all(400 <= n <= 600 for n in counts.values()), counts)
        # Fixed for good: the same names and keys place the same way in
        # every process and release (a change would move everyone's keys
        # on upgrade).
        self.assertEqual("".join(first[b"user-%d" % (i,)] for i in range(16)), "bcccdaabacbadbca")

    def test_removingAMemberMovesOnlyItsKeys(self):
        s = self.scheduler()
        views = {u: user(u) for u in USERS}
        everyone = candidateMembers("a", "b", "c", "d", "e")
        before = self.placement(s, everyone, views)
        after = self.placement(s, [m for m in everyone if m.name != "c"], views)
        moved = {u for u in USERS if before[u] != after[u]}
        self.assertEqual(moved, {u for u in USERS if before[u] == "c"})
        # ... and they spread over the others rather than piling on one.
        self.assertEqual({after[u] for u in moved}, {"a", "b", "d", "e"})
        # Back in: exactly the same keys return to it.
        self.assertEqual(self.placement(s, everyone, views), before)

    def test_addingAMemberTakesOnlyItsShare(self):
        s = self.scheduler()
        views = {u: user(u) for u in USERS}
        before = self.placement(s, candidateMembers("a", "b", "c"), views)
        after = self.placement(s, candidateMembers("a", "b", "c", "d"), views)
        moved = [u for u in USERS if before[u] != after[u]]
        self.assertTrue(all(after[u] == "d" for u in moved))
        self.assertTrue(400 <= len(moved) <= 600, len(moved))

    def test_weights(self):
        """
        A member of weight 3 gets about three times the keys of one of
        weight 1.
        """
        s = self.scheduler()
        counts = Counter(s.pick(candidateMembers("a", "b", b=3), user(u)).name for u in USERS)
        self.assertTrue(0.68 <= counts["b"] / len(USERS) <= 0.82, counts)

    def test_keys(self):
        """
        Each kind of key reads its part of the request, and only it.
        """
        candidates = candidateMembers(*"abcdefgh")

        def where(key, **view):
            return self.scheduler(key).pick(candidates, requestView(**view)).name

        # Views that differ only outside the key place the same way.
        for key, same, other in [
            ("header:x-user", dict(headers=[(b"X-User", b"ann")], path=b"/1"), dict(headers=[(b"x-user", b"ann")], path=b"/2")),
            ("cookie:session", dict(cookies=[(b"session", b"s1")], path=b"/1"), dict(cookies=[(b"session", b"s1"), (b"theme", b"x")], path=b"/2")),
            ("path", dict(path=b"/cart", query=b"a=1"), dict(path=b"/cart", query=b"a=2", clientAddress="192.0.2.9")),
            ("client", dict(clientAddress="2001:db8::1", path=b"/1"), dict(clientAddress="2001:db8::1", path=b"/2")),
        ]:
            self.assertEqual(where(key, **same), where(key, **other), key)
        # ... and the key does change the choice.
        for key, make in [
            ("header:X-User", lambda i: dict(headers=[(b"X-User", b"%d" % i)])),
            ("cookie:session", lambda i: dict(cookies=[(b"session", b"%d" % i)])),
            ("path", lambda i: dict(path=b"/%d" % i)),
            ("client", lambda i: dict(clientAddress=f"192.0.2.{i}")),
        ]:
            self.assertGreater(len({where(key, **make(i)) for i in range(40)}), 4, key)

    def test_missingKeySpreads(self):
        """
        Requests without a key value (not sent, or empty) are spread over
        the candidates in proportion to their weights, with no affinity.
        """
        s = self.scheduler()
        candidates = candidateMembers("a", "b", "c", c=2)
        for view in [requestView(), user(b"")]:
            counts = Counter(s.pick(candidates, view).name for _ in range(4000))
            self.assertTrue(800 <= counts["a"] <= 1200, counts)
            self.assertTrue(1800 <= counts["c"] <= 2200, counts)
        cookie = self.scheduler("cookie:session")
        self.assertEqual(
            len({cookie.pick(candidates, requestView(cookies=[(b"other", b"1")])).name for _ in range(50)}), 3
        )

    def test_tcpMode(self):
        """
        In TCP mode (the balancer's L{ConnectionView}) the client address
        is the key; other keys have no value there, so connections spread;
        so do they when the view is L{None}, as before playbalancer 0.2.
        """
        candidates = candidateMembers("a", "b", "c")
        view = ConnectionView(IPv4Address("TCP", "198.51.100.3", 5555))
        client = self.scheduler("client")
        self.assertEqual(
            client.pick(candidates, view),
            client.pick(candidates, requestView(clientAddress="198.51.100.3")),
        )
        self.assertEqual(len({client.pick(candidates, view).name for _ in range(20)}), 1)
        for request in [view, None]:
            header = self.scheduler()
            self.assertEqual(len({header.pick(candidates, request).name for _ in range(50)}), 3)

    def test_oneCandidate(self):
        only = candidateMember("only")
        self.assertIs(self.scheduler().pick([only], requestView()), only)

    def test_badOptions(self):
        """
        Wrong options raise L{ValueError} naming the option.
        """
        for options, words in [
            ({}, ["key", "required"]),
            ({"key": "path", "bogus": 1, "other": 2}, ["bogus", "other"]),
            ({"key": 1}, ["key"]),
            ({"key": "query"}, ["key", "query"]),
            ({"key": "header:"}, ["key", "header"]),
            ({"key": "header:X User"}, ["key", "X User"]),
            ({"key": "cookie:"}, ["key", "cookie"]),
            ({"key": "Path"}, ["key", "Path"]),
            ({"key": "client:x"}, ["key"]),
        ]:
            with self.assertRaises(ValueError, msg=repr(options)) as caught:
                factory.makeScheduler(options)
            for word in words:
                self.assertIn(word, str(caught.exception), options)


class OwnTestsTests(unittest.TestCase):
    """
    The example's own tests (playbalancer's conformance tests and a
    simulation) pass, run as its README says.
    """

    def test_ownTests(self):
        temp = os.path.abspath(self.mktemp())
        result = runChild(
            ["-m", "twisted.trial", f"--temp-directory={temp}", "tests"], childEnv(EXAMPLE), EXAMPLE
        )
        self.assertEqual(result.returncode, 0, describe(result))
        self.assertIn("PASSED", result.stdout, describe(result))


class DiscoveryTests(unittest.TestCase):
    #: Directories around the children's C{PYTHONPATH} (see L{childEnv}).
    around = ((), ())

    def test_availableSchedulers(self):
        """
        With both examples on the path, both are found beside the built-ins
        and whatever the environment has installed.
        """
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        installed = listSchedulers(self, childEnv(around=self.around), cwd)
        self.assertTrue(BUILTINS <= installed, installed)
        env = childEnv(EXAMPLE, os.path.join(EXAMPLES, "p2c-scheduler"), around=self.around)
        self.assertEqual(listSchedulers(self, env, cwd), installed | {"rendezvous", "p2c"})


class DiscoveryBesideInstalledPluginsTests(DiscoveryTests):
    """
    The same, in a virtualenv where the examples and another scheduler are
    installed.
    """

    def setUp(self):
        self.around = installedPlugins(self)


class BadConfigTests(unittest.TestCase):
    """
    C{twistd playbalancer} refuses a wrong C{key} in one line naming it.
    """

    def test_missingKey(self):
        line = configErrorLine(self, 'scheduler = "rendezvous"\n', EXAMPLE)
        self.assertIn("balancer.web.scheduler_options", line)
        self.assertIn("key", line)

    def test_badKey(self):
        line = configErrorLine(
            self, 'scheduler = "rendezvous"\n\n[balancer.web.scheduler_options]\nkey = "query"\n', EXAMPLE
        )
        self.assertIn("balancer.web.scheduler_options", line)
        self.assertIn("key", line)
        self.assertIn("query", line)


class EndToEndTests(unittest.TestCase):
    """
    C{twistd playbalancer} with C{scheduler = "rendezvous"} on C{X-User} in front
    of two real member web servers.
    """

    def test_sameHeaderSameMember(self):
        return defer.ensureDeferred(self._sameHeaderSameMember())

    async def _sameHeaderSameMember(self):
        servers = [startDemoMember(self, "app1"), startDemoMember(self, "app2")]
        balancer = await TwistdBalancer.start(
            self,
            'scheduler = "rendezvous"\n\n[balancer.web.scheduler_options]\nkey = "header:X-User"\n',
            servers,
            EXAMPLE,
        )

        async def servedFor(headers):
            response = await balancer.client.get(balancer.url, headers=headers, timeout=10)
            body = await response.text("utf-8")
            self.assertEqual(response.code, 200, body)
            name = servedBy(body, servers)
            self.assertIsNotNone(name, body)
            return name

        users = [b"user-%d" % (i,) for i in range(12)]
        placed = {}
        for _ in range(3):
            for u in users:
                placed.setdefault(u, set()).add(await servedFor(Headers({b"X-User": [u]})))
        self.assertTrue(all(len(where) == 1 for where in placed.values()), placed)
        self.assertEqual(set().union(*placed.values()), {"app1", "app2"}, placed)
        # The place is the one the scheduler computes in this process.
        scheduler = factory.makeScheduler({"key": "header:X-User"})
        candidates = candidateMembers("app1", "app2")
        self.assertEqual(
            {u: {scheduler.pick(candidates, user(u)).name} for u in users}, placed
        )

        # Without the header, requests spread.
        unkeyed = {await servedFor(None) for _ in range(12)}
        self.assertEqual(unkeyed, {"app1", "app2"})

        await balancer.stopCleanly()
