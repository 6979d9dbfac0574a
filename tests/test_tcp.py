"""
TCP mode over real sockets: scheduling per connection, failover on a
refused member, half-close, drain, the PROXY protocol line, and large
transfers through the relay with bounded memory.
"""

from __future__ import annotations

import platform

from zope.interface import implementer

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from playbalancer.endpoints import MemberEndpoints
from playbalancer.balancer import Balancer, Member
from playbalancer.schedulers import RoundRobinScheduler, StandbyScheduler
from playbalancer.tcp import TCPFrontFactory, proxyHeader
from playbalancer.testing import waitUntil

MiB = 2**20

#: How much the test process may grow while 1 GiB passes through the relay
#: in it (client, relay and member all in this process).  PyPy's garbage
#: collector lets garbage grow further before collecting; the bound does not
#: depend on how much passes either way.
BOUNDED = (128 if platform.python_implementation() == "PyPy" else 48) * MiB


@implementer(IHalfCloseableProtocol)
class Greeter(Protocol):
    """
    Says its member's name, then echoes; on the client's EOF says "bye"
    and closes.  C{/big N} sends N bytes, with backpressure.
    """

    def connectionMade(self):
        self.factory.connections.append(self)
        self.gone = False
        self.first = b""
        self.seen = b""
        self.transport.write(self.factory.name + b"\n")

    def dataReceived(self, data):
        self.factory.received += len(data)
        if len(self.seen) < 4096:
            self.seen += data[:4096]
        if not self.factory.echo:
            return
        if data.startswith(b"PROXY ") and not self.first:
            self.first = data
            return
        if data.startswith(b"/big "):
            _Filler(self.transport, int(data.split()[1])).start()
            return
        self.transport.write(data)

    def connectionLost(self, reason):
        self.gone = True

    def readConnectionLost(self):
        self.transport.write(b"bye\n")
        self.transport.loseConnection()

    def writeConnectionLost(self):
        pass


@implementer(IPushProducer)
class _Filler:
    def __init__(self, transport, size):
        self.transport = transport
        self.left = size
        self.paused = False

    def start(self):
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self):
        self.paused = False
        chunk = b"z" * 65536
        while self.left > 0 and not self.paused:
            self.transport.write(chunk[: min(len(chunk), self.left)])
            self.left -= min(len(chunk), self.left)
        if self.left <= 0:
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self.left = 0


class Client(Protocol):
    def __init__(self):
        self.data = b""
        self.closed = defer.Deferred()
        self.count = 0

    def dataReceived(self, data):
        self.count += len(data)
        if len(self.data) < 4096:
            self.data += data[:4096]

    def connectionLost(self, reason):
        self.closed.callback(self.data)


def abortAll(protocols):
    """
    Cut every connection; fire once all are gone.
    """
    for protocol in protocols:
        if protocol.transport is not None and protocol.transport.connected:
            protocol.transport.abortConnection()
    return waitUntil(
        lambda: all(not p.transport or not p.transport.connected for p in protocols), reactor
    )


def memory():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024


class _TCPCase(TestCase):
    timeout = 120

    def startMember(self, name, echo=True, port=0):
        factory = Factory.forProtocol(Greeter)
        factory.name = name.encode()
        factory.connections = []
        factory.received = 0
        factory.echo = echo
        listening = reactor.listenTCP(port, factory, interface="127.0.0.1")
        factory.port = listening.getHost().port
        factory.listening = listening

        def stop():
            d = defer.maybeDeferred(listening.stopListening)
            return d.addCallback(lambda _: abortAll(factory.connections))

        factory.stop = stop
        self.addCleanup(stop)
        return factory

    def startBalancer(
        self, members, scheduler=RoundRobinScheduler, proxyProtocol=False, acceptProxyProtocol=False
    ):
        self.clock = Clock()
        self.balancer = Balancer(
            "tcp",
            scheduler(),
            [Member(m.name.decode(), f"tcp://127.0.0.1:{m.port}") for m in members],
            self.clock,
        )
        self.balancer.mode = "tcp"
        front = self.front = TCPFrontFactory(
            self.balancer,
            MemberEndpoints(reactor, 5).forMember,
            sendProxyProtocol=proxyProtocol,
            acceptProxyProtocol=acceptProxyProtocol,
        )
        port = reactor.listenTCP(0, front, interface="127.0.0.1")
        self.port = port.getHost().port
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: abortAll(list(front.relays)))

    async def connect(self):
        client = Client()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), client)
        self.addCleanup(lambda: client.transport.connected and client.transport.abortConnection())
        return client

    async def greeting(self):
        client = await self.connect()
        await waitUntil(lambda: b"\n" in client.data, reactor)
        return client, client.data.split(b"\n")[0].decode()


