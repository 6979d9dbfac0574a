"""
L{playbalancer.cluster.mirror.TierMirror} and
L{playbalancer.cluster.cache.SnapshotCache} on their own, without a store
or a node (what a node does with them is in L{tests.test_cluster_node}).
"""

from __future__ import annotations

import json
import os

from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.balancer import Balancer, Member
from playbalancer.cluster.cache import SnapshotCache
from playbalancer.cluster.mirror import TierMirror
from playbalancer.schedulers import RoundRobinScheduler

ADMIN = b"/playbalancer/v1/web/admin/b/"
NODES = b"/playbalancer/v1/web/nodes/"


def record(**fields):
    return json.dumps(fields).encode("utf-8")


class TierMirrorTests(SynchronousTestCase):
    def setUp(self):
        self.balancer = Balancer(
            "b", RoundRobinScheduler(), [Member("m1", "http://127.0.0.1:1")], Clock()
        )
        self.mirror = TierMirror("web", {"b": self.balancer})

    def live(self):
        return [m.name for m in self.balancer.members if not m.removing]

    def test_keys(self):
        self.assertEqual(self.mirror.memberKey("b", "m1"), ADMIN + b"m1")
        self.assertEqual(self.mirror.statusKey("lb1"), NODES + b"lb1")
        self.assertEqual(self.mirror.prefix, b"/playbalancer/v1/web/")

    def test_replaceForgetsWhatIsGone(self):
        """
        A full read without a record that added a member takes the member
        out again; node statuses are replaced, not merged.
        """
        self.mirror.replace(
            5,
            {
                ADMIN + b"m2": (record(url="http://127.0.0.1:2", who="t"), 4),
                NODES + b"lb2": (record(revision=5, inflight={}), 5),
            },
        )
        self.assertEqual(self.live(), ["m1", "m2"])
        self.assertEqual(self.mirror.modRevisions, {ADMIN + b"m2": 4})
        self.assertEqual(list(self.mirror.nodes), ["lb2"])
        self.mirror.replace(7, {NODES + b"lb3": (record(revision=7, inflight={}), 6)})
        self.assertEqual(self.live(), ["m1"])
        self.assertEqual((self.mirror.records, self.mirror.modRevisions), ({}, {}))
        self.assertEqual(list(self.mirror.nodes), ["lb3"])
        self.assertEqual(self.mirror.revision, 7)

    def test_updateSaysWhetherAdminChanged(self):
        """
        L{TierMirror.update} says whether an admin record changed (what a
        node saves its cache for); the revision never goes back.
        """
        self.mirror.replace(10, {})
        self.assertFalse(self.mirror.update(9, [(NODES + b"lb2", record(revision=9, inflight={}), 9)]))
        self.assertEqual(self.mirror.revision, 10)
        self.assertIn("lb2", self.mirror.nodes)
        self.assertFalse(self.mirror.update(11, [(NODES + b"lb2", None, 11)]))
        self.assertEqual(self.mirror.nodes, {})
        self.assertTrue(self.mirror.update(12, [(ADMIN + b"m1", record(admin="drain", who="t"), 12)]))
        self.assertEqual(self.balancer.member("m1").admin, "drain")
        self.assertEqual(self.mirror.revision, 12)
        self.assertTrue(self.mirror.update(13, [(ADMIN + b"m1", None, 13)]))
        self.assertEqual((self.mirror.records, self.mirror.modRevisions), ({}, {}))

    def test_snapshotRestores(self):
        """
        What L{TierMirror.snapshot} gives, L{TierMirror.restore} applies
        (through JSON, as the cache file holds it).
        """
        self.mirror.replace(8, {ADMIN + b"m1": (record(admin="drain", weight=3, who="t"), 8)})
        snapshot = json.loads(json.dumps(self.mirror.snapshot()))
        self.assertEqual(
            snapshot, {"revision": 8, "records": {(ADMIN + b"m1").decode(): {"admin": "drain", "weight": 3, "who": "t"}}}
        )
        other = Balancer("b", RoundRobinScheduler(), [Member("m1", "http://127.0.0.1:1")], Clock())
        restored = TierMirror("web", {"b": other})
        restored.restore(snapshot)
        self.assertEqual((other.member("m1").admin, other.member("m1").configuredWeight), ("drain", 3))
        self.assertEqual(restored.revision, 8)
        self.assertEqual(restored.modRevisions, {})

    def test_tierState(self):
        """
        A node is behind while its status is older than the member's last
        change; in-flight requests are summed over every node, this one's
        own status counted as given.
        """
        self.mirror.replace(
            20,
            {
                ADMIN + b"m1": (record(admin="drain"), 15),
                NODES + b"lb2": (record(revision=14, inflight={"b/m1": 2}), 14),
                NODES + b"lb3": (record(revision=15, inflight={"b/m1": 1, "b/m2": 4}), 15),
            },
        )
        own = {"revision": 20, "inflight": {"b/m1": 3}}
        self.assertEqual(
            self.mirror.tierState("b", "m1", "lb1", own),
            {"nodes": ["lb1", "lb2", "lb3"], "behind": ["lb2"], "inflight": 6, "idle": False},
        )
        self.assertEqual(
            self.mirror.tierState("b", "m3", "lb1", {"revision": 20, "inflight": {}}),
            {"nodes": ["lb1", "lb2", "lb3"], "behind": [], "inflight": 0, "idle": True},
        )
        self.assertEqual(
            self.mirror.nodeSummaries("lb1", own),
            [
                {"name": "lb1", "revision": 20, "inflight": 3},
                {"name": "lb2", "revision": 14, "inflight": 2},
                {"name": "lb3", "revision": 15, "inflight": 5},
            ],
        )


class SnapshotCacheTests(SynchronousTestCase):
    def setUp(self):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def logged(self):
        return " ".join(formatEvent(e) for e in self.events)

    def test_savedAndRead(self):
        cache = SnapshotCache(self.mktemp())
        self.assertIsNone(cache.read())
        self.assertEqual(self.logged(), "")  # a missing file is not a problem
        snapshot = {"revision": 3, "records": {"k": {"admin": "drain"}}}
        cache.save(snapshot)
        self.assertEqual(cache.read(), snapshot)

    def test_noPathKeepsNothing(self):
        cache = SnapshotCache(None)
        cache.save({"revision": 3, "records": {}})
        self.assertIsNone(cache.read())

    def test_problemsLoggedNotRaised(self):
        path = self.mktemp()
        cache = SnapshotCache(os.path.join(path, "missing-directory", "web.json"))
        cache.save({"revision": 3, "records": {}})
        self.assertIn("cannot write the cache", self.logged())
        with open(path, "w") as f:
            f.write("{")
        self.assertIsNone(SnapshotCache(path).read())
        self.assertIn("cannot use the cache", self.logged())
        with open(path, "w") as f:
            f.write('{"revision": true, "records": {}}')
        self.assertIsNone(SnapshotCache(path).read())
        self.assertIn("not a snapshot", self.logged())
