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
key (L{playbalancer.cluster.records}); the node keeps following. What the
node read is kept and applied by L{playbalancer.cluster.mirror}, its last
snapshot cached in a file by L{playbalancer.cluster.cache}.
"""

from __future__ import annotations

import json
import time

from twisted.application.service import MultiService, Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from playbalancer import memberstate
from playbalancer.cluster.cache import SnapshotCache
from playbalancer.cluster.interfaces import CompactedError, StoreError
from playbalancer.cluster.mirror import TierMirror, warnSkipped
from playbalancer.cluster.records import RecordError, adminRecord

_log = Logger()

#: Seconds between status publications (and lease renewals).
PUBLISH_INTERVAL = 0.5
#: Seconds to wait before reconnecting after the store failed.
RECONNECT_DELAY = 0.5
#: The C{reason} a node is degraded for until the store first answers or fails.
STARTING = "starting"


class ClusterNode(Service):
    """
    Keeps this node's balancers in step with the tier: follows the store
    into its L{TierMirror}, writes admin changes and publishes this node's
    status.

    The store is C{degraded} (with a C{reason}) from the start until its
    first full read, and again whenever it fails until the next one.

    @param store: an L{IStateStore}.
    @param balancers: C{{name: Balancer}}.
    @param cachePath: a file for the last snapshot, used when the store
        cannot be reached at start-up.
    @ivar mirror: the tier's state as this node last read it.
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
        self.leaseTTL = leaseTTL
        self.startupTimeout = startupTimeout
        self.mirror = TierMirror(tier, balancers)
        self.degraded = True
        self.reason = STARTING
        self.ready = Deferred()
        self._cache = SnapshotCache(cachePath)
        self._lease = None
        self._publish = None
        self._running = False
        self._waiters = []
        self._startupCall = None
        self._sleep = None
        self._publishing = None
        self._operation = None
        #: The L{playbalancer.workers.WorkerSupervisor} when worker
        #: processes serve this node's traffic, else L{None}.
        self.workers = None
        #: The L{playbalancer.handover.Predecessor} after an upgrade.
        self.predecessor = None
        self._applied = 0

    @property
    def revision(self):
        """
        The last store revision this node applied.
        """
        return self.mirror.revision

    @property
    def nodes(self):
        """
        C{{node name: status}} of the other nodes, as last read.
        """
        return self.mirror.nodes

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
        cached = self._cache.read()
        _log.warn(
            "store not reachable at start-up ({reason}): serving {how}",
            reason=self.reason,
            how="from the cached snapshot" if cached else "from the configuration",
            playbalancer_event="cluster.startup_timeout",
        )
        if cached:
            self.mirror.restore(cached)
        self.ready.callback(None)

    async def _follow(self):
        prefix = self.mirror.prefix
        while self._running:
            try:
                self._operation = ensureDeferred(self.store.range(prefix))
                revision, found = await self._operation
                self._applySnapshot(revision, found)
                if not self._running:
                    # Stopped by whoever waited for it to be ready (in
                    # that callback): no watch left connecting.
                    return
                self._operation = ensureDeferred(
                    self.store.watch(prefix, revision + 1, self._onEvents)
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
        if not self.degraded or self.reason == STARTING:
            _log.warn(
                "store degraded: {reason}; keeping the last known state",
                reason=reason,
                playbalancer_event="cluster.degraded",
            )
        self.degraded = True
        self.reason = reason

    def _applySnapshot(self, revision, found):
        """
        A full read of the tier: mirror it, and the store is connected.
        """
        self.mirror.replace(revision, found)
        if self.degraded:
            _log.info(
                "store connected at revision {revision}",
                revision=revision,
                playbalancer_event="cluster.connected",
            )
        self.degraded = False
        self.reason = None
        self._cache.save(self.mirror.snapshot())
        self._wake()
        if not self.ready.called:
            self.ready.callback(None)

    def _onEvents(self, revision, changes):
        if self.mirror.update(revision, changes):
            self._cache.save(self.mirror.snapshot())
        self._wake()

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
        key = self.mirror.memberKey(balancerName, memberName)
        balancer = self.balancers[balancerName]
        for _ in range(5):
            value, modRevision = await self.store.get(key)
            record = None
            if value is not None:
                try:
                    record = adminRecord(balancer, memberName, value)
                except RecordError as e:
                    warnSkipped(key, f"{e}; replacing it")
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
        """
        What this node publishes: the tier revision it applied (with
        worker processes, the one every worker has applied), and its
        requests in flight by member.
        """
        revision = self.revision
        if self.predecessor is not None and self.predecessor.running():
            # Right after an upgrade: the old process still finishes its
            # requests, which this one cannot count; until it has exited,
            # this node has applied nothing.
            return {"revision": 0, "inflight": {}, "at": time.time()}
        if self.workers is not None:
            if self.workers.caughtUp():
                self._applied = revision
            else:
                revision = self._applied
        inflight = {}
        for name, balancer in self.balancers.items():
            for member in balancer.members:
                inflight[f"{name}/{member.name}"] = member.active
        return {"revision": revision, "inflight": inflight, "at": time.time()}

    def _publishOnce(self):
        self._publishing = ensureDeferred(self._publishStatus())
        return self._publishing

    async def _publishStatus(self):
        if self.degraded:
            return
        key = self.mirror.statusKey(self.node)
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
        return self.mirror.tierState(balancerName, memberName, self.node, self.status())

    def summary(self):
        """
        The cluster as the manager shows it.
        """
        return {
            "tier": self.tier,
            "node": self.node,
            "store": "degraded" if self.degraded else "ok",
            "reason": self.reason,
            "revision": self.revision,
            "nodes": self.mirror.nodeSummaries(self.node, self.status()),
        }


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