class TCPModeTests(_TCPCase):
    async def test_roundRobinPerConnection(self):
        a, b = self.startMember("app1"), self.startMember("app2")
        self.startBalancer([a, b])
        names = [(await self.greeting())[1] for _ in range(4)]
        self.assertEqual(names, ["app1", "app2", "app1", "app2"])
        self.assertEqual(self.balancer.member("app1").active, 2)

    async def test_failoverOnRefused(self):
        a, b = self.startMember("app1"), self.startMember("app2")
        self.startBalancer([a, b], scheduler=StandbyScheduler)
        await a.stop()
        client, name = await self.greeting()
        self.assertEqual(name, "app2")
        self.assertEqual(self.balancer.member("app1").downReason, "connection refused")

    async def test_connectBringsMemberBack(self):
        """
        A member that failed is healthy again once a connection to it is
        made, not only when that connection ends.
        """
        a = self.startMember("app1")
        self.startBalancer([a])
        member = self.balancer.member("app1")
        self.balancer.memberFailed(member, "connection refused")
        self.clock.advance(self.balancer.retry + 1)
        client, name = await self.greeting()
        self.assertEqual(name, "app1")
        self.assertTrue(member.healthy)
        self.assertEqual(member.active, 1)

    async def test_noneUsableClosesClient(self):
        a = self.startMember("app1")
        self.startBalancer([a])
        await a.stop()
        client = await self.connect()
        self.assertEqual(await client.closed, b"")
        stats = self.balancer.member("app1").stats
        self.assertEqual((stats.failures["connect"], stats.retries), (1, 0))

    async def test_halfClose(self):
        """
        A client that shuts its write side still gets the rest of the reply,
        and then both sides close.
        """
        a = self.startMember("app1")
        self.startBalancer([a])
        client, _ = await self.greeting()
        client.transport.write(b"hello\n")
        client.transport.loseWriteConnection()
        self.assertEqual(await client.closed, b"app1\nhello\nbye\n")
        await waitUntil(lambda: self.balancer.member("app1").active == 0, reactor)

    async def test_drainLeavesOpenConnections(self):
        a, b = self.startMember("app1"), self.startMember("app2")
        self.startBalancer([a, b], scheduler=StandbyScheduler)
        first, name = await self.greeting()
        self.assertEqual(name, "app1")
        self.balancer.setAdmin(self.balancer.member("app1"), "drain", "test")
        second, name = await self.greeting()
        self.assertEqual(name, "app2")
        first.transport.write(b"still here\n")
        await waitUntil(lambda: b"still here" in first.data, reactor)
        self.assertEqual(self.balancer.member("app1").active, 1)

    async def test_proxyProtocol(self):
        a = self.startMember("app1")
        self.startBalancer([a], proxyProtocol=True)
        client, _ = await self.greeting()
        await waitUntil(lambda: a.connections[0].first, reactor)
        line = a.connections[0].first
        self.assertEqual(
            line,
            f"PROXY TCP4 127.0.0.1 127.0.0.1 {client.transport.getHost().port} {self.port}\r\n".encode(),
        )

    async def test_acceptedProxyHeaderPassedOn(self):
        """
        Behind another balancer: the PROXY header it sends (v1 or v2) names
        the client, which is what the member's own PROXY line says; bytes
        after the header reach the member.
        """
        import struct

        a = self.startMember("app1", echo=True)
        self.startBalancer([a], proxyProtocol=True, acceptProxyProtocol=True)
        v2 = (
            b"\r\n\r\n\x00\r\nQUIT\n\x21\x11"
            + struct.pack("!H", 12)
            + bytes([198, 51, 100, 9, 127, 0, 0, 1])
            + struct.pack("!HH", 50001, 80)
        )
        for index, (header, expected) in enumerate([
            (b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 5433\r\n", b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 "),
            (v2, b"PROXY TCP4 198.51.100.9 127.0.0.1 50001 "),
        ]):
            client = await self.connect()
            client.transport.write(header[:5])
            client.transport.write(header[5:] + b"ping\n")
            await waitUntil(
                lambda: len(a.connections) > index and b"ping" in a.connections[index].seen, reactor
            )
            seen = a.connections[index].seen
            self.assertTrue(seen.startswith(expected), seen)
            self.assertTrue(seen.endswith(b"\r\nping\n"), seen)
            client.transport.loseConnection()

    async def test_missingProxyHeaderRefused(self):
        a = self.startMember("app1")
        self.startBalancer([a], acceptProxyProtocol=True)
        client = await self.connect()
        client.transport.write(b"GET / HTTP/1.1\r\n\r\n")
        await client.closed
        self.assertEqual(a.connections, [])

    def test_proxyHeaderUnknown(self):
        from twisted.internet.address import UNIXAddress

        self.assertEqual(proxyHeader(UNIXAddress(b"/x"), UNIXAddress(b"/y")), b"PROXY UNKNOWN\r\n")

    async def test_bigDownloadBoundedMemory(self):
        """
        1 GiB from the member through the relay: memory stays bounded.
        """
        a = self.startMember("app1")
        self.startBalancer([a])
        client, _ = await self.greeting()
        before = memory()
        peak = [before]
        sampler = task.LoopingCall(lambda: peak.append(memory()))
        sampler.start(0.05)
        client.transport.write(b"/big %d" % (1024 * MiB))
        await client.closed
        sampler.stop()
        self.assertEqual(client.count, len(b"app1\n") + 1024 * MiB)
        self.assertLess(max(peak) - before, BOUNDED)


    async def test_bigUploadBoundedMemory(self):
        """
        1 GiB from the client through the relay to a member: memory stays
        bounded.
        """
        a = self.startMember("app1", echo=False)
        self.startBalancer([a])
        client, _ = await self.greeting()
        before = memory()
        peak = [before]
        sampler = task.LoopingCall(lambda: peak.append(memory()))
        sampler.start(0.05)
        _Filler(client.transport, 1024 * MiB).start()
        await client.closed
        await waitUntil(lambda: a.received == 1024 * MiB, reactor)
        sampler.stop()
        self.assertLess(max(peak) - before, BOUNDED)

    async def test_slowReaderBackpressure(self):
        """
        A client that stops reading stops the member's data at the relay:
        the balancer does not buffer the member's whole answer.
        """
        a = self.startMember("app1")
        self.startBalancer([a])
        client, _ = await self.greeting()
        client.transport.pauseProducing()
        before = memory()
        client.transport.write(b"/big %d" % (128 * MiB))
        await task.deferLater(reactor, 1.0, lambda: None)
        self.assertLess(memory() - before, 32 * MiB)
        self.assertLess(client.count, 8 * MiB)
        client.transport.resumeProducing()
        await client.closed
        self.assertEqual(client.count, len(b"app1\n") + 128 * MiB)

