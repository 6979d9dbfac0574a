"""
L{playbalancer._net.sendnow.sendNow} over a real socket pair and with
transports it must leave alone.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from playbalancer._net.sendnow import sendNow, sendSequenceNow
from playbalancer.testing import RawConversation, waitUntil


class _Server(Protocol):
    def connectionMade(self):
        self.factory.connections.append(self)


class SendNowTests(TestCase):
    def test_otherTransportsGetWrite(self):
        transport = StringTransport()
        sendNow(transport, b"abc")
        sendSequenceNow(transport, [b"d", b"ef"])
        self.assertEqual(transport.value(), b"abcdef")

    async def _connected(self):
        """
        A server-side transport on 127.0.0.1 and the raw client talking to
        it.
        """
        from twisted.internet.protocol import Factory

        factory = Factory.forProtocol(_Server)
        factory.connections = []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = await RawConversation.open(reactor, port.getHost().port)
        self.addCleanup(client.close)
        await waitUntil(lambda: factory.connections, reactor)
        return factory.connections[0].transport, client

    async def test_sequenceAtOnce(self):
        """
        Several parts go out in one send, in order, with nothing queued.
        """
        transport, client = await self._connected()
        sendSequenceNow(transport, [b"head ", b"body", b" tail"])
        self.assertEqual((transport.dataBuffer, transport._tempDataBuffer), (b"", []))
        await client.waitFor(b"head body tail")
        self.assertEqual(client.received, b"head body tail")

    async def test_sequencePartlySent(self):
        """
        What the kernel does not take at once, from the middle of a part,
        is queued and follows in order.
        """
        transport, client = await self._connected()
        parts = [b"<", bytes(range(256)) * 32768, b">"]  # 8 MiB between markers
        sendSequenceNow(transport, parts)
        self.assertTrue(transport.dataBuffer or transport._tempDataBuffer)
        sendSequenceNow(transport, [b"after"])
        expected = b"".join(parts) + b"after"
        await waitUntil(lambda: len(client.received) >= len(expected), reactor, 30)
        self.assertEqual(client.received, expected)

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
