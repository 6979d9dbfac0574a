"""
Raw clients for tests, to see the exact bytes of a response
(L{rawExchange}, L{RawConversation}); L{freePorts} and L{freePort} moved
to L{playbalancer.testing.ports} and are re-exported here.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.protocol import Protocol

from playbalancer.testing.ports import freePort, freePorts  # noqa: F401 (moved)
from playbalancer.testing.waiting import waitUntil

__all__ = ["rawExchange", "freePorts", "freePort", "RawConversation"]


class _RawClient(Protocol):
    def __init__(self, data, done):
        self.data = data
        self.done = done
        self.received = []

    def connectionMade(self):
        if self.data:
            self.transport.write(self.data)

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason):
        self.done.callback(b"".join(self.received))


def rawExchange(reactor, port, data, timeout=15.0):
    """
    Send raw bytes to 127.0.0.1:C{port} and collect everything that comes
    back until the server closes the connection.

    Fails if the server has not closed the connection after C{timeout}
    seconds.
    """
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    done = defer.Deferred()
    protocol = _RawClient(data, done)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    connected = connectProtocol(endpoint, protocol)
    expired = []

    def expire():
        expired.append(True)
        protocol.transport.abortConnection()

    timer = reactor.callLater(timeout, expire)

    def finished(result):
        if timer.active():
            timer.cancel()
        if expired:
            raise AssertionError(f"server did not close within {timeout}s; got {result!r}")
        return result

    connected.addErrback(done.errback)
    return done.addCallback(finished)


class RawConversation(Protocol):
    """
    A raw client that sends in steps and waits for what comes back, for
    tests of timeouts and interim responses.

    Use L{RawConversation.open}; C{received} holds every byte so far and
    C{closed} fires when the connection ends (C{closedReason} says how).
    """

    def __init__(self, reactor):
        self.reactor = reactor
        self.received = b""
        self.closed = defer.Deferred()
        self.closedReason = None

    @classmethod
    def open(cls, reactor, port):
        """
        Connect to 127.0.0.1:C{port}; fires with the conversation.
        """
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        return connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), cls(reactor))

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.closedReason = reason
        self.closed.callback(None)

    def send(self, data):
        self.transport.write(data)

    def waitFor(self, needle, timeout=10.0):
        """
        Fire once C{needle} (bytes) was received; fail after C{timeout}.
        """
        return waitUntil(
            lambda: needle in self.received or self.closedReason is not None, self.reactor, timeout
        ).addCallback(lambda _: self._found(needle))

    def _found(self, needle):
        if needle not in self.received:
            raise AssertionError(f"{needle!r} never came; got {self.received!r}")
        return self.received

    def waitClosed(self, timeout=10.0):
        """
        Fire once the server closed the connection; fail after C{timeout}.
        """
        return waitUntil(lambda: self.closedReason is not None, self.reactor, timeout)

    def close(self):
        if self.closedReason is None:
            self.transport.abortConnection()
        return self.closed
