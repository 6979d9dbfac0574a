"""
Tests for the built-in C{hash} scheduler (L{playbalancer.schedulers.hashing}
and its Maglev tables, L{playbalancer.schedulers.maglev}): with stand-in
members and request views, through C{playbalancer check}, and once over
real sockets.
"""

from __future__ import annotations

import io
import math
import random
from collections import Counter

from zope.interface.verify import verifyObject

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http_headers import Headers

from playbalancer.ctl import cli
from playbalancer.interfaces import IScheduler, ISchedulerFactory
from playbalancer.schedulers import availableSchedulers, hashing, maglev
from playbalancer.schedulers.hashing import (
    CACHED_TABLES,
    ConsistentHashScheduler,
    consistentHash,
)
from playbalancer.schedulers.maglev import TABLE_SIZE, buildTable, tableWeight
from playbalancer.tcp import ConnectionView
from playbalancer.testing import candidateMember, candidateMembers, requestView, waitUntil

from tests import proxyharness
from tests.proxyharness import ProxyTestCase, servedBy


def members(names, **weights):
    return candidateMembers(*names, **weights)


def ten():
    return members([f"app{i}" for i in range(1, 11)])


def user(value):
    return requestView(headers=[(b"X-User", value)])


def scheduler(key="header:X-User", **options):
    options["key"] = key
    made = consistentHash.makeScheduler(options)
    verifyObject(IScheduler, made)
    return made


USERS = [b"user-%d" % (i,) for i in range(20000)]
VIEWS = [user(u) for u in USERS]


def placement(s, candidates, views=VIEWS):
    return [s.pick(candidates, view).name for view in views]


def movedShare(before, after):
    return sum(1 for a, b in zip(before, after) if a != b) / len(before)


class FactoryTests(SynchronousTestCase):
    def test_plugin(self):
        """
        The factory is a scheduler plugin called C{hash}, found by
        L{availableSchedulers} as the built-ins are.
        """
        self.assertTrue(IPlugin.providedBy(consistentHash))
        verifyObject(ISchedulerFactory, consistentHash)
        self.assertEqual(consistentHash.name, "hash")
        self.assertTrue(consistentHash.description)
        self.assertIs(availableSchedulers().get("hash"), consistentHash)
        self.assertEqual(repr(consistentHash), "<ConsistentHashFactory 'hash'>")

    def test_newSchedulerEachTime(self):
        one, two = scheduler(), scheduler()
        self.assertIsInstance(one, ConsistentHashScheduler)
        self.assertIsNot(one, two)

    def test_balanceFactor(self):
        """
        C{balance_factor} is off when absent or 0, else kept as a float.
        """
        for options, factor in [
            ({}, None),
            ({"balance_factor": 0}, None),
            ({"balance_factor": 0.0}, None),
            ({"balance_factor": 1.25}, 1.25),
            ({"balance_factor": 2}, 2.0),
        ]:
            self.assertEqual(scheduler(**options).factor, factor, options)

    def test_badOptions(self):
        """
        Wrong options raise L{ValueError} naming the option (and the bad
        value).
        """
        for options, words in [
            ({}, ["key", "required"]),
            ({"key": "client", "bogus": 1, "other": 2}, ["bogus", "other", "balance_factor"]),
            ({"key": 1}, ["key", "1"]),
            ({"key": "query"}, ["key", "query"]),
            ({"key": "Path"}, ["key", "Path"]),
            ({"key": "client:x"}, ["key", "client:x"]),
            ({"key": "header:"}, ["key", "header"]),
            ({"key": "header:X User"}, ["key", "X User"]),
            ({"key": "cookie:"}, ["key", "cookie"]),
            ({"key": "cookie:a;b"}, ["key", "a;b"]),
            ({"key": "client", "balance_factor": 1}, ["balance_factor", "1"]),
            ({"key": "client", "balance_factor": 0.5}, ["balance_factor", "0.5"]),
            ({"key": "client", "balance_factor": -2}, ["balance_factor", "-2"]),
            ({"key": "client", "balance_factor": True}, ["balance_factor", "True"]),
            ({"key": "client", "balance_factor": "1.25"}, ["balance_factor", "1.25"]),
            ({"key": "client", "balance_factor": math.inf}, ["balance_factor", "inf"]),
            ({"key": "client", "balance_factor": math.nan}, ["balance_factor", "nan"]),
        ]:
            with self.assertRaises(ValueError, msg=repr(options)) as caught:
                consistentHash.makeScheduler(options)
            message = str(caught.exception)
            self.assertTrue(message.startswith("scheduler 'hash': "), message)
            for word in words:
                self.assertIn(word, message, options)


