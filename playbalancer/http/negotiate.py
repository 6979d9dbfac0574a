"""
Which protocol a new client connection speaks, on a listener that offers
HTTP/2 as well as (or instead of) HTTP/1.1: over TLS, what ALPN
negotiated; on cleartext with C{h2c}, whether the client's first bytes are
HTTP/2's connection preface (RFC 9113 section 3.3, "prior knowledge").
"""

from __future__ import annotations

from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Protocol

from playbalancer.http.responses import plainResponse

#: What an HTTP/2 client sends first (RFC 9113 section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class ProtocolChoice(Protocol):
    """
    A new connection until its protocol is known: then the connection is
    handed to an L{playbalancer.http.front.FrontConnection} or an
    L{playbalancer.http2.connection.H2FrontConnection}, which owns it from
    then on (this object only passes the transport's calls on).

    @ivar chosen: the protocol that has the connection, or L{None} while
        its first bytes are awaited (for the listener's
        C{header_timeout}).
    """

    def __init__(self, factory):
        self.factory = factory
        self.chosen = None
        self.buffer = b""
        self.deadline = None
        self.closing = False
        self.lingerIdle = False
        #: No request answered yet (for graceful closes).
        self.fresh = True

    def connectionMade(self):
        factory = self.factory
        factory.connections.add(self)
        factory.sweeper.watch(self)
        self.deadline = factory.sweeper.now + factory.settings.headerTimeout

    def dataReceived(self, data):
        chosen = self.chosen
        if chosen is not None:
            chosen.dataReceived(data)
            return
        protocols = self.factory.settings.protocols
        transport = self.transport
        if ISSLTransport.providedBy(transport):
            negotiated = getattr(transport, "negotiatedProtocol", None)
            http2 = negotiated == b"h2"
            if not http2 and "http/1.1" not in protocols:
                self._refuse()
                return
            self._choose(http2, data)
            return
        buffered = self.buffer + data
        if "h2c" in protocols:
            if len(buffered) < len(PREFACE) and PREFACE.startswith(buffered):
                self.buffer = buffered
                return
            if buffered.startswith(PREFACE):
                self._choose(True, buffered)
                return
        if "http/1.1" not in protocols:
            self._refuse()
            return
        self._choose(False, buffered)

    def _choose(self, http2, data):
        factory = self.factory
        factory.connections.discard(self)
        factory.sweeper.unwatch(self)
        self.deadline = None
        self.buffer = b""
        if http2:
            from playbalancer.http2.connection import H2FrontConnection

            chosen = H2FrontConnection(factory)
        else:
            from playbalancer.http.front import FrontConnection

            chosen = FrontConnection(factory)
        self.chosen = chosen
        chosen.makeConnection(self.transport)
        if self.closing:
            chosen.closeGracefully(self.lingerIdle)
        chosen.dataReceived(data)

    def _refuse(self):
        """
        The client speaks a protocol this listener does not.
        """
        factory = self.factory
        factory.refused += 1
        factory.connections.discard(self)
        factory.sweeper.unwatch(self)
        self.deadline = None
        self.transport.write(
            plainResponse(505, "this listener speaks HTTP/2 only", keepAlive=False)
        )
        self.transport.loseConnection()
        self.chosen = _Discard()

    def expired(self):
        """
        No request within the listener's C{header_timeout}.
        """
        self.deadline = None
        self.transport.loseConnection()

    def closeGracefully(self, lingerIdle=False):
        """
        Passed on to the protocol chosen, once it is (a connection that has
        sent nothing yet may be sending its first request now).
        """
        if self.chosen is not None:
            self.chosen.closeGracefully(lingerIdle)
        else:
            self.closing = True
            self.lingerIdle = lingerIdle

    def connectionLost(self, reason):
        chosen = self.chosen
        if chosen is not None:
            chosen.connectionLost(reason)
            return
        factory = self.factory
        factory.connections.discard(self)
        factory.sweeper.unwatch(self)


class _Discard:
    """
    What has a refused connection: it drops what comes.
    """

    def dataReceived(self, data):
        pass

    def closeGracefully(self, lingerIdle=False):
        pass

    def connectionLost(self, reason):
        pass