class TCPServiceTests(_TCPCase):
    async def test_configuredThroughTwistdService(self):
        """
        A C{mode = "tcp"} listener from a config file, with TCP connect
        health checks, relays to its members.
        """
        import os

        from playbalancer.tap import Options, makeService

        a, b = self.startMember("db1"), self.startMember("db2")
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                f"""
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
mode = "tcp"
balancer = "db"

[balancer.db]
scheduler = "least-conn"
[balancer.db.health]
interval = 0.05
[[balancer.db.member]]
name = "db1"
url = "tcp://127.0.0.1:{a.port}"
[[balancer.db.member]]
name = "db2"
url = "tcp://127.0.0.1:{b.port}"
"""
            )
        options = Options()
        options.parseOptions(["--config", os.path.abspath(path)])
        service = makeService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        front = [s for s in service if hasattr(s, "_waitingForPort")][0]
        self.port = (await front._waitingForPort).getHost().port
        balancer = service.balancers["db"]
        await waitUntil(lambda: all(m.checkPasses >= 2 for m in balancer.members), reactor)
        self.assertEqual(balancer.members[0].lastCheck[:2], (True, "connected"))
        names = sorted([(await self.greeting())[1] for _ in range(2)])
        self.assertEqual(names, ["db1", "db2"])
        relays = [s.factory for s in service if hasattr(s, "_waitingForPort")][0].relays
        self.addCleanup(lambda: abortAll(list(relays)))