CHECKED = """
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
balancer = "web"

[balancer.web]
scheduler = "hash"

[balancer.web.scheduler_options]
{options}

[[balancer.web.member]]
name = "app1"
url = "http://127.0.0.1:9999"
"""


class CheckTests(TestCase):
    """
    C{playbalancer check} (start-up's own checks) reports a bad option in
    one line naming C{balancer.NAME.scheduler_options} and the option, and
    exits 1.
    """

    async def check(self, options):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(CHECKED.format(options=options))
        out, err = io.StringIO(), io.StringIO()
        code = await cli.run(reactor, ["check", path], stdout=out, stderr=err, environ={})
        return code, out.getvalue(), err.getvalue()

    async def test_good(self):
        code, out, err = await self.check('key = "cookie:session"\nbalance_factor = 1.25')
        self.assertEqual((code, err), (0, ""))
        self.assertIn("OK", out)

    async def test_badKey(self):
        code, out, err = await self.check('key = "query"')
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(
            err,
            "playbalancer: balancer.web.scheduler_options: scheduler 'hash': option key"
            ' must be "client", "header:<Name>", "cookie:<name>" or "path", got \'query\'\n',
        )

    async def test_badFactor(self):
        code, out, err = await self.check('key = "client"\nbalance_factor = 0.9')
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err.count("\n"), 1)
        self.assertIn("playbalancer: balancer.web.scheduler_options: ", err)
        self.assertIn("balance_factor", err)
        self.assertIn("0.9", err)

    async def test_missingKey(self):
        code, out, err = await self.check("")
        self.assertEqual((code, out), (1, ""))
        self.assertIn("balancer.web.scheduler_options", err)
        self.assertIn("key is required", err)
        self.assertNotIn("Traceback", err)


