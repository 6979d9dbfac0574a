"""
Messages over AMP larger than its 64 KiB values (L{playbalancer.bigmessages}),
and the worker control loops that send them: in memory.
"""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols import amp
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.balancer import Balancer, Member
from playbalancer.bigmessages import PIECE_BYTES, PieceReceiver, pieces, sendMessage
from playbalancer.schedulers import RoundRobinScheduler
from playbalancer.workers import REPORT_INTERVAL, WorkerAgent


class Receiver(PieceReceiver, amp.AMP):
    def __init__(self):
        amp.AMP.__init__(self)
        self.received = []

    def messageReceived(self, kind, message):
        if kind == "boom":
            raise RuntimeError("boom")
        self.received.append((kind, message))


def connected():
    return iosim.connectedServerAndClient(Receiver, Receiver)


class PieceTests(SynchronousTestCase):
    def test_largeMessageArrivesWhole(self):
        """
        A message whose compressed form needs several pieces (far over
        AMP's 64 KiB value limit) arrives whole, and so does a small one
        sent after it.
        """
        big = {"noise": os.urandom(200000).hex(), "n": 1}
        self.assertGreater(len(pieces(big)), 3)
        server, client, pump = connected()
        sendMessage(client, "report", big)
        sendMessage(client, "state", {"version": 2})
        pump.flush()
        self.assertEqual(server.received, [("report", big), ("state", {"version": 2})])

    def test_piecesFitAnAMPValue(self):
        self.assertLessEqual(PIECE_BYTES, amp.MAX_VALUE_LENGTH)
        for part in pieces({"noise": os.urandom(300000).hex()}):
            self.assertLessEqual(len(part), PIECE_BYTES)

    def test_handlerErrorLoggedNextMessageArrives(self):
        """
        A message its handler fails on is logged; the next one is handled.
        """
        server, client, pump = connected()
        sendMessage(client, "boom", {})
        sendMessage(client, "report", {"ok": True})
        pump.flush()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(server.received, [("report", {"ok": True})])


class ReportLoopTests(SynchronousTestCase):
    def agent(self, members=1000):
        clock = Clock()
        clock.running = True
        balancer = Balancer(
            "web",
            RoundRobinScheduler(),
            [Member(f"m{i:04d}", f"http://127.0.0.1:{1000 + i}/") for i in range(members)],
            clock,
        )
        agent = WorkerAgent({"web": balancer}, [], clock, None)
        transport = StringTransport()
        agent.makeConnection(transport)
        return agent, clock, transport

    def test_reportsOfManyMembers(self):
        """
        A report of 1,000 members (over 64 KiB as JSON) is sent, and again
        at the next interval.
        """
        agent, clock, transport = self.agent()
        self.assertIn(b"Piece", transport.value())
        transport.clear()
        clock.advance(REPORT_INTERVAL)
        self.assertIn(b"Piece", transport.value())

    def test_loopGoesOnAfterError(self):
        """
        A report that fails is logged; the loop goes on and the next one is
        sent.
        """
        agent, clock, transport = self.agent(members=2)
        counts = agent.counts
        agent.counts = lambda: 1 / 0
        transport.clear()
        clock.advance(REPORT_INTERVAL)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(transport.value(), b"")
        agent.counts = counts
        clock.advance(REPORT_INTERVAL)
        self.assertIn(b"Piece", transport.value())


class PushLoopTests(SynchronousTestCase):
    def test_snapshotErrorLogged(self):
        """
        The parent's push loop logs a snapshot that fails and goes on.
        """
        from types import SimpleNamespace

        from playbalancer.workers import WorkerSupervisor

        config = SimpleNamespace(workers=2, listeners=[], raw={})
        supervisor = WorkerSupervisor(config, {}, Clock(), [], [])
        supervisor.snapshot = lambda: 1 / 0
        supervisor._pushState()
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        del supervisor.snapshot
        supervisor._pushState()
        self.assertEqual(supervisor.version, 1)


class LatencyReportTests(SynchronousTestCase):
    def test_eachSampleReportedOnce(self):
        """
        A worker's report carries the latencies recorded since its last
        one; the parent adds them to its member, which the manager shows.
        """
        from types import SimpleNamespace

        from playbalancer.workers import WorkerSupervisor

        agent, clock, transport = ReportLoopTests.agent(self, members=2)
        member = agent.balancers["web"].members[0]
        member.recordLatency(10.0, 0.25)
        member.recordLatency(11.0, 0.5)
        report = agent.counts()
        self.assertEqual(report["latency"], {"web/m0000": [[10.0, 0.25], [11.0, 0.5]]})
        member.recordLatency(12.0, 0.125)
        self.assertEqual(agent.counts()["latency"], {"web/m0000": [[12.0, 0.125]]})
        self.assertEqual(agent.counts()["latency"], {})

        members = [Member("m0000", "http://127.0.0.1:1000/")]
        parent = Balancer("web", RoundRobinScheduler(), members, clock)
        config = SimpleNamespace(workers=2, listeners=[], raw={})
        supervisor = WorkerSupervisor(config, {"web": parent}, clock, [], [])
        supervisor.gotReport(_Worker(), report)
        self.assertEqual(parent.members[0].latency(12.0), (0.375, 0.5))


class _Worker:
    """
    A worker process as the supervisor knows it (hashable).
    """

    index = 0
    generation = 0


class WorkerSlowStartTests(SynchronousTestCase):
    def test_memberBackUpRampsInTheWorker(self):
        """
        A member the parent's checks bring back up ramps up in the worker
        over C{slowstart}, as in the parent, instead of getting its whole
        share at once.
        """
        from twisted.internet.task import Clock

        from playbalancer.workers import WorkerAgent

        clock = Clock()
        clock.advance(1000)
        members = [Member("a", "http://127.0.0.1:1/", weight=4)]
        balancer = Balancer("web", RoundRobinScheduler(), members, clock)
        balancer.activeChecks = True
        balancer.slowStart = 10.0
        agent = WorkerAgent({"web": balancer}, [], clock, lambda spec: None)

        def state(down):
            return {"web": [{"name": "a", "url": "http://127.0.0.1:1/", "admin": "enabled",
                             "standby": False, "weight": 4, "down": down}]}

        agent.apply(state("health check: connection refused"))
        self.assertFalse(members[0].healthy)
        agent.apply(state(None))
        self.assertTrue(members[0].healthy)
        self.assertLess(members[0].weight, 1.0)  # 5% of 4 at first
        clock.advance(5)
        self.assertAlmostEqual(members[0].weight, 2.0)
        clock.advance(5)
        self.assertEqual(members[0].weight, 4)
