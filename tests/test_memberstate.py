"""
Member admin state applied through the balancer on every path (#15 item
4): the state file, the parent's sync of its workers and a cluster node.
A member added through any of them gets no traffic before its first
passing health check, and every admin change is made with the Balancer's
own methods, so it is observed and logged like a change from the manager.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from playbalancer import statefile
from playbalancer.balancer import Balancer, Member
from playbalancer.schedulers import RoundRobinScheduler


def balancer(clock, name="web", names=("app1", "app2"), checks=True):
    """
    A balancer with members on ports 1, 2, ...; with active health checks
    unless told otherwise.
    """
    members = [Member(n, f"http://127.0.0.1:{i}") for i, n in enumerate(names, 1)]
    result = Balancer(name, RoundRobinScheduler(), members, clock)
    result.activeChecks = checks
    return result


class Recorder:
    """
    Observes a balancer: C{(member name, change)} of every change made
    through its methods.
    """

    def __init__(self, balancer):
        self.changes = []
        balancer.observe(self)

    def __call__(self, balancer, member, change):
        self.changes.append((member.name, change))


class LoggedMixin:
    def captureLog(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return lambda: [formatEvent(e) for e in events]


class StateFilePathTests(LoggedMixin, SynchronousTestCase):
    def test_restoredThroughTheBalancer(self):
        """
        Restoring a state file drains, reweighs, adds and removes through
        the Balancer: each change is observed and logged as made by the
        state file, and the added member waits for its first passing
        check.
        """
        clock = Clock()
        web = balancer(clock, names=("app1", "app2", "app3"))
        seen = Recorder(web)
        logged = self.captureLog()
        state = {"format": 1, "balancers": {"web": {
            "members": {
                "app1": {"admin": "drain", "standby": False, "weight": 3},
                "app9": {"admin": "enabled", "standby": False, "weight": 2, "url": "http://127.0.0.1:9"},
            },
            "removed": ["app2"]}}}
        statefile.apply(state, {"web": web})
        self.assertEqual(
            seen.changes,
            [
                ("app1", {"admin": "drain", "who": "state file"}),
                ("app1", {"weight": 3, "who": "state file"}),
                ("app9", {"added": "http://127.0.0.1:9", "standby": False, "weight": 2, "who": "state file"}),
                ("app2", {"removed": True, "who": "state file"}),
            ],
        )
        self.assertIn("member web/app1 changed by state file: admin=drain", logged())
        self.assertEqual([m.name for m in web.members], ["app1", "app3", "app9"])
        app3, app9 = web.member("app3"), web.member("app9")
        self.assertEqual(app9.downReason, "not checked yet")
        self.assertEqual(web.candidates(), [app3])
        web.checkResult(app9, True, "200", 0.01, rise=1, fall=1)
        self.assertEqual(web.candidates(), [app3, app9])

    def test_warningsKeepTheStateFileNamespace(self):
        """
        The state file's warnings about balancers and members no longer
        configured keep the namespace they had, C{playbalancer.statefile};
        the workers' come from C{playbalancer.workers}.
        """
        from playbalancer.workers import WorkerAgent

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        state = {"format": 1, "balancers": {
            "gone": {"members": {}, "removed": []},
            "web": {"members": {"app7": {"admin": "drain", "standby": False, "weight": 1}}, "removed": []}}}
        statefile.apply(state, {"web": balancer(Clock())})
        agent = WorkerAgent({"web": balancer(Clock())}, [], Clock(), None)
        agent.apply(state)
        warnings = [(formatEvent(e), e["log_namespace"]) for e in events if "no longer configured" in formatEvent(e)]
        self.assertEqual(warnings, [
            ("state file: balancer gone is no longer configured", "playbalancer.statefile"),
            ("state file: member web/app7 is no longer configured", "playbalancer.statefile"),
            ("parent: balancer gone is no longer configured", "playbalancer.workers"),
            ("parent: member web/app7 is no longer configured", "playbalancer.workers"),
        ])

    def test_olderFileLoads(self):
        """
        A state file as written before the member-state module (format 1,
        its keys sorted) still loads.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                '{\n "balancers": {\n  "web": {\n   "members": {\n'
                '    "app1": {\n     "admin": "disabled",\n     "standby": true,\n     "weight": 0\n    },\n'
                '    "app3": {\n     "admin": "enabled",\n     "standby": false,\n     "url": "http://127.0.0.1:3",\n'
                '     "weight": 1\n    }\n   },\n   "removed": []\n  }\n },\n "format": 1\n}\n'
            )
        web = balancer(Clock(), checks=False)
        statefile.apply(statefile.read(path), {"web": web})
        app1, app3 = web.member("app1"), web.member("app3")
        self.assertEqual((app1.admin, app1.standby, app1.configuredWeight), ("disabled", True, 0))
        self.assertEqual(app3.url, "http://127.0.0.1:3")
        self.assertEqual(web.candidates(), [web.member("app2"), app3])