class PlacementTests(SynchronousTestCase):
    def test_sameKeySameMember(self):
        """
        A key always maps to the same member: across scheduler instances,
        whatever the order of the candidates, and for equal new member
        objects.  The mapping is fixed for good (the hash is not Python's
        C{hash()}, and a change would move every user on upgrade).
        """
        candidates = ten()
        first = placement(scheduler(), candidates)
        self.assertEqual(placement(scheduler(), list(reversed(candidates))), first)
        self.assertEqual(placement(scheduler(), ten()), first)
        self.assertEqual(
            "".join(name[3:] for name in first[:16]).replace("10", "0"),
            PINNED,
        )

    def test_spread(self):
        """
        Equal members get about equal shares of keys.
        """
        counts = Counter(placement(scheduler(), ten()))
        self.assertEqual(len(counts), 10)
        for name, count in counts.items():
            self.assertLess(abs(count - 2000), 150, counts)

    def test_weights(self):
        """
        Shares of keys follow the weights.
        """
        candidates = members("abcd", a=1, b=2, c=3, d=4)
        counts = Counter(placement(scheduler(), candidates))
        for member in candidates:
            share = counts[member.name] / len(USERS)
            self.assertLess(abs(share - member.weight / 10), 0.015, counts)

    def test_removeOneOfTen(self):
        """
        Taking 1 of 10 members out moves its keys and few others (ideal:
        10%); putting it back restores every key's place.
        """
        s = scheduler()
        everyone = ten()
        before = placement(s, everyone)
        for gone in ("app1", "app4", "app10"):
            after = placement(s, [m for m in everyone if m.name != gone])
            self.assertFalse(any(name == gone for name in after))
            share = movedShare(before, after)
            self.assertGreaterEqual(share, before.count(gone) / len(before))
            self.assertLessEqual(share, 0.12, gone)
            self.assertEqual(placement(s, everyone), before)

    def test_addOne(self):
        """
        An 11th member takes about its share (ideal: 1/11), mostly from
        every other member, and little else moves.
        """
        s = scheduler()
        before = placement(s, ten())
        after = placement(s, ten() + [candidateMember("app11")])
        share = movedShare(before, after)
        self.assertLessEqual(share, 1 / 11 + 0.02)
        self.assertGreaterEqual(after.count("app11") / len(after), 1 / 11 - 0.01)

    def test_keys(self):
        """
        Each kind of key reads its part of the request, and only it.
        """
        candidates = members("abcdefgh")
        keys = ("header:x-user", "header:X-User", "cookie:session", "path", "client")
        schedulers = {key: scheduler(key) for key in keys}

        def where(key, **view):
            return schedulers[key].pick(candidates, requestView(**view)).name

        for key, same, other in [
            ("header:x-user", dict(headers=[(b"X-User", b"ann")], path=b"/1"),
             dict(headers=[(b"x-user", "ann")], path=b"/2", clientAddress="192.0.2.9")),
            ("cookie:session", dict(cookies=[(b"session", b"s1")], path=b"/1"),
             dict(cookies=[(b"session", b"s1"), (b"theme", b"x")], clientAddress="192.0.2.9")),
            ("path", dict(path=b"/cart"), dict(path=b"/cart", clientAddress="192.0.2.9")),
            ("client", dict(clientAddress="2001:db8::1", path=b"/1"),
             dict(clientAddress="2001:db8::1", path=b"/2")),
        ]:
            self.assertEqual(where(key, **same), where(key, **other), key)
        for key, make in [
            ("header:X-User", lambda i: dict(headers=[(b"X-User", b"%d" % i)])),
            ("cookie:session", lambda i: dict(cookies=[(b"session", b"%d" % i)])),
            ("path", lambda i: dict(path=b"/%d" % i)),
            ("client", lambda i: dict(clientAddress=f"192.0.2.{i}")),
        ]:
            self.assertGreater(len({where(key, **make(i)) for i in range(40)}), 4, key)

    def test_oneCandidate(self):
        only = candidateMember("only", active=100)
        for factor in (0, 1.25):
            s = scheduler(balance_factor=factor)
            self.assertIs(s.pick([only], user(b"ann")), only)
            self.assertIs(s.pick([only], None), only)


class MissingKeyTests(SynchronousTestCase):
    """
    A request without its key value is placed by its client address, else
    round robin; it never raises.
    """

    def test_byClientAddress(self):
        candidates = ten()
        byClient = scheduler("client")
        for key in ("header:X-User", "cookie:session", "path"):
            s = scheduler(key)
            for i in range(50):
                address = f"198.51.100.{i}"
                expected = byClient.pick(candidates, requestView(clientAddress=address))
                for view in [
                    requestView(clientAddress=address, path=b""),
                    requestView(clientAddress=address, path=b"", headers=[(b"X-User", b"")]),
                ]:
                    self.assertIs(s.pick(candidates, view), expected, (key, address))

    def test_tcpMode(self):
        """
        In TCP mode (a L{ConnectionView}) every key but C{client} is
        missing, so connections are placed by client address.
        """
        candidates = ten()
        view = ConnectionView(IPv4Address("TCP", "198.51.100.3", 5555))
        expected = scheduler("client").pick(candidates, requestView(clientAddress="198.51.100.3"))
        for key in ("client", "path", "header:X-User", "cookie:session"):
            self.assertIs(scheduler(key).pick(candidates, view), expected, key)

    def test_roundRobin(self):
        """
        With no client address either (a UNIX socket, or no view at all),
        requests go round robin by weight.
        """
        candidates = members("abc", c=2)
        for key in ("client", "header:X-User"):
            s = scheduler(key, balance_factor=1.5)
            for request in [requestView(clientAddress=None), None]:
                counts = Counter(s.pick(candidates, request).name for _ in range(400))
                self.assertEqual(counts, {"a": 100, "b": 100, "c": 200}, (key, request))


