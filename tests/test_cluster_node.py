"""
L{playbalancer.cluster.node.ClusterNode} with an in-memory store: what it
does with records, errors and a compacted revision.
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from playbalancer.balancer import Balancer, Member
from playbalancer.cluster.etcd import CompactedError
from playbalancer.cluster.interfaces import IStateStore, StoreError
from playbalancer.cluster.node import ClusterNode
from playbalancer.schedulers import RoundRobinScheduler

PREFIX = b"/playbalancer/v1/web/admin/b/"


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

    async def range(self, prefix):
        self.ranges += 1
        found = {k: (v, 1) for k, v in self.records.items() if k.startswith(prefix)}
        return 10 + self.ranges, found

    async def watch(self, prefix, startRevision, onEvents):
        ending = self.watches.pop(0) if self.watches else None
        if ending is not None:
            raise ending
        d = Deferred()
        self.open.append(d)
        await d

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
