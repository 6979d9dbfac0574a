"""
L{playbalancer.cluster.node.ClusterNode} with an in-memory store: what it
does with records, errors and a compacted revision.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from playbalancer.balancer import Balancer, Member
from playbalancer.cluster.interfaces import CompactedError, IStateStore, StoreError
from playbalancer.cluster.node import ClusterNode
from playbalancer.schedulers import RoundRobinScheduler

PREFIX = b"/playbalancer/v1/web/admin/b/"
NODES = b"/playbalancer/v1/web/nodes/"


@implementer(IStateStore)
class FakeStore:
    """
    Answers from a dict; C{watches} says how each watch ends.
    """

    def __init__(self, records, watches):
        self.records = records
        self.watches = list(watches)
        self.ranges = 0
        self.open = []
        self.onEvents = None
        self.written = []

    async def range(self, prefix):
        self.ranges += 1
        found = {k: (v, 1) for k, v in self.records.items() if k.startswith(prefix)}
        return 10 + self.ranges, found

    async def watch(self, prefix, startRevision, onEvents):
        ending = self.watches.pop(0) if self.watches else None
        if ending is not None:
            raise ending
        self.onEvents = onEvents
        d = Deferred()
        self.open.append(d)
        await d

    def send(self, key, value, revision=20):
        """
        Deliver one change to the open watch.
        """
        self.onEvents(revision, [(key, value, revision)])

    async def get(self, key):
        value = self.records.get(key)
        return value, (1 if value is not None else 0)

    async def compareAndSet(self, key, value, modRevision):
        self.records[key] = value
        self.written.append((key, value))
        self.send(key, value, 30)
        return 30

    def stopWatching(self):
        for d in self.open:
            if not d.called:
                d.errback(StoreError("stopped"))

    def close(self):
        return None

    def rotate(self):
        pass

    async def keepAlive(self, lease):
        return True

    async def grant(self, ttl):
        return 1

    async def put(self, key, value, lease=None):
        return 1


class ClusterNodeTests(TestCase):
    def setUp(self):
        self.clock = Clock()
        self.balancer = Balancer(
            "b", RoundRobinScheduler(), [Member("m1", "http://127.0.0.1:1"), Member("m2", "http://127.0.0.1:2")], self.clock
        )

    def start(self, store):
        node = ClusterNode(store, {"b": self.balancer}, "web", "lb1", self.clock, startupTimeout=5)
        node.startService()
        self.addCleanup(node.stopService)
        return node

    def test_compactedRevisionResyncs(self):
        """
        A watch that finds its revision compacted leads to a full read of
        the prefix again, at once, with the store not marked degraded.
        """
        store = FakeStore(
            {PREFIX + b"m1": json.dumps({"admin": "drain", "who": "t"}).encode()},
            [CompactedError("compacted")],
        )
        node = self.start(store)
        self.assertEqual(store.ranges, 2)
        self.assertFalse(node.degraded)
        self.assertEqual(self.balancer.member("m1").admin, "drain")

    def test_errorsChangeNothing(self):
        """
        A store that fails keeps the last known state and says degraded;
        nothing is drained because of an error.
        """
        store = FakeStore({}, [StoreError("boom")])
        node = self.start(store)
        self.assertTrue(node.degraded)
        self.assertEqual([m.admin for m in self.balancer.members], ["enabled", "enabled"])
        self.clock.advance(1)
        self.assertFalse(node.degraded)

    def test_badRecordsIgnored(self):
        store = FakeStore(
            {
                PREFIX + b"m1": b"not json",
                PREFIX + b"m2": json.dumps({"admin": "bogus", "weight": "x"}).encode(),
            },
            [],
        )
        self.start(store)
        self.assertEqual([m.admin for m in self.balancer.members], ["enabled", "enabled"])
        self.assertEqual([m.configuredWeight for m in self.balancer.members], [1, 1])


    def test_stoppedWhenReadyStartsNoWatch(self):
        """
        A node stopped by whoever waits for it to be ready (inside the
        C{ready} callback, as a test that ends at once does) starts no
        watch after the first read: nothing is left connecting.
        """
        store = FakeStore({}, [])
        watched = []
        store.watch = lambda *args: watched.append(args) or Deferred()
        node = ClusterNode(store, {"b": self.balancer}, "web", "lb1", self.clock, startupTimeout=5)
        node.ready.addCallback(lambda _: node.stopService())
        node.startService()
        self.assertTrue(node.ready.called)
        self.assertEqual(watched, [])


class StoreInterfaceTests(TestCase):
    def test_compactedErrorIsTheInterfaces(self):
        """
        C{CompactedError} belongs to the store interface, which documents
        it on C{watch}, so that any store can ask for a full read again;
        etcd's module gives the same class.
        """
        from playbalancer.cluster import etcd

        self.assertTrue(issubclass(CompactedError, StoreError))
        self.assertEqual(CompactedError.__module__, "playbalancer.cluster.interfaces")
        self.assertIs(etcd.CompactedError, CompactedError)
        self.assertIn("CompactedError", IStateStore["watch"].getDoc())

    def test_nodeNeedsNoEtcd(self):
        """
        The node knows its store only by the interface: importing it does
        not import the etcd client.
        """
        code = "import sys, playbalancer.cluster.node\nprint('playbalancer.cluster.etcd' in sys.modules)\n"
        output = subprocess.check_output([sys.executable, "-c", code])
        self.assertEqual(output.strip(), b"False")


class BadRecordTests(TestCase):
    """
    A record that does not pass the API's checks is skipped with a log
    line naming its key; the node keeps following (#14 item 7).
    """

    def setUp(self):
        self.clock = Clock()
        self.balancer = Balancer(
            "b", RoundRobinScheduler(), [Member("m1", "http://127.0.0.1:1"), Member("m2", "http://127.0.0.1:2")], self.clock
        )
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def start(self, records, **kwargs):
        store = FakeStore(records, [])
        node = ClusterNode(store, {"b": self.balancer}, "web", "lb1", self.clock, startupTimeout=5, **kwargs)
        node.startService()
        self.addCleanup(node.stopService)
        return store, node

    def logged(self):
        return [formatEvent(e) for e in self.events]

    def assertSkipped(self, text):
        lines = [line for line in self.logged() if "skipping" in line and text in line]
        self.assertTrue(lines, self.logged())

    def assertFollowing(self, store, node):
        """
        The watch is open and a later good record still applies.
        """
        self.assertFalse(node.degraded, node.reason)
        self.assertEqual(store.ranges, 1)
        store.send(PREFIX + b"m2", json.dumps({"admin": "drain", "who": "t"}).encode())
        self.assertEqual(self.balancer.member("m2").admin, "drain")
        self.assertNotIn("cluster follower stopped", " ".join(self.logged()))

    def test_negativeWeight(self):
        store, node = self.start({PREFIX + b"m1": b'{"weight": -1}'})
        self.assertEqual(self.balancer.member("m1").configuredWeight, 1)
        self.assertSkipped("/playbalancer/v1/web/admin/b/m1")
        self.assertFollowing(store, node)

    def test_negativeWeightInAnEvent(self):
        store, node = self.start({})
        store.send(PREFIX + b"m1", b'{"weight": -1}')
        self.assertEqual(self.balancer.member("m1").configuredWeight, 1)
        self.assertSkipped("/playbalancer/v1/web/admin/b/m1")
        self.assertFollowing(store, node)

    def test_urlNotAString(self):
        store, node = self.start({PREFIX + b"m3": b'{"url": 5}'})
        self.assertIsNone(self.balancer.member("m3"))
        self.assertSkipped("/playbalancer/v1/web/admin/b/m3")
        self.assertFollowing(store, node)

    def test_urlWithLineBreak(self):
        store, node = self.start({})
        store.send(PREFIX + b"m3", json.dumps({"url": "http://127.0.0.1:3/ HTTP/1.1\r\nX: y"}).encode())
        self.assertIsNone(self.balancer.member("m3"))
        self.assertSkipped("admin/b/m3")
        self.assertFollowing(store, node)

    def test_keyNotUTF8(self):
        store, node = self.start({PREFIX + b"m\xff": b'{"admin": "drain"}'})
        self.assertSkipped("admin/b/m\\xff")
        self.assertFollowing(store, node)
        store.send(PREFIX + b"\xfe", None)
        store.send(NODES + b"\xfe", b'{"revision": 1, "inflight": {}}')
        store.send(NODES + b"\xfe", None)
        self.assertFollowing(store, node)

    def test_badMemberName(self):
        store, node = self.start({PREFIX + b"m 1": b'{"admin": "drain"}'})
        self.assertSkipped("admin/b/m 1")
        self.assertFollowing(store, node)

    def test_addedMemberWithBadWeight(self):
        """
        A member record with C{"weight": "x"} adds nothing: requests are
        still picked.
        """
        store, node = self.start({PREFIX + b"m3": json.dumps({"url": "http://127.0.0.1:3", "weight": "x"}).encode()})
        self.assertIsNone(self.balancer.member("m3"))
        self.assertSkipped("admin/b/m3")
        for _ in range(4):
            self.assertIn(self.balancer.pick(None).name, ("m1", "m2"))
        self.assertFollowing(store, node)

    def test_badFieldsKeepTheLastGoodRecord(self):
        store, node = self.start({PREFIX + b"m1": b'{"admin": "drain", "weight": 3}'})
        store.send(PREFIX + b"m1", b'{"admin": "off", "weight": 5}')
        store.send(PREFIX + b"m1", b'{"admin": "enabled", "standby": "yes"}')
        store.send(PREFIX + b"m1", b'{"admin": "enabled", "removed": 1}')
        store.send(PREFIX + b"m1", b'{"admin": "enabled", "who": 7}')
        store.send(PREFIX + b"m1", b'[1]')
        store.send(PREFIX + b"m1", b'\xff')
        member = self.balancer.member("m1")
        self.assertEqual((member.admin, member.configuredWeight, member.standby), ("drain", 3, False))
        self.assertEqual(len([line for line in self.logged() if "skipping" in line]), 6)
        self.assertFollowing(store, node)

    def test_nodeStatusInflightNotTable(self):
        """
        A node record with C{"inflight": 5} is skipped: the summary and
        the tier state (what C{/api/status} shows) still work.
        """
        store, node = self.start({NODES + b"lb2": b'{"revision": 3, "inflight": 5}'})
        self.assertSkipped("nodes/lb2")
        store.send(NODES + b"lb3", b'{"revision": 3, "inflight": {"b/m1": "x"}}')
        store.send(NODES + b"lb4", b'{"revision": "3", "inflight": {}}')
        store.send(NODES + b"lb5", b'"x"')
        self.assertSkipped("nodes/lb5")
        self.assertEqual([n["name"] for n in node.summary()["nodes"]], ["lb1"])
        self.assertEqual(node.tierState("b", "m1")["nodes"], ["lb1"])
        store.send(NODES + b"lb2", b'{"revision": 30, "inflight": {"b/m1": 2}, "at": 1.5}')
        self.assertEqual(node.tierState("b", "m1")["inflight"], 2)
        self.assertFollowing(store, node)

    def test_writeOverABadRecord(self):
        """
        An admin change replaces a bad stored record (from the member's
        state) rather than failing on it.
        """
        store, node = self.start({PREFIX + b"m1": b'{"weight": "x"}'})
        revision = self.successResultOf(ensureDeferred(node.write("b", "m1", {"admin": "drain"}, "t")))
        self.assertEqual(revision, 30)
        written = json.loads(store.written[-1][1])
        self.assertEqual(written, {"admin": "drain", "standby": False, "weight": 1, "who": "t"})
        self.assertEqual(self.balancer.member("m1").admin, "drain")

    def test_badCachedRecordsSkipped(self):
        """
        Records read from the cache file pass the same checks.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            json.dump(
                {
                    "revision": 5,
                    "records": {
                        "/playbalancer/v1/web/admin/b/m1": {"weight": -1},
                        "/playbalancer/v1/web/admin/b/m2": {"admin": "drain"},
                        "/playbalancer/v1/web/admin/b/m3": {"url": 5},
                    },
                },
                f,
            )
        store = FakeStore({}, [StoreError("down")] * 100)
        store.range = lambda prefix: Deferred()  # never answers
        node = ClusterNode(store, {"b": self.balancer}, "web", "lb1", self.clock, cachePath=path, startupTimeout=1)
        node.startService()
        self.addCleanup(node.stopService)
        self.clock.advance(1)
        self.assertTrue(node.ready.called)
        self.assertEqual(self.balancer.member("m2").admin, "drain")
        self.assertEqual(self.balancer.member("m1").configuredWeight, 1)
        self.assertIsNone(self.balancer.member("m3"))
        self.assertSkipped("admin/b/m1")
        self.assertSkipped("admin/b/m3")

    def test_cacheNotASnapshot(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('{"revision": "x", "records": []}')
        store = FakeStore({}, [])
        store.range = lambda prefix: Deferred()  # never answers
        node = ClusterNode(store, {"b": self.balancer}, "web", "lb1", self.clock, cachePath=path, startupTimeout=1)
        node.startService()
        self.addCleanup(node.stopService)
        self.clock.advance(1)
        self.assertTrue(node.ready.called)
        self.assertIn("not a snapshot", " ".join(self.logged()))

    def test_unexpectedErrorKeepsFollowing(self):
        """
        An answer the follower did not expect degrades the node and it
        reads everything again, rather than stopping for good.
        """
        store = FakeStore({PREFIX + b"m1": b'{"admin": "drain"}'}, [])
        answers = [KeyError("header")]
        original = store.range

        async def range(prefix):
            if answers:
                raise answers.pop()
            return await original(prefix)

        store.range = range
        node = ClusterNode(store, {"b": self.balancer}, "web", "lb1", self.clock, startupTimeout=5)
        node.startService()
        self.addCleanup(node.stopService)
        self.assertTrue(node.degraded)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        self.clock.advance(1)
        self.assertFalse(node.degraded)
        self.assertEqual(self.balancer.member("m1").admin, "drain")


class CacheFileTests(TestCase):
    """
    The cache of the last snapshot is written atomically: a unique
    temporary name in the same directory, the file and the directory
    synced (#14 item 12).
    """

    def test_writtenAtomically(self):
        directory = self.mktemp()
        os.mkdir(directory)
        path = os.path.join(directory, "web.json")
        os.mkdir(path + ".tmp")  # a fixed temporary name would be in the way
        synced = []
        realFsync = os.fsync

        def fsync(fd):
            synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
            realFsync(fd)

        self.patch(os, "fsync", fsync)
        clock = Clock()
        balancer = Balancer("b", RoundRobinScheduler(), [Member("m1", "http://127.0.0.1:1")], clock)
        store = FakeStore({PREFIX + b"m1": b'{"admin": "drain"}'}, [])
        node = ClusterNode(store, {"b": balancer}, "web", "lb1", clock, cachePath=path)
        node.startService()
        self.addCleanup(node.stopService)
        with open(path) as f:
            cached = json.load(f)
        self.assertEqual(cached["records"], {PREFIX.decode() + "m1": {"admin": "drain"}})
        self.assertEqual(len(synced), 2, synced)
        self.assertTrue(os.path.basename(synced[0]).startswith("."), synced)
        self.assertEqual(synced[1], os.path.realpath(directory))
        self.assertEqual(sorted(os.listdir(directory)), ["web.json", "web.json.tmp"])


class _Response:
    """
    A streamed response of the given lines.
    """

    code = 200

    def __init__(self, lines):
        self.lines = lines

    def deliverBody(self, protocol):
        from twisted.python.failure import Failure
        from twisted.web.client import ResponseDone

        for line in self.lines:
            protocol.dataReceived(line + b"\n")
        protocol.connectionLost(Failure(ResponseDone()))


class _HTTP:
    def __init__(self, lines):
        self.lines = lines

    async def post(self, url, **kwargs):
        return _Response(self.lines)


class EtcdWatchTests(TestCase):
    def test_createdIsNotApplied(self):
        """
        The header revision of the "created" answer is the store's current
        revision, not changes delivered: it must not count as applied (a
        write answered before its event arrives would look applied).
        """
        from playbalancer.cluster.etcd import EtcdStore

        created = {"result": {"header": {"revision": "7"}, "created": True}}
        event = {
            "result": {
                "header": {"revision": "7"},
                "events": [{"kv": {"key": "YQ==", "value": "Yg==", "mod_revision": "7"}}],
            }
        }
        progress = {"result": {"header": {"revision": "9"}}}
        lines = [json.dumps(m).encode() for m in (created, event, progress)]
        store = EtcdStore(["http://127.0.0.1:1"], _HTTP(lines), None)
        seen = []
        d = ensureDeferred(store.watch(b"a", 7, lambda revision, changes: seen.append((revision, changes))))
        self.failureResultOf(d, StoreError)
        self.assertEqual(seen, [(7, [(b"a", b"b", 7)]), (9, [])])


class AccessConfigTests(TestCase):
    """
    The C{[cluster]} keys for etcd's authentication and TLS: a bad one is
    named, and files are checked when the config is read.
    """

    def parse(self, extra, endpoints='["https://127.0.0.1:2379"]'):
        from playbalancer.config import parseConfig, tomllib

        text = f"""
[[listen]]
endpoint = "tcp:8080"
balancer = "web"
[balancer.web]
[[balancer.web.member]]
name = "a"
url = "http://127.0.0.1:1"
[cluster]
endpoints = {endpoints}
tier = "web"
{extra}
"""
        return parseConfig(tomllib.loads(text)).cluster

    def refused(self, extra, endpoints='["https://127.0.0.1:2379"]'):
        from playbalancer.config import ConfigError

        return str(self.assertRaises(ConfigError, self.parse, extra, endpoints))

    def certificate(self):
        from playbalancer.testing import writeSelfSigned

        directory = self.mktemp()
        os.mkdir(directory)
        return writeSelfSigned(directory)

    def test_userAndPassword(self):
        cluster = self.parse('user = "pb"\npassword = "s3cret"')
        self.assertEqual((cluster.user, cluster.password), ("pb", "s3cret"))
        self.assertNotIn("s3cret", repr(cluster))

    def test_userNeedsAPassword(self):
        self.assertEqual(self.refused('user = "pb"'), "cluster.user: needs password or password_file")
        self.assertEqual(self.refused('password = "x"'), "cluster.password: needs user")
        self.assertEqual(self.refused('password_file = "/x"'), "cluster.password_file: needs user")
        self.assertEqual(
            self.refused('user = "pb"\npassword = "x"\npassword_file = "/x"'),
            "cluster.password: give password or password_file, not both",
        )
        self.assertEqual(self.refused('user = ""\npassword = "x"'), "cluster.user: expected a user name, got ''")
        self.assertEqual(self.refused("user = 5"), "cluster.user: expected a string, got 5")

    def test_tlsFiles(self):
        key, cert = self.certificate()
        cluster = self.parse(f'ca_file = "{cert}"\ncert_file = "{cert}"\nkey_file = "{key}"')
        self.assertEqual((cluster.caFile, cluster.certFile, cluster.keyFile), (cert, cert, key))

    def test_badTLSFiles(self):
        key, cert = self.certificate()
        otherKey, _ = self.certificate()
        self.assertIn("cluster.ca_file: cannot read /nonexistent", self.refused('ca_file = "/nonexistent"'))
        self.assertIn("cluster.ca_file: ", self.refused(f'ca_file = "{key}"'))
        self.assertEqual(
            self.refused(f'cert_file = "{cert}"'),
            "cluster.key_file: missing (cert_file and key_file go together)",
        )
        self.assertEqual(
            self.refused(f'key_file = "{key}"'),
            "cluster.cert_file: missing (cert_file and key_file go together)",
        )
        self.assertIn(
            "cluster.cert_file: ", self.refused(f'cert_file = "{cert}"\nkey_file = "{otherKey}"')
        )
        self.assertIn("cluster.cert_file: cannot read /nonexistent", self.refused(f'cert_file = "/nonexistent"\nkey_file = "{key}"'))

    def test_tlsOnlyForHTTPS(self):
        _, cert = self.certificate()
        endpoints = '["https://127.0.0.1:2379", "http://127.0.0.1:2380"]'
        self.assertEqual(self.refused(f'ca_file = "{cert}"', endpoints), "cluster.ca_file: only for https:// endpoints")

    def test_passwordFile(self):
        """
        The password file is read when the node is made; one others may
        read is warned about; one that cannot be read stops start-up
        naming the key.
        """
        from playbalancer.cluster.access import storeAccess

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("s3cret\n")
        os.chmod(path, 0o600)
        cluster = self.parse(f'user = "pb"\npassword_file = "{path}"')
        self.assertEqual(storeAccess(cluster)[1], ("pb", "s3cret"))
        self.assertEqual(events, [])
        os.chmod(path, 0o644)
        self.assertEqual(storeAccess(cluster)[1], ("pb", "s3cret"))
        self.assertIn("may be read by group or others", formatEvent(events[0]))
        os.unlink(path)
        error = self.assertRaises(ValueError, storeAccess, cluster)
        self.assertIn(f"cluster.password_file: cannot read {path}", str(error))

    def test_unreadablePasswordFileStopsStartUp(self):
        from playbalancer.tap import makeClusterNode

        cluster = self.parse('user = "pb"\npassword_file = "/nonexistent"', '["http://127.0.0.1:1"]')
        error = self.assertRaises(SystemExit, makeClusterNode, cluster, {}, Clock())
        self.assertIn("cluster.password_file: cannot read /nonexistent", str(error))
