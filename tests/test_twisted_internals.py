"""
The private parts of Twisted that L{playbalancer._net.internals} names,
pinned against the installed Twisted: each attribute exists on the real
class and behaves as playbalancer relies on.  A failure here after a
Twisted upgrade names the shortcut to revisit.
"""

from __future__ import annotations

import os
import socket

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.tcp import Server
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase

from playbalancer._net import internals
from playbalancer._net.readsize import SMALL
from playbalancer.site import ListenerService
from playbalancer.testing import writeSelfSigned


class _Keep(Protocol):
    def __init__(self):
        self.received = []

    def dataReceived(self, data):
        self.received.append(data)


def socketServer(testCase):
    """
    A real L{twisted.internet.tcp.Server} on one end of a socket pair (with
    a memory reactor: nothing runs unless the test calls it), and the
    other end, non-blocking.
    """
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    testCase.addCleanup(ours.close)
    testCase.addCleanup(peer.close)
    protocol = _Keep()
    server = Server(ours, protocol, ("127.0.0.1", 1), None, 1, MemoryReactor())
    protocol.makeConnection(server)
    return server, protocol, peer


def receiveAll(peer):
    data = b""
    while True:
        try:
            piece = peer.recv(65536)
        except BlockingIOError:
            return data
        if not piece:
            return data
        data += piece


class WriteQueueTests(TestCase):
    """
    C{dataBuffer}, C{offset}, C{_tempDataBuffer}, C{_tempDataLen}: what
    L{internals.hasQueuedWrites} and L{internals.queuedLength} read.
    """

    def test_attributesExist(self):
        server, _, _ = socketServer(self)
        self.assertEqual(
            (server.dataBuffer, server.offset, server._tempDataBuffer, server._tempDataLen),
            (b"", 0, [], 0),
        )
        self.assertFalse(internals.hasQueuedWrites(server))
        self.assertEqual(internals.queuedLength(server), 0)

    def test_writeQueuesUntilTheReactorWrites(self):
        """
        C{write} sends nothing: it appends to C{_tempDataBuffer} until
        C{doWrite}; the helpers count what is queued.
        """
        server, _, peer = socketServer(self)
        server.write(b"abc")
        server.write(b"de")
        self.assertEqual(server._tempDataBuffer, [b"abc", b"de"])
        self.assertTrue(internals.hasQueuedWrites(server))
        self.assertEqual(internals.queuedLength(server), 5)
        self.assertEqual(receiveAll(peer), b"")
        server.doWrite()
        self.assertEqual(receiveAll(peer), b"abcde")
        self.assertFalse(internals.hasQueuedWrites(server))
        self.assertEqual(internals.queuedLength(server), 0)

    def test_partlySentCountsFromOffset(self):
        """
        After a partial send, what is left is C{dataBuffer} past
        C{offset}, plus anything written since.
        """
        server, _, peer = socketServer(self)
        internals.setSendLimit(server, 2)
        server.write(b"abcde")
        server.doWrite()
        self.assertEqual(receiveAll(peer), b"ab")
        self.assertEqual((server.dataBuffer, server.offset), (b"abcde", 2))
        server.write(b"fg")
        self.assertTrue(internals.hasQueuedWrites(server))
        self.assertEqual(internals.queuedLength(server), 5)


class SendLimitTests(TestCase):
    """
    C{SEND_LIMIT}: the most bytes one C{send} is given.
    """

    def test_default(self):
        server, _, _ = socketServer(self)
        self.assertEqual(Server.SEND_LIMIT, 128 * 1024)
        self.assertEqual(internals.sendLimit(server), 128 * 1024)

    def test_setOnOneConnection(self):
        """
        Set on a connection, it limits that connection's sends only.
        """
        server, _, peer = socketServer(self)
        internals.setSendLimit(server, 3)
        self.assertEqual(internals.sendLimit(server), 3)
        self.assertEqual(Server.SEND_LIMIT, 128 * 1024)
        server.write(b"abcdefg")
        server.doWrite()
        self.assertEqual(receiveAll(peer), b"abc")
        other, _, _ = socketServer(self)
        self.assertEqual(internals.sendLimit(other), 128 * 1024)


class ReadSizeTests(TestCase):
    """
    C{bufferSize}: the bytes one C{recv} asks for.
    """

    def test_default(self):
        """
        Twisted reads 64 KiB at a time: L{playbalancer._net.readsize.SMALL}.
        """
        server, _, _ = socketServer(self)
        self.assertEqual(internals.readSize(server), SMALL)
        self.assertEqual(SMALL, 65536)

    def test_setOnOneConnection(self):
        server, protocol, peer = socketServer(self)
        internals.setReadSize(server, 3)
        self.assertEqual(internals.readSize(server), 3)
        peer.sendall(b"abcdefg")
        server.doRead()
        self.assertEqual(protocol.received, [b"abc"])
        server.doRead()
        self.assertEqual(protocol.received, [b"abc", b"def"])


