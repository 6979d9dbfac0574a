"""
WebSocket through the HTTP proxy: the Upgrade handshake is passed on, and
after the member's C{101 Switching Protocols} the balancer relays raw bytes
both ways.  Client and member are autobahn's Twisted WebSocket
implementation.
"""

from __future__ import annotations

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet import defer, reactor

from playbalancer.testing import rawExchange, waitUntil

from tests.proxyharness import ProxyTestCase


class _EchoMember(WebSocketServerProtocol):
    def onOpen(self):
        self.factory.opened.append(self)
        self.sendMessage(b"hello from the member")

    def onMessage(self, payload, isBinary):
        self.factory.received.append(payload)
        self.sendMessage(payload.upper(), isBinary)


class _Client(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.protocols.append(self)

    def onMessage(self, payload, isBinary):
        self.factory.messages.append(payload)

    def onClose(self, wasClean, code, reason):
        self.factory.closed.callback((wasClean, code))


class WebSocketTests(ProxyTestCase):
    def startEchoMember(self):
        factory = WebSocketServerFactory()
        factory.protocol = _EchoMember
        factory.opened = []
        factory.received = []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [p.transport.abortConnection() for p in factory.opened])
        return factory, f"http://127.0.0.1:{port.getHost().port}"

    async def test_echoThroughBalancer(self):
        member, url = self.startEchoMember()
        balancer = self.startBalancer([url])
        client = WebSocketClientFactory(f"ws://127.0.0.1:{self.port}/chat")
        client.protocol = _Client
        client.protocols = []
        client.messages = []
        client.closed = defer.Deferred()
        reactor.connectTCP("127.0.0.1", self.port, client)
        await waitUntil(lambda: client.messages, reactor)
        self.assertEqual(client.messages, [b"hello from the member"])
        (protocol,) = client.protocols
        self.assertEqual(balancer.member("app1").active, 1)
        protocol.sendMessage(b"one")
        protocol.sendMessage(b"\x00\x01" * 40000, isBinary=True)
        await waitUntil(lambda: len(client.messages) == 3, reactor)
        self.assertEqual(member.received, [b"one", b"\x00\x01" * 40000])
        self.assertEqual(client.messages[1:], [b"ONE", b"\x00\x01" * 40000])
        protocol.sendClose(1000)
        wasClean, code = await client.closed
        self.assertEqual((wasClean, code), (True, 1000))
        await waitUntil(lambda: balancer.member("app1").active == 0, reactor)

    async def test_drainWaitsForTunnel(self):
        """
        A drained member keeps its open WebSocket; it is idle only once
        that closes.
        """
        member, url = self.startEchoMember()
        balancer = self.startBalancer([url])
        client = WebSocketClientFactory(f"ws://127.0.0.1:{self.port}/")
        client.protocol = _Client
        client.protocols, client.messages, client.closed = [], [], defer.Deferred()
        reactor.connectTCP("127.0.0.1", self.port, client)
        await waitUntil(lambda: client.messages, reactor)
        app1 = balancer.member("app1")
        balancer.setAdmin(app1, "drain")
        idle = app1.whenIdle()
        client.protocols[0].sendMessage(b"still here")
        await waitUntil(lambda: len(client.messages) == 2, reactor)
        self.assertFalse(idle.called)
        client.protocols[0].sendClose(1000)
        await client.closed
        await idle

    async def test_refusedUpgradeIsANormalResponse(self):
        """
        A member that answers an Upgrade request with something other than
        101 has its answer passed on as a normal response.
        """
        (a,) = self.startMembers("app1")
        self.startBalancer([a.url])
        raw = await rawExchange(
            reactor,
            self.port,
            b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\r\n",
        )
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw)
        self.assertIn(b'["Upgrade", "websocket"]', raw)
