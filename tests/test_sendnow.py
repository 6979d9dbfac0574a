"""
L{playbalancer.sendnow.sendNow} over a real socket pair and with
transports it must leave alone.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from playbalancer.sendnow import sendNow
from playbalancer.testing import RawConversation, waitUntil


class _Server(Protocol):
    def connectionMade(self):
        self.factory.connections.append(self)


class SendNowTests(TestCase):
    def test_otherTransportsGetWrite(self):
        transport = StringTransport()
        sendNow(transport, b"abc")
        self.assertEqual(transport.value(), b"abc")

    async def test_immediateAndQueuedInOrder(self):
        """
        With an empty buffer the bytes go out at once; with bytes queued,
        they are queued behind them, in order.
        """
        from twisted.internet.protocol import Factory

        factory = Factory.forProtocol(_Server)
        factory.connections = []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = await RawConversation.open(reactor, port.getHost().port)
        await waitUntil(lambda: factory.connections, reactor)
        (server,) = factory.connections
        transport = server.transport
        sendNow(transport, b"first ")
        self.assertEqual((transport.dataBuffer, transport._tempDataBuffer), (b"", []))
        transport.write(b"second ")
        sendNow(transport, b"third")
        await client.waitFor(b"first second third")
        transport.loseConnection()
        await client.waitClosed()