class BoundedLoadTests(SynchronousTestCase):
    """
    With C{balance_factor}, no member takes a request that would leave it
    above C{ceil(c * in flight * weight share)}.
    """

    def cap(self, factor, candidates, member):
        total = sum(m.active for m in candidates)
        weight = sum(m.weight for m in candidates)
        return math.ceil(factor * total * member.weight / weight - 1e-9)

    def simulate(self, factor, candidates, keys, seed=7):
        """
        Place C{keys} one by one as requests in flight; now and then some
        end.  After every pick, check the chosen member against its cap
        (counting the new request).  Return the largest count seen.
        """
        s = scheduler(balance_factor=factor)
        rng = random.Random(seed)
        inFlight = []
        largest = 0
        for key in keys:
            chosen = s.pick(candidates, user(key))
            chosen.active += 1
            inFlight.append(chosen)
            if factor:
                self.assertLessEqual(chosen.active, self.cap(factor, candidates, chosen))
            largest = max(largest, chosen.active)
            if rng.random() < 0.3:
                ended = inFlight.pop(rng.randrange(len(inFlight)))
                ended.active -= 1
        return largest

    def test_oneHotKey(self):
        """
        Every request with the same key: without a bound all go to one
        member; with 1.25 none gets more than its cap.
        """
        keys = [b"hot"] * 500
        candidates = ten()
        self.assertEqual(self.simulate(0, candidates, keys), sum(m.active for m in candidates))
        # Its walk over the table meets every member in turn, and a member
        # takes requests once those before it are full: it takes 8 of 10
        # (1 / 1.25 of them) to hold the load.
        candidates = ten()
        self.simulate(1.25, candidates, keys)
        self.assertGreaterEqual(sum(1 for m in candidates if m.active), 8, candidates)

    def test_skewedKeysWeighted(self):
        """
        Zipf-like keys over weighted members keep every member under its
        cap.
        """
        rng = random.Random(3)
        popular = [b"key-%d" % (i,) for i in range(200)]
        odds = [1 / (rank + 1) for rank in range(len(popular))]
        keys = rng.choices(popular, odds, k=2000)
        for factor in (1.25, 2.0):
            candidates = members("abcde", a=1, b=1, c=2, d=3, e=5)
            self.simulate(factor, candidates, keys)

    def test_underCapKeepsPlace(self):
        """
        A member under its cap keeps its keys: when nothing is in flight,
        bounded and unbounded placements agree.
        """
        candidates = ten()
        self.assertEqual(
            placement(scheduler(balance_factor=1.25), candidates, VIEWS[:2000]),
            placement(scheduler(), candidates, VIEWS[:2000]),
        )

    def test_nextInTable(self):
        """
        A full member's keys go on to the next members in table order; they
        are spread, not all on one neighbour.
        """
        candidates = ten()
        s = scheduler(balance_factor=1.25)
        home = placement(scheduler(), candidates, VIEWS[:2000])
        full = candidates[0]
        full.active = 5
        for other in candidates[1:]:
            other.active = 1
        # In flight: 14 (+1); a cap of ceil(1.25 * 15 / 10) = 2.
        moved = Counter()
        for view, was in zip(VIEWS[:2000], home):
            now = s.pick(candidates, view).name
            if was == full.name:
                self.assertNotEqual(now, full.name)
                moved[now] += 1
            else:
                self.assertEqual(now, was)
        self.assertEqual(len(moved), 9, moved)

    def test_leastLoadedLast(self):
        """
        When no member in the table may take the request, the least loaded
        relative to weight is chosen (the first of equals).
        """
        a, b, c = candidateMember("a", 2, 4), candidateMember("b", 1, 1), candidateMember("c", 1, 2)
        self.assertIs(hashing._leastLoaded([a, b, c]), b)
        self.assertIs(hashing._leastLoaded([a, c]), a)


