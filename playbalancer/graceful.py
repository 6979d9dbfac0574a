"""
The end of a graceful stop: wait until a listener's connections have
closed, and cut the ones still open after the grace.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

#: Seconds between two looks at the connections left.
CHECK_INTERVAL = 0.05


def untilClosed(connections, clock, grace, transportOf=lambda c: c.transport):
    """
    A L{Deferred} that fires once C{connections} (a live collection) is
    empty, or after C{grace} seconds, once those left are aborted.
    """
    d = Deferred()
    deadline = clock.seconds() + grace

    def check():
        if not connections:
            d.callback(None)
        elif clock.seconds() >= deadline:
            for connection in list(connections):
                transportOf(connection).abortConnection()
            d.callback(None)
        else:
            clock.callLater(CHECK_INTERVAL, check)

    check()
    return d
