"""
The floor for TCP mode: C{twisted.protocols.portforward} in front of one
member (it has no balancing), with C{TCP_NODELAY} on both sockets (without it
Nagle's algorithm roughly halves the 1 MiB relay rate), as started by
benchmarks/throughput.py::

    python portforward.py LISTEN_PORT MEMBER_PORT
"""

import sys

from twisted.internet import reactor
from twisted.protocols import portforward


class NoDelayClient(portforward.ProxyClient):
    """
    The member side of a relayed connection, with Nagle off.
    """

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        portforward.ProxyClient.connectionMade(self)


class NoDelayClientFactory(portforward.ProxyClientFactory):
    protocol = NoDelayClient
    noisy = False


class NoDelayServer(portforward.ProxyServer):
    """
    The client side of a relayed connection, with Nagle off.
    """

    clientProtocolFactory = NoDelayClientFactory

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        portforward.ProxyServer.connectionMade(self)


def main(listenPort, memberPort):
    """
    Listen on 127.0.0.1:C{listenPort} and relay every connection to the
    member on 127.0.0.1:C{memberPort}.
    """
    factory = portforward.ProxyFactory("127.0.0.1", memberPort)
    factory.protocol = NoDelayServer
    factory.noisy = False
    reactor.listenTCP(listenPort, factory, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