class TLSPendingTests(TestCase):
    """
    C{TLSMemoryBIOProtocol._appSendBuffer}: what is written before the
    handshake ends.
    """

    def test_heldUntilHandshake(self):
        """
        Bytes written before the handshake ends land in C{_appSendBuffer}
        (small writes first wait for the reactor's next turn, uncounted).
        """
        clock = Clock()
        factory = TLSMemoryBIOFactory(
            optionsForClientTLS("example.com"), True, Factory.forProtocol(Protocol), clock
        )
        tls = factory.buildProtocol(None)
        tls.makeConnection(StringTransport())
        tls.write(b"hello")
        tls.writeSequence([b"abc", b"de"])
        clock.advance(0)
        self.assertEqual(b"".join(tls._appSendBuffer), b"helloabcde")
        self.assertEqual(internals.tlsPendingLength(tls), 10)

    def test_otherWrappers(self):
        """
        Any other wrapper holds nothing back.
        """
        wrapper = ProtocolWrapper(WrappingFactory(Factory.forProtocol(Protocol)), Protocol())
        wrapper.makeConnection(StringTransport())
        wrapper.write(b"hello")
        self.assertEqual(internals.tlsPendingLength(wrapper), 0)


class ListenerTLSOptionsTests(TestCase):
    """
    C{SSL4ServerEndpoint._sslContextFactory}: the options behind every
    connection of a TLS listener.
    """

    def test_attribute(self):
        options = object()
        endpoint = SSL4ServerEndpoint(MemoryReactor(), 0, options)
        self.assertIs(internals.listenerTLSOptions(endpoint), options)

    def test_replaced(self):
        """
        Options set with C{setListenerTLSOptions} are the ones the
        endpoint listens with.
        """
        reactor = MemoryReactor()
        endpoint = SSL4ServerEndpoint(reactor, 0, object())
        options = object()
        internals.setListenerTLSOptions(endpoint, options)
        self.assertIs(internals.listenerTLSOptions(endpoint), options)
        endpoint.listen(Factory())
        self.assertIs(reactor.sslServers[0][2], options)

    def test_fromString(self):
        """
        An C{ssl:} endpoint string gives an L{SSL4ServerEndpoint} whose
        options make one context, shared by every call: ALPN set on it
        applies to every connection.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        keyPath, certPath = writeSelfSigned(directory)
        endpoint = serverFromString(
            MemoryReactor(), f"ssl:0:privateKey={keyPath}:certKey={certPath}"
        )
        self.assertIsInstance(endpoint, SSL4ServerEndpoint)
        options = internals.listenerTLSOptions(endpoint)
        self.assertIs(options.getContext(), options.getContext())


class _Refuses:
    def listen(self, factory):
        return defer.fail(CannotListenError("127.0.0.1", 1, OSError("in use")))


class RaiseStartErrorsTests(TestCase):
    """
    C{StreamServerEndpointService._raiseSynchronously}.
    """

    def test_default(self):
        """
        By default a listening error is logged, not raised.
        """
        service = StreamServerEndpointService(_Refuses(), Factory())
        self.assertFalse(service._raiseSynchronously)
        service.startService()
        self.assertEqual(len(self.flushLoggedErrors(CannotListenError)), 1)

    def test_raised(self):
        service = StreamServerEndpointService(_Refuses(), Factory())
        internals.raiseStartErrors(service)
        self.assertRaises(CannotListenError, service.startService)

    def test_listenerService(self):
        """
        L{ListenerService} raises its listening errors, as one line naming
        the listener.
        """
        from playbalancer.site import CannotServe

        service = ListenerService(_Refuses(), Factory(), "tcp:1")
        error = self.assertRaises(CannotServe, service.startService)
        self.assertEqual(str(error), "listener tcp:1: in use")


class ShareOnStopTests(TestCase):
    """
    C{tcp.Port._shouldShutdown}: a stopped port shuts its socket down for
    every process sharing it, unless told not to.
    """

    async def stoppedWithCopy(self, share):
        from twisted.internet import reactor

        port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        self.assertTrue(port._shouldShutdown)
        copy = socket.socket(fileno=os.dup(port.fileno()))
        self.addCleanup(copy.close)
        if share:
            internals.shareOnStop(port)
        await port.stopListening()
        client = socket.socket()
        self.addCleanup(client.close)
        client.settimeout(5)
        try:
            client.connect(copy.getsockname())
        except ConnectionRefusedError:
            return False
        return True

    async def test_shutDownByDefault(self):
        self.assertFalse(await self.stoppedWithCopy(share=False))

    async def test_shared(self):
        self.assertTrue(await self.stoppedWithCopy(share=True))


class UnixPortTests(TestCase):
    """
    C{unix.Port}: a stopped port removes its path unless shared
    (L{internals.shareOnStop}); one made from a descriptor keeps its path's
    mode (L{internals.adoptUnixPort}).
    """

    def listening(self, mode):
        from twisted.internet import reactor

        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "s.sock")
        port = reactor.listenUNIX(path, Factory(), mode=mode)
        return port, path

    async def test_sharedPortKeepsItsPath(self):
        port, path = self.listening(0o600)
        internals.shareOnStop(port)
        await port.stopListening()
        self.assertTrue(os.path.exists(path))

    async def test_stoppedPortRemovesItsPath(self):
        port, path = self.listening(0o600)
        await port.stopListening()
        self.assertFalse(os.path.exists(path))

    async def test_adoptedKeepsTheMode(self):
        from twisted.internet import reactor

        port, path = self.listening(0o600)
        internals.shareOnStop(port)
        fd = os.dup(port.fileno())
        adopted = internals.adoptUnixPort(reactor, fd, Factory())
        os.close(fd)
        await port.stopListening()
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        await adopted.stopListening()
