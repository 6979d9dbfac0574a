"""
Waiting in tests: for a condition, and for a factory's connections to go.
"""

from __future__ import annotations

from twisted.internet import defer

__all__ = ["waitUntil", "closeAll"]


def closeAll(wrappingFactory, reactor):
    """
    Abort every connection of a L{WrappingFactory}; fire when all are gone.
    """
    if wrappingFactory is None:
        return defer.succeed(None)
    for protocol in list(wrappingFactory.protocols):
        protocol.transport.abortConnection()
    return waitUntil(lambda: not wrappingFactory.protocols, reactor)


def waitUntil(condition, reactor, timeout=10.0):
    """
    Fire once C{condition()} is true, checking every few milliseconds;
    fail after C{timeout} seconds.
    """
    d = defer.Deferred()
    deadline = reactor.seconds() + timeout

    def check():
        if condition():
            d.callback(None)
        elif reactor.seconds() > deadline:
            d.errback(AssertionError("condition not met in time"))
        else:
            reactor.callLater(0.005, check)

    check()
    return d