class WorkersPathTests(LoggedMixin, SynchronousTestCase):
    def pair(self):
        """
        A parent's balancer and its supervisor, and a worker's copy of the
        same balancer (as built from the same config) with its agent.
        """
        from playbalancer.workers import WorkerAgent, WorkerSupervisor

        clock = Clock()
        clock.running = True
        parent = balancer(clock)
        config = SimpleNamespace(workers=2, listeners=[], raw={})
        supervisor = WorkerSupervisor(config, {"web": parent}, clock, [], [])
        worker = balancer(clock)
        agent = WorkerAgent({"web": worker}, [], clock, None)
        agent.makeConnection(StringTransport())
        self.addCleanup(agent._loop.stop)
        version = [0]

        def push():
            version[0] += 1
            agent.messageReceived("state", {"version": version[0], "state": json.loads(supervisor.snapshot())})

        return parent, worker, push

    def test_syncedThroughTheBalancer(self):
        """
        A member added in the parent reaches the worker through
        Balancer.addMember (no traffic there before the parent's checks
        pass), and a drain through Balancer.setAdmin: both observed in the
        worker as changes by the parent.
        """
        parent, worker, push = self.pair()
        seen = Recorder(worker)
        parent.addMember(Member("app9", "http://127.0.0.1:9", weight=2), "10.0.0.1")
        parent.setAdmin(parent.member("app1"), "drain", "10.0.0.1")
        push()
        self.assertEqual(
            seen.changes,
            [
                ("app1", {"admin": "drain", "who": "parent"}),
                ("app9", {"added": "http://127.0.0.1:9", "standby": False, "weight": 2, "who": "parent"}),
            ],
        )
        app9 = worker.member("app9")
        self.assertEqual(worker.candidates(), [worker.member("app2")])
        self.assertFalse(app9.healthy)

        parent.checkResult(parent.member("app9"), True, "200", 0.01, rise=1, fall=1)
        push()
        self.assertEqual(worker.candidates(), [worker.member("app2"), app9])
        self.assertEqual(app9.configuredWeight, 2)

        parent.removeMember(parent.member("app2"), "10.0.0.1")
        push()
        self.assertEqual(seen.changes[-1], ("app2", {"removed": True, "who": "parent"}))
        self.assertEqual([m.name for m in worker.members], ["app1", "app9"])

    def test_readdedWhileInFlight(self):
        """
        A member the parent removed and added again (with another URL)
        while the worker still has a request in flight on the old one: the
        worker takes the new one through Balancer.addMember, once, and the
        old one goes when its request ends.
        """
        parent, worker, push = self.pair()
        old = worker.member("app2")
        worker.begin(old)
        parent.removeMember(parent.member("app2"), "t")
        parent.addMember(Member("app2", "http://127.0.0.1:22"), "t")
        push()
        push()
        new = worker.member("app2")
        self.assertIsNot(new, old)
        self.assertEqual(new.url, "http://127.0.0.1:22")
        self.assertEqual([m.name for m in worker.members if not m.removing], ["app1", "app2"])
        self.assertTrue(old.removing)
        worker.end(old)
        self.assertEqual(worker.members, [worker.member("app1"), new])

    def test_olderParentState(self):
        """
        A worker started from newer code than its parent (an upgrade on
        disk, then a worker restart) still understands the parent's older
        state message: one list of members per balancer.
        """
        parent, worker, push = self.pair()
        from playbalancer.workers import WorkerAgent

        agent = WorkerAgent({"web": worker}, [], Clock(), None)
        agent.apply({"web": [
            {"name": "app1", "url": "http://127.0.0.1:1", "admin": "drain", "standby": False, "weight": 1,
             "down": None},
            {"name": "app3", "url": "http://127.0.0.1:3", "admin": "enabled", "standby": False, "weight": 1,
             "down": "not checked yet"},
        ]})
        self.assertEqual([m.name for m in worker.members], ["app1", "app3"])
        self.assertEqual(worker.member("app1").admin, "drain")
        self.assertEqual(worker.member("app3").downReason, "not checked yet")


    def test_balancerNamedBalancers(self):
        """
        A balancer may be called C{balancers}: the worker still tells an
        older parent's list message from the current format by its
        C{format} key, not by that name.
        """
        from playbalancer.workers import WorkerAgent, WorkerSupervisor

        clock = Clock()
        worker = balancer(clock, name="balancers")
        agent = WorkerAgent({"balancers": worker}, [], clock, None)
        agent.apply({"balancers": [
            {"name": "app1", "url": "http://127.0.0.1:1", "admin": "drain", "standby": False, "weight": 1,
             "down": None},
            {"name": "app2", "url": "http://127.0.0.1:2", "admin": "enabled", "standby": False, "weight": 1,
             "down": None},
        ]})
        self.assertEqual(worker.member("app1").admin, "drain")

        parent = balancer(clock, name="balancers")
        parent.setWeight(parent.member("app2"), 5, "t")
        config = SimpleNamespace(workers=2, listeners=[], raw={})
        supervisor = WorkerSupervisor(config, {"balancers": parent}, clock, [], [])
        agent.apply(json.loads(supervisor.snapshot()))
        self.assertEqual(worker.member("app1").admin, "enabled")
        self.assertEqual(worker.member("app2").configuredWeight, 5)

    def test_restartedWorkerLogsNoDown(self):
        """
        A worker (re)started after the parent's checks passed for a member
        added at run time takes that member as up: it serves at once, and
        the worker logs no "down" line for it (no "up" would follow).
        """
        from playbalancer.workers import WorkerAgent, WorkerSupervisor

        clock = Clock()
        parent = balancer(clock)
        parent.addMember(Member("app9", "http://127.0.0.1:9"), "ops")
        parent.checkResult(parent.member("app9"), True, "200", 0.01, rise=1, fall=1)
        config = SimpleNamespace(workers=2, listeners=[], raw={})
        supervisor = WorkerSupervisor(config, {"web": parent}, clock, [], [])
        worker = balancer(clock)
        agent = WorkerAgent({"web": worker}, [], clock, None)
        logged = self.captureLog()
        agent.apply(json.loads(supervisor.snapshot()))
        app9 = worker.member("app9")
        self.assertTrue(app9.healthy)
        self.assertIn(app9, worker.candidates())
        self.assertEqual([line for line in logged() if "down" in line], [])
        self.assertIn("member web/app9 changed by parent: added=http://127.0.0.1:9, standby=False, weight=1",
                      logged())


