"""
Coarse timeouts for many connections: one periodic sweep instead of a
timer per request.

A connection sets C{deadline} (seconds on the sweeper's clock, or L{None})
as it moves between states; the sweeper calls its C{expired()} once that
time has passed.  C{now} is the clock's time at the last sweep, good enough
for deadlines measured in seconds and free to read on the hot path.
"""

from __future__ import annotations

from twisted.internet.task import LoopingCall


class Sweeper:
    """
    Calls C{expired()} on watched objects whose C{deadline} has passed.

    @param clock: an L{IReactorTime}.
    @param interval: seconds between sweeps (the timeouts' resolution).
    """

    def __init__(self, clock, interval=0.25):
        self.clock = clock
        self.interval = interval
        self.now = clock.seconds()
        self._watched = set()
        self._loop = None

    def watch(self, thing):
        self._watched.add(thing)
        if self._loop is None:
            self.now = self.clock.seconds()
            self._loop = LoopingCall(self.sweep)
            self._loop.clock = self.clock
            self._loop.start(self.interval, now=False)

    def unwatch(self, thing):
        self._watched.discard(thing)
        if not self._watched and self._loop is not None:
            self._loop.stop()
            self._loop = None

    def sweep(self):
        """
        Expire whatever is due.
        """
        now = self.now = self.clock.seconds()
        due = [t for t in self._watched if t.deadline is not None and t.deadline <= now]
        for thing in due:
            if thing in self._watched and thing.deadline is not None and thing.deadline <= now:
                thing.expired()
