"""
One playbalancer node of a tier: follows the tier's admin state in the
store, writes admin changes to it with compare-and-set, and publishes its
own status (applied revision, requests in flight) under a lease.

Keys, under C{/playbalancer/v1/<tier>/}:

  - C{admin/<balancer>/<member>}: C{{"admin", "standby", "weight", "who"}},
    plus C{"url"} for a member added at run time and C{"removed"}: one
    L{playbalancer.memberstate} entry (plus C{"who"}), applied through the
    balancer's methods like the state file's and the workers'.
  - C{nodes/<node>}: C{{"revision", "inflight": {"<balancer>/<member>": n},
    "at"}}, bound to the node's lease.

A record that fails the API's checks is skipped with a warning naming its
key (L{playbalancer.cluster.records}); the node keeps following.
"""

from __future__ import annotations

import json
import time

from twisted.application.service import MultiService, Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from playbalancer import memberstate
from playbalancer.atomicfile import replaceFile
from playbalancer.cluster.etcd import CompactedError
from playbalancer.cluster.interfaces import StoreError
from playbalancer.cluster.records import RecordError, adminKey, adminRecord, nodeKey, nodeStatus, showKey

_log = Logger()

#: Seconds between status publications (and lease renewals).
PUBLISH_INTERVAL = 0.5
#: Seconds to wait before reconnecting after the store failed.
RECONNECT_DELAY = 0.5