class ClusterPathTests(LoggedMixin, TestCase):
    def start(self, records):
        from playbalancer.cluster.node import ClusterNode
        from tests.test_cluster_node import FakeStore

        store = FakeStore(records, [])
        node = ClusterNode(store, {"b": self.balancer}, "web", "lb1", self.clock, startupTimeout=5)
        node.startService()
        self.addCleanup(node.stopService)
        return store

    def setUp(self):
        self.clock = Clock()
        self.balancer = balancer(self.clock, name="b", names=("m1", "m2"))

    def test_appliedThroughTheBalancer(self):
        """
        A tier's records add and drain members through the Balancer, as
        made by the record's C{who}; the added member waits for its checks.
        """
        from tests.test_cluster_node import PREFIX

        seen = Recorder(self.balancer)
        self.start({
            PREFIX + b"m1": json.dumps({"admin": "drain", "who": "ops"}).encode(),
            PREFIX + b"m9": json.dumps({"url": "http://127.0.0.1:9", "admin": "enabled", "who": "ops"}).encode(),
        })
        self.assertEqual(
            seen.changes,
            [
                ("m1", {"admin": "drain", "who": "ops"}),
                ("m9", {"added": "http://127.0.0.1:9", "standby": False, "weight": 1, "who": "ops"}),
            ],
        )
        m9 = self.balancer.member("m9")
        self.assertEqual(m9.downReason, "not checked yet")
        self.assertEqual(self.balancer.candidates(), [self.balancer.member("m2")])
        self.balancer.checkResult(m9, True, "200", 0.01, rise=1, fall=1)
        self.assertEqual(self.balancer.candidates(), [self.balancer.member("m2"), m9])

    def test_readdedWhileInFlight(self):
        """
        A member removed for the tier and added again while this node
        still has a request in flight on it is added (through the
        Balancer, waiting for its checks), not refused as existing.
        """
        from tests.test_cluster_node import PREFIX

        record = {"url": "http://127.0.0.1:9", "admin": "enabled", "who": "ops"}
        store = self.start({PREFIX + b"m9": json.dumps(record).encode()})
        old = self.balancer.member("m9")
        self.balancer.begin(old)
        store.send(PREFIX + b"m9", json.dumps(dict(record, removed=True)).encode(), 21)
        self.assertTrue(old.removing)
        store.send(PREFIX + b"m9", json.dumps(dict(record, url="http://127.0.0.1:99")).encode(), 22)
        self.assertEqual(self.flushLoggedErrors(), [])
        new = self.balancer.member("m9")
        self.assertIsNot(new, old)
        self.assertEqual((new.url, new.downReason), ("http://127.0.0.1:99", "not checked yet"))
        self.balancer.end(old)
        self.assertEqual([m.name for m in self.balancer.members], ["m1", "m2", "m9"])


