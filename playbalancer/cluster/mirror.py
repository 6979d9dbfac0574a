"""
A node's copy of its tier's keys in the store (L{TierMirror}): the admin
records, applied to the local balancers as they arrive, and the other
nodes' statuses. L{playbalancer.cluster.node} feeds it what it reads.
"""

from __future__ import annotations

from twisted.logger import Logger

from playbalancer import memberstate
from playbalancer.cluster.records import RecordError, adminKey, adminRecord, nodeKey, nodeStatus, showKey

# One namespace for the cluster node's log lines, as before this module.
_log = Logger(namespace="playbalancer.cluster.node")


def warnSkipped(key, problem):
    """
    Log that the record at C{key} is not used, and why.
    """
    _log.warn(
        "cluster: skipping the record at {key}: {problem}",
        key=showKey(key),
        problem=problem,
        playbalancer_event="cluster.bad_record",
    )


class TierMirror:
    """
    The keys under C{/playbalancer/v1/<tier>/} as this node last read them.

    Each admin record is checked and applied to C{balancers} as it
    arrives; a bad one is skipped, the member keeping its last good
    state. Nothing is applied because of an error or an empty answer:
    only records that were read.

    @ivar revision: the store revision applied.
    @ivar records: C{{key: record}}, the admin records applied.
    @ivar modRevisions: C{{key: revision}}, when each admin record last
        changed.
    @ivar nodes: C{{node name: status}}, the other nodes' last good
        statuses.
    """

    def __init__(self, tier, balancers):
        self.balancers = balancers
        self.prefix = f"/playbalancer/v1/{tier}/".encode("utf-8")
        self.adminPrefix = self.prefix + b"admin/"
        self.nodesPrefix = self.prefix + b"nodes/"
        self.revision = 0
        self.records = {}
        self.modRevisions = {}
        self.nodes = {}

    def memberKey(self, balancerName, memberName):
        """
        The key of one member's admin record.
        """
        return self.adminPrefix + f"{balancerName}/{memberName}".encode("utf-8")

    def statusKey(self, node):
        """
        The key of one node's status.
        """
        return self.nodesPrefix + node.encode("utf-8")

    def replace(self, revision, found):
        """
        Take a full read of the prefix: records no longer there are
        forgotten, the others applied, the node statuses replaced.

        @param found: C{{key: (value, modRevision)}}.
        """
        admin = {}
        nodes = {}
        for key, (value, modRevision) in found.items():
            if key.startswith(self.adminPrefix):
                admin[key] = (value, modRevision)
            elif key.startswith(self.nodesPrefix):
                nodes[key] = value
        for key in list(self.records):
            if key not in admin:
                self._forget(key)
        for key, (value, modRevision) in admin.items():
            self.modRevisions[key] = modRevision
            self._apply(key, value)
        self.nodes = {}
        for key, value in nodes.items():
            self._nodeStatus(key, value)
        self.revision = revision

    def update(self, revision, changes):
        """
        Take one batch of watch events.

        @param changes: C{(key, value, modRevision)} triples, C{value}
            L{None} for a deleted key.
        @return: whether any admin record changed.
        """
        for key, value, modRevision in changes:
            if key.startswith(self.adminPrefix):
                self.modRevisions[key] = modRevision
                if value is None:
                    self._forget(key)
                else:
                    self._apply(key, value)
            elif key.startswith(self.nodesPrefix):
                if value is None:
                    self.nodes.pop(key[len(self.nodesPrefix) :].decode("utf-8", "replace"), None)
                else:
                    self._nodeStatus(key, value)
        if revision > self.revision:
            self.revision = revision
        return any(key.startswith(self.adminPrefix) for key, _, _ in changes)

    def snapshot(self):
        """
        The revision and the admin records applied, as JSON-able data
        (what L{restore} takes).
        """
        return {
            "revision": self.revision,
            "records": {k.decode("utf-8"): v for k, v in self.records.items()},
        }

    def restore(self, snapshot):
        """
        Apply the records of a L{snapshot} (from the cache) and take its
        revision; nothing is forgotten.
        """
        for key, record in snapshot["records"].items():
            self._apply(key.encode("utf-8"), record)
        self.revision = snapshot["revision"]

    def tierState(self, balancerName, memberName, node, status):
        """
        Whether every known node applied the last change of one member's
        record and has nothing in flight on it.

        @param node: this node's name.
        @param status: this node's status now (not the one it published).
        @return: C{{"nodes", "behind", "inflight", "idle"}}.
        """
        needed = self.modRevisions.get(self.memberKey(balancerName, memberName), 0)
        member = f"{balancerName}/{memberName}"
        nodes = self._withOwn(node, status)
        inflight = 0
        behind = []
        for name, known in sorted(nodes.items()):
            inflight += int(known.get("inflight", {}).get(member, 0))
            if int(known.get("revision", 0)) < needed:
                behind.append(name)
        return {
            "nodes": sorted(nodes),
            "behind": behind,
            "inflight": inflight,
            "idle": not behind and inflight == 0,
        }

    def nodeSummaries(self, node, status):
        """
        C{{"name", "revision", "inflight"}} of every known node, by name,
        C{node} (this one) at C{status}.
        """
        return [
            {
                "name": name,
                "revision": known.get("revision"),
                "inflight": sum(known.get("inflight", {}).values()),
            }
            for name, known in sorted(self._withOwn(node, status).items())
        ]

    def _withOwn(self, node, status):
        nodes = dict(self.nodes)
        nodes[node] = status
        return nodes

    def _nodeStatus(self, key, value):
        """
        Keep another node's status; a bad one is skipped (its last good
        one stays).
        """
        try:
            name = nodeKey(key[len(self.nodesPrefix) :])
            self.nodes[name] = nodeStatus(value)
        except RecordError as e:
            warnSkipped(key, e)

    def _apply(self, key, value):
        """
        Check one admin record (bytes, or decoded from the cache) and apply
        it; a bad one is skipped, the member keeps its last good state.
        """
        try:
            balancerName, memberName = adminKey(key[len(self.adminPrefix) :])
            balancer = self.balancers.get(balancerName)
            if balancer is None:
                return
            record = adminRecord(balancer, memberName, value)
        except RecordError as e:
            warnSkipped(key, e)
            return
        try:
            self._applyRecord(key, balancer, memberName, record)
        except Exception:
            # Nothing a record says may stop the follower.
            _log.failure("cluster: cannot apply the record at {key}", key=showKey(key))

    def _applyRecord(self, key, balancer, memberName, record):
        """
        Make one member match its checked record. A record is one
        L{playbalancer.memberstate} entry, applied through the balancer's
        methods as the state file's and the workers' are.
        """
        self.records[key] = record
        memberstate.applyEntry(balancer, memberName, record, record.get("who") or "cluster")

    def _memberOf(self, key):
        try:
            balancerName, memberName = adminKey(key[len(self.adminPrefix) :])
        except RecordError:
            return None, None
        return self.balancers.get(balancerName), memberName

    def _forget(self, key):
        """
        Drop a deleted record; a member it added is taken out.
        """
        record = self.records.pop(key, None)
        self.modRevisions.pop(key, None)
        if record and record.get("url"):
            balancer, memberName = self._memberOf(key)
            if balancer is not None:
                memberstate.applyEntry(balancer, memberName, {"removed": True}, "cluster")
