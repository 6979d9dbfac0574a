"""
A reload's new generation of workers (L{playbalancer.workers.generation}):
it takes over once every new worker has reported, and is abandoned if one
ends first or it takes too long; with fake processes on a clock.
"""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.workers.generation import WorkersFailed
from playbalancer.workers.supervisor import WorkerSupervisor


class _Reactor(Clock):
    def __init__(self):
        Clock.__init__(self)
        self.spawned = []

    def spawnProcess(self, protocol, executable, args, env=None, childFDs=None, path=None):
        self.spawned.append(protocol)


class _Transport:
    def __init__(self, pid):
        self.pid = pid
        self.signals = []

    def signalProcess(self, name):
        self.signals.append(name)


def _config(endpoints):
    listeners = [SimpleNamespace(endpoint=e, routes=[], accessLog=None) for e in endpoints]
    return SimpleNamespace(workers=2, listeners=listeners, raw={}, balancers={})


def _report(version=0, accepted=0):
    return {
        "version": version,
        "members": {},
        "listeners": [{"open": 0, "accepted": accepted, "rejected": 0, "refused": 0}],
    }


class GenerationTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = _Reactor()
        listeners = []
        self.supervisor = WorkerSupervisor(
            _config(["tcp:0:interface=127.0.0.1"]), {}, self.reactor, listeners, ["tcp:0"]
        )
        self.addCleanup(self.closeSockets)
        self.supervisor.startService()
        # (Restores the SIGUSR1 handler; the fake workers never end.)
        self.addCleanup(lambda: self.supervisor.stopService() and None)
        self.old = self.start(self.reactor.spawned[:2])
        for process in self.old:
            self.supervisor.gotReport(process, _report(accepted=5))

    def closeSockets(self):
        for group in self.supervisor.sockets + getattr(self.supervisor, "previousSockets", []):
            for sock in group:
                sock.close()

    def start(self, processes):
        pid = 1000 + len(self.reactor.spawned)
        for process in processes:
            pid += 1
            process.transport = _Transport(pid)
            process.pid = pid
            process.control.callRemote = lambda *a, **k: None
            self.supervisor.workerStarted(process)
        return processes

    def newGeneration(self):
        supervisor = self.supervisor
        current = dict(zip((l.endpoint for l in supervisor.config.listeners), supervisor.sockets))
        config = _config(["tcp:0:interface=127.0.0.1"])
        sockets = supervisor.socketsFor(config, reuse=current)
        ready = supervisor.startGeneration(config, sockets, timeout=30)
        new = self.start(self.reactor.spawned[2:])
        return ready, new

    def test_takesOverOnceEveryNewWorkerReported(self):
        ready, new = self.newGeneration()
        self.supervisor.gotReport(new[0], _report())
        self.assertNoResult(ready)
        self.supervisor.gotReport(new[1], _report())
        self.successResultOf(ready)
        self.supervisor.commit()
        self.assertEqual(sorted(self.supervisor.workers.values(), key=id), sorted(new, key=id))
        self.assertEqual([p.transport.signals for p in self.old], [["TERM"], ["TERM"]])
        # What the old workers counted goes on counting.
        self.assertEqual(self.supervisor.summed[0].accepted, 10)

    def test_newWorkerEndingFirstAbandonsIt(self):
        ready, new = self.newGeneration()
        new[0].lastLine = "ConfigError: something only the worker saw"
        self.supervisor.workerEnded(new[0], Failure(Exception("ended")))
        failure = self.failureResultOf(ready, WorkersFailed)
        self.assertEqual(
            failure.getErrorMessage(),
            "worker 0 on the new config ended before it served: "
            "ConfigError: something only the worker saw",
        )
        self.assertIsNone(self.supervisor.incoming)
        self.assertEqual(new[1].transport.signals, ["TERM"])
        self.assertEqual(sorted(self.supervisor.workers.values(), key=id), sorted(self.old, key=id))
        self.assertEqual([p.transport.signals for p in self.old], [[], []])

    def test_tooSlowAbandonsIt(self):
        ready, new = self.newGeneration()
        self.supervisor.gotReport(new[0], _report())
        self.reactor.advance(31)
        failure = self.failureResultOf(ready, WorkersFailed)
        self.assertEqual(failure.getErrorMessage(), "the new workers did not serve within 30 s")
        self.assertEqual([p.transport.signals for p in new], [["TERM"], ["TERM"]])
        self.assertEqual(sorted(self.supervisor.workers.values(), key=id), sorted(self.old, key=id))
