"""
The parent's view of one worker process (see L{playbalancer.workers}):
AMP over its standard input and output, its standard error into the
parent's log, and the sums of the workers' listener counters.
"""

from __future__ import annotations

from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.protocols import amp

from playbalancer.bigmessages import PieceReceiver

_log = Logger(namespace="playbalancer.workers")


class _WorkerControl(PieceReceiver, amp.AMP):
    def __init__(self, supervisor, process):
        amp.AMP.__init__(self)
        self.supervisor = supervisor
        self.process = process

    def messageReceived(self, kind, message):
        if kind == "report":
            self.supervisor.gotReport(self.process, message)


class _ProcessAddress:
    def __init__(self, pid):
        self.pid = pid

    def __repr__(self):
        return f"<worker process {self.pid}>"


class _ToWorker:
    """
    The transport AMP writes to: a worker's standard input.
    """

    def __init__(self, process):
        self.process = process

    def write(self, data):
        self.process.write(data)

    def writeSequence(self, data):
        self.process.writeSequence(data)

    def loseConnection(self):
        self.process.closeStdin()

    def getPeer(self):
        return _ProcessAddress(self.process.pid)

    getHost = getPeer


class WorkerProcess(ProcessProtocol):
    """
    One worker process: AMP on its standard input and output, its
    standard error into our log.
    """

    def __init__(self, supervisor, index, generation=0):
        self.supervisor = supervisor
        self.index = index
        #: Which config it serves: a reload starts a new generation.
        self.generation = generation
        self.control = _WorkerControl(supervisor, self)
        self.pid = None
        #: The last line it wrote to standard error.
        self.lastLine = ""

    def connectionMade(self):
        self.pid = self.transport.pid
        self.control.makeConnection(_ToWorker(self.transport))
        self.supervisor.workerStarted(self)

    def outReceived(self, data):
        self.control.dataReceived(data)

    def errReceived(self, data):
        for line in data.decode("utf-8", "replace").splitlines():
            _log.info("worker {index}: {line}", index=self.index, line=line)
            if line.strip():
                self.lastLine = line.strip()

    def processEnded(self, reason):
        self.control.connectionLost(reason)
        self.supervisor.workerEnded(self, reason)


class SummedListener:
    """
    A listener's counters summed over the workers, for the metrics.
    """

    def __init__(self):
        self.openConnections = 0
        self.accepted = self.rejected = self.refused = 0
        self.routes = []

    def routeCounters(self):
        return self.routes