class AddMemberTests(SynchronousTestCase):
    def test_ruleAsDocumented(self):
        """
        The rule every path relies on, as C{Balancer.addMember} documents
        it: with active health checks a member added gets no requests
        before its first passing check; without them, at once.
        """
        doc = " ".join(Balancer.addMember.__doc__.split())
        self.assertIn("no requests before its first passing check", doc)
        for checks in (True, False):
            web = balancer(Clock(), names=("app1",), checks=checks)
            app9 = Member("app9", "http://127.0.0.1:9")
            web.addMember(app9, "t")
            self.assertEqual(app9 in web.candidates(), not checks, checks)
            web.checkResult(app9, True, "200", 0.01, rise=1, fall=1)
            self.assertIn(app9, web.candidates())


class FormatTests(SynchronousTestCase):
    def test_roundTrip(self):
        """
        A snapshot applied to balancers built from the same config gives
        the same snapshot back, members in the same order (the balancer's,
        which the standby scheduler goes by): with the configured members
        (the state file's) or complete (the workers').
        """
        from playbalancer import memberstate

        clock = Clock()
        web = balancer(clock, names=("app1", "app2", "app3"))
        web.setAdmin(web.member("app1"), "disabled", "t")
        web.setStandby(web.member("app3"), True, "t")
        web.removeMember(web.member("app2"), "t")
        web.addMember(Member("app9", "tcp://127.0.0.1:9", weight=0), "t")
        web.addMember(Member("app0", "http://127.0.0.1:10"), "t")
        order = ["app1", "app3", "app9", "app0"]
        configured = {"web": {"app1", "app2", "app3"}}
        for kwargs in [{"configured": configured}, {}]:
            state = memberstate.snapshot({"web": web}, **kwargs)
            self.assertEqual(list(state["balancers"]["web"]["members"]), order)
            self.assertIsNone(memberstate.check(json.loads(json.dumps(state))))
            fresh = balancer(clock, names=("app1", "app2", "app3"))
            memberstate.apply(state, {"web": fresh}, "t", complete="configured" not in kwargs)
            self.assertEqual([m.name for m in fresh.members], order)
            again = memberstate.snapshot({"web": fresh}, **kwargs)
            self.assertEqual(again, state)
            self.assertEqual(list(again["balancers"]["web"]["members"]), order)
        self.assertEqual(state["balancers"]["web"]["members"]["app9"],
                         {"admin": "enabled", "standby": False, "weight": 0, "url": "tcp://127.0.0.1:9"})
        self.assertEqual(memberstate.snapshot({"web": web}, configured)["balancers"]["web"]["removed"], ["app2"])