class TableTests(SynchronousTestCase):
    def test_sharesFollowWeights(self):
        """
        Each member holds its weight's share of the slots, to within a few.
        """
        entries = [("a", 1), ("b", 2), ("c", 3), ("d", 4)]
        counts = Counter(buildTable(entries))
        for position, (_, weight) in enumerate(entries):
            self.assertLessEqual(abs(counts[position] - TABLE_SIZE * weight / 10), 2)

    def test_orderOnlyRenumbers(self):
        forward = buildTable([("a", 1), ("b", 3)])
        backward = buildTable([("b", 3), ("a", 1)])
        self.assertEqual(list(backward), [1 - p for p in forward])

    def test_noWeight(self):
        """
        Members of no weight get no slot; if none has any, all count equal.
        """
        self.assertEqual(set(buildTable([("a", 0), ("b", 1)])), {1})
        self.assertEqual(set(buildTable([("a", 0), ("b", 0)])), {0, 1})

    def test_tableWeight(self):
        for weight, expected in [(3, 3), (3.0, 3), (0, 0), (-1, 0)]:
            self.assertEqual(repr(tableWeight(weight)), repr(expected))
        # Fractions (a slow start) go to steps of 2**(1/4).
        self.assertEqual(tableWeight(0.5), 0.5)
        self.assertEqual(tableWeight(0.51), 0.5)
        self.assertEqual(tableWeight(1.9), 2.0)
        self.assertEqual(tableWeight(1.6), 2 ** 0.75)
        steps = {tableWeight(0.05 + i * 0.95 / 1000) for i in range(1000)}
        self.assertLessEqual(len(steps), 20)


class CacheTests(SynchronousTestCase):
    def setUp(self):
        self.builds = []
        build = maglev.buildTable

        def counting(entries):
            self.builds.append(entries)
            return build(entries)

        self.patch(hashing, "buildTable", counting)

    def test_builtOncePerSet(self):
        """
        A table is built for a new set of candidates only; the last few are
        kept, so a member going down and up again costs nothing.
        """
        s = scheduler()
        everyone = ten()
        fewer = everyone[1:]
        for candidates in [everyone, fewer, everyone, ten(), fewer]:
            placement(s, candidates, VIEWS[:50])
        self.assertEqual(len(self.builds), 2)
        # A new weight is a new set.
        everyone[3].weight = 2
        placement(s, everyone, VIEWS[:50])
        self.assertEqual(len(self.builds), 3)

    def test_bounded(self):
        """
        No more than L{CACHED_TABLES} tables are kept.
        """
        s = scheduler()
        everyone = ten()
        for gone in range(10):
            placement(s, everyone[:gone] + everyone[gone + 1:], VIEWS[:5])
        self.assertEqual(len(self.builds), 10)
        self.assertEqual(len(s._tables), CACHED_TABLES)

    def test_slowStartSteps(self):
        """
        A member ramping up through fractional weights rebuilds the table
        only at each step of L{tableWeight}.
        """
        s = scheduler()
        candidates = ten()
        for i in range(200):
            candidates[0].weight = 0.05 + i * 0.95 / 200
            s.pick(candidates, user(b"ann"))
        self.assertLessEqual(len(self.builds), 20)


#: Where users 0 to 15 go among app1..app10 ("0" is app10).
PINNED = "5315653278833135"