class ClusterNode(Service):
    """
    Keeps this node's balancers in step with the tier.

    @param store: an L{IStateStore}.
    @param balancers: C{{name: Balancer}}.
    @param cachePath: a file for the last snapshot, used when the store
        cannot be reached at start-up.
    """

    def __init__(
        self,
        store,
        balancers,
        tier,
        node,
        clock,
        cachePath=None,
        leaseTTL=3,
        startupTimeout=5.0,
    ):
        self.store = store
        self.balancers = balancers
        self.tier = tier
        self.node = node
        self.clock = clock
        self.cachePath = cachePath
        self.leaseTTL = leaseTTL
        self.startupTimeout = startupTimeout
        self.prefix = f"/playbalancer/v1/{tier}/".encode("utf-8")
        self.adminPrefix = self.prefix + b"admin/"
        self.nodesPrefix = self.prefix + b"nodes/"
        self.revision = 0
        self.degraded = True
        self.reason = "starting"
        self.nodes = {}
        self.records = {}
        self.modRevisions = {}
        self.ready = Deferred()
        self._lease = None
        self._publish = None
        self._running = False
        self._waiters = []
        self._startupCall = None
        self._sleep = None
        self._publishing = None
        self._operation = None

    # Running

    def startService(self):
        Service.startService(self)
        self._running = True
        ensureDeferred(self._follow()).addErrback(
            lambda f: _log.failure("cluster follower stopped", f)
        )
        self._publish = LoopingCall(self._publishOnce)
        self._publish.clock = self.clock
        self._publish.start(PUBLISH_INTERVAL)
        self._startupCall = self.clock.callLater(self.startupTimeout, self._startupTimedOut)

    def stopService(self):
        Service.stopService(self)
        self._running = False
        if self._publish is not None and self._publish.running:
            self._publish.stop()
        for call in [self._startupCall] + [c for _, _, c in self._waiters]:
            if call is not None and call.active():
                call.cancel()
        if self._sleep is not None:
            self._sleep.cancel()
        if self._operation is not None and not self._operation.called:
            self._operation.cancel()
        self.store.stopWatching()
        # A publication under way ends first, then the connections close.
        publishing = self._publishing if self._publishing is not None else succeed(None)
        return publishing.addBoth(lambda _: self.store.close())

    def _startupTimedOut(self):
        if self.ready.called:
            return
        cached = self._readCache()
        _log.warn(
            "store not reachable at start-up ({reason}): serving {how}",
            reason=self.reason,
            how="from the cached snapshot" if cached else "from the configuration",
            playbalancer_event="cluster.startup_timeout",
        )
        if cached:
            for key, record in cached["records"].items():
                self._apply(key.encode("utf-8"), record)
            self.revision = cached["revision"]
        self.ready.callback(None)

    async def _follow(self):
        while self._running:
            try:
                self._operation = ensureDeferred(self.store.range(self.prefix))
                revision, found = await self._operation
                self._applySnapshot(revision, found)
                self._operation = ensureDeferred(
                    self.store.watch(self.prefix, revision + 1, self._onEvents)
                )
                await self._operation
            except CompactedError as e:
                _log.warn("cluster: {problem}; reading everything again", problem=str(e))
                continue
            except Exception as e:
                if not self._running:
                    return
                if not isinstance(e, (StoreError, CancelledError)):
                    _log.failure("cluster: unexpected error while following; reading everything again")
                self._degrade(str(e) or e.__class__.__name__)
                self.store.rotate()
                self._sleep = deferLater(self.clock, RECONNECT_DELAY, lambda: None)
                try:
                    await self._sleep
                except CancelledError:
                    return
                finally:
                    self._sleep = None

    def _degrade(self, reason):
        if not self.degraded or self.reason == "starting":
            _log.warn(
                "store degraded: {reason}; keeping the last known state",
                reason=reason,
                playbalancer_event="cluster.degraded",
            )
        self.degraded = True
        self.reason = reason

    # Applying

    def _applySnapshot(self, revision, found):
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
        if self.degraded:
            _log.info(
                "store connected at revision {revision}",
                revision=revision,
                playbalancer_event="cluster.connected",
            )
        self.degraded = False
        self.reason = None
        self._saveCache()
        self._wake()
        if not self.ready.called:
            self.ready.callback(None)

    def _onEvents(self, revision, changes):
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
        if any(key.startswith(self.adminPrefix) for key, _, _ in changes):
            self._saveCache()
        self._wake()

    def _skip(self, key, problem):
        _log.warn(
            "cluster: skipping the record at {key}: {problem}",
            key=showKey(key),
            problem=problem,
            playbalancer_event="cluster.bad_record",
        )

    def _nodeStatus(self, key, value):
        """
        Keep another node's status; a bad one is skipped (its last good
        one stays).
        """
        try:
            name = nodeKey(key[len(self.nodesPrefix) :])
            self.nodes[name] = nodeStatus(value)
        except RecordError as e:
            self._skip(key, e)

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
            self._skip(key, e)
            return
        try:
            self._applyRecord(key, balancer, memberName, record)
        except Exception:
            # Nothing a record says may stop the follower.
            _log.failure("cluster: cannot apply the record at {key}", key=showKey(key))

    def _memberOf(self, key):
        try:
            balancerName, memberName = adminKey(key[len(self.adminPrefix) :])
        except RecordError:
            return None, None
        return self.balancers.get(balancerName), memberName

    def _applyRecord(self, key, balancer, memberName, record):
        """
        Make one member match its checked record (never because of an
        error or an empty answer: only records that were read are applied).
        A record is one L{playbalancer.memberstate} entry, applied through
        the balancer's methods as the state file's and the workers' are.
        """
        self.records[key] = record
        memberstate.applyEntry(balancer, memberName, record, record.get("who") or "cluster")

    def _forget(self, key):
        record = self.records.pop(key, None)
        self.modRevisions.pop(key, None)
        if record and record.get("url"):
            balancer, memberName = self._memberOf(key)
            if balancer is not None:
                memberstate.applyEntry(balancer, memberName, {"removed": True}, "cluster")

    # Writing

    async def write(self, balancerName, memberName, fields, who):
        """
        Change a member for the whole tier: compare-and-set its record,
        then wait until this node applied it (from its own watch).

        @return: the revision of the change.
        @raise StoreError: the store is degraded or refused.
        """
        if self.degraded:
            raise StoreError(f"store degraded: {self.reason}")
        key = self.adminPrefix + f"{balancerName}/{memberName}".encode("utf-8")
        balancer = self.balancers[balancerName]
        for _ in range(5):
            value, modRevision = await self.store.get(key)
            record = None
            if value is not None:
                try:
                    record = adminRecord(balancer, memberName, value)
                except RecordError as e:
                    self._skip(key, f"{e}; replacing it")
            if record is None:
                member = memberstate.live(balancer, memberName)
                record = memberstate.entry(member) if member is not None else {}
            record.update(fields)
            record["who"] = who
            revision = await self.store.compareAndSet(
                key, json.dumps(record, sort_keys=True).encode("utf-8"), modRevision
            )
            if revision is not None:
                await self.applied(revision)
                return revision
        raise StoreError("the record kept changing; try again")

    def applied(self, revision, timeout=2.0):
        """
        Fire once this node applied C{revision} (or after C{timeout}).
        """
        d = Deferred()
        if self.revision >= revision:
            d.callback(self.revision)
            return d
        call = self.clock.callLater(timeout, lambda: d.called or d.callback(self.revision))
        self._waiters.append((revision, d, call))
        return d

    def _wake(self):
        waiting, self._waiters = self._waiters, []
        for revision, d, call in waiting:
            if d.called:
                continue
            if self.revision >= revision:
                if call.active():
                    call.cancel()
                d.callback(self.revision)
            else:
                self._waiters.append((revision, d, call))

    # Publishing this node's status

    def status(self):
        inflight = {}
        for name, balancer in self.balancers.items():
            for member in balancer.members:
                inflight[f"{name}/{member.name}"] = member.active
        return {"revision": self.revision, "inflight": inflight, "at": time.time()}

    def _publishOnce(self):
        self._publishing = ensureDeferred(self._publishStatus())
        return self._publishing

    async def _publishStatus(self):
        if self.degraded:
            return
        key = self.nodesPrefix + self.node.encode("utf-8")
        try:
            if self._lease is None or not await self.store.keepAlive(self._lease):
                self._lease = await self.store.grant(self.leaseTTL)
            await self.store.put(key, json.dumps(self.status()).encode("utf-8"), self._lease)
        except StoreError as e:
            _log.debug("cluster: could not publish status: {problem}", problem=str(e))

    def tierState(self, balancerName, memberName):
        """
        What the tier knows of one member: whether every known node applied
        its last change and has nothing in flight on it.
        """
        key = self.adminPrefix + f"{balancerName}/{memberName}".encode("utf-8")
        needed = self.modRevisions.get(key, 0)
        member = f"{balancerName}/{memberName}"
        nodes = dict(self.nodes)
        nodes[self.node] = self.status()
        inflight = 0
        behind = []
        for name, status in sorted(nodes.items()):
            inflight += int(status.get("inflight", {}).get(member, 0))
            if int(status.get("revision", 0)) < needed:
                behind.append(name)
        return {
            "nodes": sorted(nodes),
            "behind": behind,
            "inflight": inflight,
            "idle": not behind and inflight == 0,
        }

    def summary(self):
        """
        The cluster as the manager shows it.
        """
        nodes = dict(self.nodes)
        nodes[self.node] = self.status()
        return {
            "tier": self.tier,
            "node": self.node,
            "store": "degraded" if self.degraded else "ok",
            "reason": self.reason,
            "revision": self.revision,
            "nodes": [
                {
                    "name": name,
                    "revision": status.get("revision"),
                    "inflight": sum(status.get("inflight", {}).values()),
                }
                for name, status in sorted(nodes.items())
            ],
        }

    # The local cache of the last snapshot

    def _saveCache(self):
        if not self.cachePath:
            return
        data = {
            "revision": self.revision,
            "records": {k.decode("utf-8"): v for k, v in self.records.items()},
        }
        try:
            replaceFile(self.cachePath, json.dumps(data).encode("utf-8"), prefix=".playbalancer-cache-")
        except OSError as e:
            _log.warn("cluster: cannot write the cache {path}: {problem}", path=self.cachePath, problem=e.strerror)

    def _readCache(self):
        if not self.cachePath:
            return None
        try:
            with open(self.cachePath, encoding="utf-8") as f:
                cached = json.load(f)
        except (OSError, ValueError) as e:
            if not isinstance(e, FileNotFoundError):
                _log.warn("cluster: cannot use the cache {path}: {problem}", path=self.cachePath, problem=e)
            return None
        if (
            not isinstance(cached, dict)
            or not isinstance(cached.get("records"), dict)
            or isinstance(cached.get("revision"), bool)
            or not isinstance(cached.get("revision"), int)
        ):
            _log.warn("cluster: cannot use the cache {path}: not a snapshot", path=self.cachePath)
            return None
        return cached


class AfterReady(MultiService):
    """
    Starts its services only once C{ready} fired: the listeners of a
    cluster node serve traffic only with the tier's state applied.
    """

    def __init__(self, ready):
        MultiService.__init__(self)
        self._ready = ready

    def startService(self):
        self._ready.addCallback(lambda _: MultiService.startService(self))
