"""
A reload with worker processes (see L{playbalancer.workers}): a new
generation of workers is started on the new config, beside the ones that
serve; it takes over only once every new worker has reported (then the
parent applies the config and the old workers finish and exit), and is
abandoned if one of them ends first or they take too long (then nothing
changed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.defer import Deferred


class WorkersFailed(Exception):
    """
    The new generation did not serve; the message says why.
    """


@dataclass
class Generation:
    """
    What a generation of workers is started with.

    @ivar sockets: the listening sockets, C{[listener][worker]}.
    @ivar managerSockets: the parent's
        L{playbalancer.workers.managerroutes.ManagerSockets} for its
        manager routes.
    """

    number: int
    config: object
    sockets: list
    managerSockets: object

    @property
    def endpoints(self):
        return [listener.endpoint for listener in self.config.listeners]


@dataclass
class Incoming:
    """
    A generation on its way in: its workers and their first reports.
    """

    generation: Generation
    count: int
    workers: dict = field(default_factory=dict)
    reports: dict = field(default_factory=dict)
    ready: Deferred = field(default_factory=Deferred)
    timer: object = None

    def owns(self, process):
        return process.generation == self.generation.number

    def reported(self, process, report):
        """
        One of its workers reported: it serves once all have.
        """
        if self.workers.get(process.index) is process:
            self.reports[process.index] = report
            if len(self.reports) == self.count and not self.ready.called:
                self._stopTimer()
                self.ready.callback(self)

    def failed(self, why):
        if not self.ready.called:
            self._stopTimer()
            self.ready.errback(WorkersFailed(why))

    def _stopTimer(self):
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
