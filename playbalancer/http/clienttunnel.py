"""
The client's end of an upgrade tunnel (WebSocket and the like): once the
member switched protocols, the client's bytes go to the exchange as they
are, and a tunnel with no bytes either way for C{tunnelIdleTimeout} is
closed (HAProxy's C{timeout tunnel}).
"""

from __future__ import annotations


class ClientTunnel:
    """
    Takes over a client connection that became a tunnel.

    @param exchange: the L{playbalancer.http.exchange.Exchange} whose
        member is at the other end (its C{clientData} gets the bytes).
    @param sweeper: the L{playbalancer.sweeper.Sweeper} that keeps the idle
        clock.
    @param idleTimeout: seconds without bytes before C{close} is called;
        0: never.
    @param close: closes the client connection (its end is the tunnel's:
        the exchange closes the member side when the client is gone).
    """

    def __init__(self, exchange, sweeper, idleTimeout, close):
        self.exchange = exchange
        self.sweeper = sweeper
        self.idleTimeout = idleTimeout
        self.close = close
        self.deadline = None
        sweeper.watch(self)
        self.active()

    def active(self):
        """
        Bytes went through, one way or the other: the idle clock starts
        again.
        """
        timeout = self.idleTimeout
        self.deadline = self.sweeper.now + timeout if timeout else None

    def dataReceived(self, data):
        self.active()
        self.exchange.clientData(data)

    def expired(self):
        self.deadline = None
        self.close()

    def connectionLost(self, reason):
        self.sweeper.unwatch(self)