class RealSocketTests(ProxyTestCase):
    """
    A balancer with C{scheduler = "hash"} on C{X-User} in front of three
    recording members on 127.0.0.1.
    """

    async def test_sameUserSameMember(self):
        options = {"key": "header:X-User"}
        schedulers = dict(proxyharness.SCHEDULERS)
        schedulers["hash"] = lambda: consistentHash.makeScheduler(options)
        self.patch(proxyharness, "SCHEDULERS", schedulers)
        servers = self.startMembers("app1", "app2", "app3")
        self.startBalancer([m.url for m in servers], scheduler="hash")
        client = self.client()
        users = [b"user-%d" % (i,) for i in range(12)]
        placed = {}
        for _ in range(3):
            for u in users:
                response, body = await self.fetch(
                    client, "/", headers=Headers({b"X-User": [u]})
                )
                self.assertEqual(response.code, 200, body)
                placed.setdefault(u, set()).add(servedBy(response))
        self.assertTrue(all(len(where) == 1 for where in placed.values()), placed)
        self.assertEqual(set().union(*placed.values()), {"app1", "app2", "app3"}, placed)
        # The place is the one the scheduler computes in this process.
        s = consistentHash.makeScheduler(options)
        candidates = members(["app1", "app2", "app3"])
        self.assertEqual({u: {s.pick(candidates, user(u)).name} for u in users}, placed)
        self.assertEqual(sum(len(m.seen) for m in servers), 36)


class RealSocketRemapTests(ProxyTestCase):
    """
    Through the proxy on 127.0.0.1: what moves when a member leaves, and
    what a bound on load does to one busy key.
    """

    def startHash(self, names, **options):
        options = dict({"key": "header:X-User"}, **options)
        schedulers = dict(proxyharness.SCHEDULERS)
        schedulers["hash"] = lambda: consistentHash.makeScheduler(options)
        self.patch(proxyharness, "SCHEDULERS", schedulers)
        servers = self.startMembers(*names)
        return servers, self.startBalancer([m.url for m in servers], scheduler="hash")

    async def placements(self, client, users):
        placed = {}
        for u in users:
            response, body = await self.fetch(client, "/", headers=Headers({b"X-User": [u]}))
            self.assertEqual(response.code, 200, body)
            placed[u] = servedBy(response)
        return placed

    async def test_onlyTheLeavingMembersUsersMove(self):
        """
        Taking 1 of 5 members out moves its users, and (nearly) no other
        user: measured over 400 users.
        """
        servers, balancer = self.startHash(["app1", "app2", "app3", "app4", "app5"])
        client = self.client()
        users = [b"user-%d" % i for i in range(400)]
        before = await self.placements(client, users)
        balancer.setAdmin(balancer.member("app5"), "disabled")
        after = await self.placements(client, users)
        leaving = [u for u in users if before[u] == "app5"]
        staying = [u for u in users if before[u] != "app5"]
        movedOthers = [u for u in staying if after[u] != before[u]]
        print(f"\n{len(leaving)} of {len(users)} users on app5 moved; "
              f"{len(movedOthers)} of the others moved")
        self.assertTrue(60 <= len(leaving) <= 100, len(leaving))  # about a fifth
        self.assertTrue(all(after[u] != "app5" for u in users))
        self.assertLessEqual(len(movedOthers), len(staying) // 50)  # (Maglev: almost none)
        balancer.setAdmin(balancer.member("app5"), "enabled")
        self.assertEqual(await self.placements(client, users), before)

    async def test_boundedLoadSpreadsABusyKey(self):
        """
        Twelve requests in flight for one user: without a bound all wait on
        that user's member; with C{balance_factor = 1.25} none of the three
        members holds more than ceil(1.25 * 12 / 3) = 5 of them.
        """
        for factor, most in ((0, 12), (1.25, 5)):
            servers, balancer = self.startHash(["app1", "app2", "app3"], balance_factor=factor)
            client = self.client()
            responses = [
                defer.ensureDeferred(self.fetch(client, "/hold", headers=Headers({b"X-User": [b"busy"]})))
                for _ in range(12)
            ]
            await waitUntil(lambda: sum(len(s.hold.held) for s in servers) == 12, reactor)
            held = sorted(len(s.hold.held) for s in servers)
            self.assertLessEqual(held[-1], most, (factor, held))
            if factor:
                self.assertGreater(held[-2], 0, held)
            else:
                self.assertEqual(held, [0, 0, 12])
            for s in servers:
                s.hold.release()
            for d in responses:
                response, body = await d
                self.assertEqual(response.code, 200)
