"""
L{playbalancer.upgrade.Upgrader} with a fake reactor, and the sockets it
hands over staying non-blocking.
"""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.upgrade import Upgrader


class _Running:
    def listeningSockets(self):
        return {}

    def handingOver(self):
        pass


class _Reactor(Clock):
    def __init__(self):
        Clock.__init__(self)
        self.spawned = []

    def spawnProcess(self, protocol, executable, args, env=None, childFDs=None, path=None):
        self.spawned.append((protocol, env, childFDs))


class StaleProcessTests(SynchronousTestCase):
    """
    Each upgrade attempt hears only from its own new process: an earlier
    one's report or exit does not land on the upgrade under way; a new
    process that times out is stopped even before it said its PID.
    """

    def upgrader(self):
        self.reactor = _Reactor()
        self.stopped = []
        return Upgrader(
            _Running(),
            self.reactor,
            lambda: {"balancers": {}},
            lambda: self.stopped.append(True),
            argv=["twistd", "--pidfile=", "playbalancer"],
        )

    def test_earlierProcessEndingFailsTheNextUpgrade(self):
        """
        The first new process says it failed (its config did not check
        out); the operator fixes the file and upgrades again at once; the
        first process then exits (its report pipe closes): the second
        upgrade must not be reported failed (nor its state file deleted
        before the second process reads it).
        """
        upgrader = self.upgrader()
        first = upgrader.upgrade("test")
        firstProcess = self.reactor.spawned[0][0]
        firstProcess.childDataReceived(firstProcess.reportFD, b"pid 1001\nfailed bad config\n")
        self.assertFalse(self.successResultOf(first).ok)

        second = upgrader.upgrade("test")
        secondProcess, env, _ = self.reactor.spawned[1]
        import json

        statePath = json.loads(env["PLAYBALANCER_HANDOVER"])["state"]
        self.addCleanup(lambda: os.path.exists(statePath) and os.unlink(statePath))
        # The first process exits now.
        firstProcess.childConnectionLost(firstProcess.reportFD)
        self.assertNoResult(second)
        self.assertTrue(os.path.exists(statePath), "the second process's state file is gone")
        secondProcess.childDataReceived(secondProcess.reportFD, b"pid 1002\nready\n")
        result = self.successResultOf(second)
        self.assertTrue(result.ok, result.error)
        self.assertEqual(result.pid, 1002)

    def test_timedOutProcessWithoutPidIsNotLeftRunning(self):
        """
        A new process that has not said C{pid} yet when the time is up is
        not stopped (the transport's PID is known, the report's is not):
        it goes on starting and serves next to the old one, which was told
        the upgrade failed.
        """
        upgrader = self.upgrader()
        kills = []
        import playbalancer.upgrade as upgrade

        self.patch(upgrade.os, "kill", lambda pid, sig: kills.append((pid, sig)))
        d = upgrader.upgrade("test")
        process = self.reactor.spawned[0][0]

        class _Transport:
            pid = 4242

        process.transport = _Transport()
        self.reactor.advance(upgrader.timeout + 1)
        self.assertFalse(self.successResultOf(d).ok)
        self.assertEqual(kills, [(4242, 15)])


class InheritedSocketsStayNonBlockingTests(SynchronousTestCase):
    """
    The listening sockets an upgrade hands over are shared (one open file
    description) by the old and the new process, and Twisted accepts on them
    until C{EAGAIN}: taking them over must leave them non-blocking (PyPy
    3.9's C{socket.socket(fileno=)} would make them blocking).
    """

    def listening(self):
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(5)
        s.setblocking(False)
        self.addCleanup(s.close)
        return s

    def nonBlocking(self, fd):
        import fcntl

        return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)

    def test_inheritedEndpoint(self):
        from twisted.internet import reactor
        from twisted.internet.protocol import Factory, Protocol

        from playbalancer.handover import InheritedEndpoint

        s = self.listening()
        d = InheritedEndpoint(reactor, os.dup(s.fileno())).listen(Factory.forProtocol(Protocol))
        port = self.successResultOf(d)
        self.addCleanup(port.stopListening)
        self.assertTrue(self.nonBlocking(s.fileno()), "the shared listening socket is now blocking")

    def test_workerSupervisorHandedOver(self):
        from playbalancer.handover import Handover
        from playbalancer.workers.supervisor import WorkerSupervisor

        s = self.listening()
        supervisor = WorkerSupervisor.__new__(WorkerSupervisor)
        supervisor.count = 1
        supervisor.handover = Handover(listeners={"tcp:0": [os.dup(s.fileno())]})
        group = supervisor._handedOver("tcp:0")
        self.addCleanup(lambda: [g.close() for g in group])
        self.assertTrue(self.nonBlocking(s.fileno()), "the shared listening socket is now blocking")
