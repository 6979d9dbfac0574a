"""
Long-lived relays over real sockets: upgrade tunnels and TCP-mode
connections are closed after C{tunnel_idle_timeout} with no bytes either
way (so a drain ends), traffic keeps them open; TCP listeners keep to
C{max_connections}.
"""

from __future__ import annotations

from twisted.internet import reactor, task
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from playbalancer.balancer import Balancer, Member
from playbalancer.endpoints import MemberEndpoints
from playbalancer.front import FrontSettings
from playbalancer.schedulers import RoundRobinScheduler
from playbalancer.sweeper import Sweeper
from playbalancer.tcp import TCPFrontFactory
from playbalancer.testing import RawConversation, waitUntil

from tests.proxyharness import ProxyTestCase


class _Echo(Protocol):
    """
    Switches protocols on the first request (when C{factory.upgrade}),
    then echoes every byte.
    """

    def connectionMade(self):
        self.factory.opened.append(self)
        self.switched = not self.factory.upgrade

    def dataReceived(self, data):
        if not self.switched:
            self.switched = True
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
            )
            return
        self.transport.write(data)

    def connectionLost(self, reason):
        self.factory.closed += 1


def echoMember(testCase, upgrade):
    factory = Factory.forProtocol(_Echo)
    factory.upgrade = upgrade
    factory.opened, factory.closed = [], 0
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    testCase.addCleanup(port.stopListening)
    testCase.addCleanup(lambda: [p.transport.abortConnection() for p in factory.opened])
    return factory, port.getHost().port


UPGRADE = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"


class TunnelIdleTests(ProxyTestCase):
    async def test_idleTunnelClosedAndDrainEnds(self):
        member, port = echoMember(self, upgrade=True)
        balancer = self.startBalancer(
            [f"http://127.0.0.1:{port}"], settings=FrontSettings(tunnelIdleTimeout=0.5)
        )
        talk = await RawConversation.open(reactor, self.port)
        self.addCleanup(talk.close)
        talk.send(UPGRADE)
        await talk.waitFor(b"\r\n\r\n")
        app1 = balancer.member("app1")
        self.assertEqual(app1.active, 1)
        balancer.setAdmin(app1, "drain")
        idle = app1.whenIdle()
        await talk.waitClosed()
        await idle
        await waitUntil(lambda: member.closed == 1, reactor)

    async def test_trafficKeepsTunnelOpen(self):
        member, port = echoMember(self, upgrade=True)
        self.startBalancer(
            [f"http://127.0.0.1:{port}"], settings=FrontSettings(tunnelIdleTimeout=0.5)
        )
        talk = await RawConversation.open(reactor, self.port)
        self.addCleanup(talk.close)
        talk.send(UPGRADE)
        await talk.waitFor(b"\r\n\r\n")
        for index in range(8):
            message = b"ping %d;" % index
            talk.send(message)
            await talk.waitFor(message)
            await task.deferLater(reactor, 0.2, lambda: None)
        self.assertIsNone(talk.closedReason)


class TCPModeLimitsTests(TestCase):
    def startRelay(self, port, **settings):
        balancer = Balancer(
            "tcp", RoundRobinScheduler(), [Member("m", f"tcp://127.0.0.1:{port}")], reactor
        )
        front = TCPFrontFactory(
            balancer,
            MemberEndpoints(reactor, 5).forMember,
            sweeper=Sweeper(reactor, interval=0.05),
            **settings,
        )
        listening = reactor.listenTCP(0, front, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        self.addCleanup(lambda: [r.transport.abortConnection() for r in list(front.relays)])
        return balancer, front, listening.getHost().port

    async def test_idleRelayClosed(self):
        member, port = echoMember(self, upgrade=False)
        balancer, front, listening = self.startRelay(port, idleTimeout=0.5)
        talk = await RawConversation.open(reactor, listening)
        self.addCleanup(talk.close)
        talk.send(b"hello")
        await talk.waitFor(b"hello")
        await talk.waitClosed()
        await waitUntil(lambda: member.closed == 1, reactor)
        await waitUntil(lambda: balancer.member("m").active == 0, reactor)

    async def test_maxConnections(self):
        member, port = echoMember(self, upgrade=False)
        balancer, front, listening = self.startRelay(port, maxConnections=2)
        talks = []
        for _ in range(2):
            talk = await RawConversation.open(reactor, listening)
            self.addCleanup(talk.close)
            talk.send(b"x")
            await talk.waitFor(b"x")
            talks.append(talk)
        third = await RawConversation.open(reactor, listening)
        await third.waitClosed()
        self.assertEqual(third.received, b"")
        self.assertEqual((front.rejected, len(front.relays)), (1, 2))
