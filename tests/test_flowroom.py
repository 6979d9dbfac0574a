"""
When the other side of a relay may read large: only while the kernel can
take such a read whole, so that a peer that stops reading never leaves more
than a small read waiting in this process (L{playbalancer.flow.keepsUp}).
"""

from __future__ import annotations

import socket

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from playbalancer._net.rawsocket import kernelRoom
from playbalancer._net.readsize import LARGE
from playbalancer.flow import keepsUp
from playbalancer.testing import waitUntil


class _Accepted(Protocol):
    def connectionMade(self):
        self.factory.accepted.append(self)


class KernelRoomTests(TestCase):
    async def connection(self):
        """
        The accepted end of a real TCP connection on 127.0.0.1, and the
        client end, which never reads.
        """
        factory = Factory.forProtocol(_Accepted)
        factory.accepted = []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = Protocol()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
        self.addCleanup(client.transport.abortConnection)
        client.transport.pauseProducing()
        await waitUntil(lambda: factory.accepted, reactor)
        accepted = factory.accepted[0]
        self.addCleanup(accepted.transport.abortConnection)
        return accepted.transport

    async def test_roomShrinksAsThePeerStopsReading(self):
        """
        Half the send buffer while the queue is empty; less what the kernel
        holds once the peer's window is full.
        """
        transport = await self.connection()
        size = transport.socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self.assertEqual(kernelRoom(transport), size // 2)
        queued = 0
        try:
            while True:
                queued += transport.socket.send(b"x" * 65536)
        except BlockingIOError:
            pass
        self.assertLess(kernelRoom(transport), size // 2 - queued // 2)
        self.assertFalse(keepsUp(transport))

    async def test_smallSendBufferMeansSmallReads(self):
        """
        A peer whose kernel send buffer cannot take two large reads does not
        count as keeping up, though nothing waits for it: a large read could
        then leave most of itself in this process when the peer stops.
        """
        transport = await self.connection()
        transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LARGE)
        self.assertFalse(keepsUp(transport))
        transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * LARGE)
        self.assertTrue(keepsUp(transport))

    def test_noSocket(self):
        self.assertIsNone(kernelRoom(None))
        self.assertTrue(keepsUp(None))
