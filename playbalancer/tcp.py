"""
TCP mode: each client connection goes to the member the balancer picks,
and bytes are relayed both ways unchanged, with backpressure in both
directions and half-close honoured.  A member that refuses is marked down
and the next one is tried, so the client sees no failure.
"""

from __future__ import annotations

from zope.interface import implementer

from twisted.internet.interfaces import IHalfCloseableProtocol, INegotiated, ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from playbalancer import outcome
from playbalancer.failures import describe
from playbalancer.outcome import Outcome
from playbalancer.interfaces import IRequestView
from playbalancer.flow import BUFFER_SIZE, SendDeadline, holdIfFull, keepsUp, pauses
from playbalancer.http.front import Rejected
from playbalancer.proxyline import ProxyHeaderError, parseProxyHeader
from playbalancer._net.rawsocket import SEND_LIMIT, closeWhenSent, closeWriting, forThroughput  # noqa: F401
from playbalancer._net.readsize import followReads
from playbalancer._net.sendnow import sendNow

_log = Logger()


def proxyHeader(client, local):
    """
    A PROXY protocol v1 line for a connection from C{client} to C{local}
    (Twisted addresses), as HAProxy sends it.
    """
    family = {"TCP": "TCP4", "TCP6": "TCP6"}.get(getattr(client, "type", ""), None)
    if family is None or getattr(local, "type", None) != client.type:
        return b"PROXY UNKNOWN\r\n"
    return (
        f"PROXY {family} {client.host} {local.host} {client.port} {local.port}\r\n"
    ).encode("ascii")


def _noDelay(transport):
    """
    Set a relayed TCP connection up for throughput (L{forThroughput});
    reads, and the bytes let queue before the other side is paused, follow
    the traffic (L{playbalancer._net.readsize}).
    """
    if ITCPTransport.providedBy(transport):
        forThroughput(transport)


@implementer(IRequestView)
class ConnectionView:
    """
    What a scheduler knows of a TCP-mode connection: its client's address,
    and whether it came over TLS.
    """

    method = path = query = host = None

    def __init__(self, client, secure=False):
        self.clientAddress = getattr(client, "host", None)
        self.secure = secure

    def header(self, name):
        return None

    def cookie(self, name):
        return None


@implementer(IHalfCloseableProtocol)
class _MemberSide(Protocol):
    """
    The connection to the member, relaying to the client.
    """

    def __init__(self, relay):
        self.relay = relay

    def dataReceived(self, data):
        relay = self.relay
        relay.received += len(data)
        relay.active()
        followReads(self.transport, len(data), relay.clientKeepsUp)
        if sendNow(relay.transport, data):
            holdIfFull(relay.transport, relay.front.bufferSize)

    def readConnectionLost(self):
        # The member is done sending: so are we, towards the client.  Once
        # both directions are done, close for good.
        relay = self.relay
        relay.memberDone = True
        closeWriting(relay.transport)
        relay.closingSends()
        if relay.clientDone:
            closeWhenSent(self.transport)

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        self.relay.memberLost()


class _MemberSideFactory(Factory):
    noisy = False

    def __init__(self, relay):
        self.relay = relay

    def buildProtocol(self, addr):
        return _MemberSide(self.relay)


@implementer(IHalfCloseableProtocol)
class TCPRelay(Protocol):
    """
    One client connection and its member connection.
    """

    member = None
    memberSide = None
    pending = None
    clientDone = False
    memberDone = False
    ended = False

    #: When the sweeper closes an idle relay (see L{TCPFrontFactory}).
    deadline = None

    def __init__(self, front):
        self.front = front
        self.tried = []
        self.early = []
        self.received = 0
        self.sent = 0
        self.client = None
        self._header = b"" if front.acceptProxyProtocol else None
        self._sendDeadline = None

    def connectionMade(self):
        self.front.relays.add(self)
        self.front.accepted += 1
        if self.front.idleTimeout and self.front.sweeper is not None:
            self.active()
            self.front.sweeper.watch(self)
        _noDelay(self.transport)
        self.client = self.transport.getPeer()
        if self._header is None:
            self._start()

    def _start(self):
        self.transport.pauseProducing()
        self._attempt()

    def _readHeader(self, data):
        """
        Behind another balancer: the connection starts with its PROXY
        header, which names the real client.
        """
        header = self._header + data
        try:
            parsed = parseProxyHeader(header)
        except ProxyHeaderError as e:
            _log.info("refused a connection to {balancer}: {problem}", balancer=self.front.balancer.name, problem=str(e))
            self._header = None
            self.transport.abortConnection()
            return
        if parsed is None:
            self._header = header
            return
        consumed, address = parsed
        self._header = None
        if address is not None:
            self.client = address
        rest = header[consumed:]
        if rest:
            self.early.append(rest)
            self.sent += len(rest)
        self._start()

    def _attempt(self):
        balancer = self.front.balancer
        view = ConnectionView(self.client, INegotiated.providedBy(self.transport))
        member = balancer.pick(view, self.tried)
        if member is None:
            _log.info("no usable member for a connection to {balancer}", balancer=balancer.name)
            closeWhenSent(self.transport)
            return
        self.tried.append(member)
        self.member = member
        balancer.begin(member)
        d = self.pending = self.front.endpointFor(member).connect(_MemberSideFactory(self))
        d.addCallbacks(self._connected, self._refused)

    def _connected(self, memberSide):
        self.pending = None
        self.memberSide = memberSide
        self.front.balancer.memberResponded(self.member)
        transport = memberSide.transport
        _noDelay(transport)
        if self.front.sendProxyProtocol:
            transport.write(proxyHeader(self.client, self.transport.getHost()))
        # Each side stops reading while the other cannot keep up.
        transport.registerProducer(self.transport, True)
        pauses(self.transport, transport, self.sendDeadline())
        for data in self.early:
            transport.write(data)
        self.early = []
        if self.clientDone:
            closeWriting(transport)
        if self.ended:
            closeWhenSent(transport)
        else:
            self.transport.resumeProducing()

    def _refused(self, failure):
        self.pending = None
        balancer = self.front.balancer
        member, self.member = self.member, None
        if self.ended:
            balancer.attemptEnded(member, Outcome(outcome.CANCELLED))
            return
        again = bool(balancer.candidates(self.tried))
        balancer.attemptEnded(member, Outcome(outcome.CONNECT, reason=describe(failure), retried=again))
        self._attempt()

    def dataReceived(self, data):
        if self._header is not None:
            self._readHeader(data)
            return
        self.sent += len(data)
        self.active()
        memberSide = self.memberSide
        followReads(self.transport, len(data), self.memberKeepsUp)
        if memberSide is not None:
            if sendNow(memberSide.transport, data):
                holdIfFull(memberSide.transport, self.front.bufferSize)
        else:
            self.early.append(data)

    def clientKeepsUp(self):
        return keepsUp(self.transport)

    def memberKeepsUp(self):
        return self.memberSide is None or keepsUp(self.memberSide.transport)

    def readConnectionLost(self):
        self.clientDone = True
        if self.memberSide is not None:
            if self.memberDone:
                closeWhenSent(self.memberSide.transport)
            else:
                closeWriting(self.memberSide.transport)

    def writeConnectionLost(self):
        pass

    def active(self):
        """
        Bytes went one way or the other: the idle clock starts again.
        """
        front = self.front
        if front.idleTimeout and front.sweeper is not None:
            self.deadline = front.sweeper.now + front.idleTimeout

    def expired(self):
        """
        Nothing went either way for C{idleTimeout}: close both sides.
        """
        self.deadline = None
        closeWhenSent(self.transport)
        self.closingSends()
        if self.memberSide is not None:
            closeWhenSent(self.memberSide.transport)

    def connectionLost(self, reason):
        self.front.relays.discard(self)
        if self.front.sweeper is not None:
            self.front.sweeper.unwatch(self)
        self.ended = True
        if self._sendDeadline is not None:
            self._sendDeadline.stop()
        if self.pending is not None:
            self.pending.cancel()
        elif self.memberSide is not None:
            closeWhenSent(self.memberSide.transport)

    def memberLost(self):
        """
        The member connection is gone: close the client's once its last
        bytes are out, and count the connection as over.
        """
        self.front.balancer.attemptEnded(
            self.member, Outcome(outcome.ANSWERED, bytesIn=self.received, bytesOut=self.sent)
        )
        closeWhenSent(self.transport)
        self.closingSends()

    def closingSends(self):
        """
        We are done sending to the client: what it has not taken yet must
        go within C{sendTimeout} between two reads.
        """
        deadline = self.sendDeadline()
        if deadline is not None:
            deadline.closing()

    def sendDeadline(self):
        """
        This connection's L{SendDeadline} (made when first needed), or
        L{None} without a C{sendTimeout}.
        """
        front = self.front
        if self._sendDeadline is None and front.sendTimeout and front.sweeper is not None:
            self._sendDeadline = SendDeadline(self.transport, front.sweeper, front.sendTimeout)
        return self._sendDeadline


class TCPFrontFactory(Factory):
    """
    Accepts client connections for one balancer in TCP mode.

    @param endpointFor: C{member -> IStreamClientEndpoint}.
    @param sendProxyProtocol: send a PROXY protocol v1 line to members first.
    @param acceptProxyProtocol: every connection starts with a PROXY header
        (v1 or v2) from a balancer in front, naming the real client.
    @param sweeper: a L{playbalancer.sweeper.Sweeper} for the send deadline.
    @param sendTimeout: seconds a client may take no bytes while some wait
        for it (then its connection is aborted); 0: no limit.
    @param idleTimeout: a relay with no bytes either way for this long is
        closed (HAProxy's C{timeout tunnel}); 0: never.
    @param maxConnections: client connections open at once; beyond it new
        ones are closed at once (and counted as C{rejected}); 0: no limit.
    @param bufferSize: bytes that may wait for a slow side before the other
        is paused.
    """

    noisy = False

    def __init__(
        self,
        balancer,
        endpointFor,
        sendProxyProtocol=False,
        acceptProxyProtocol=False,
        sweeper=None,
        sendTimeout=60.0,
        idleTimeout=3600.0,
        maxConnections=0,
        bufferSize=BUFFER_SIZE,
    ):
        self.balancer = balancer
        self.bufferSize = bufferSize
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.rejected = 0
        self.sweeper = sweeper
        self.sendTimeout = sendTimeout
        self.endpointFor = endpointFor
        self.sendProxyProtocol = sendProxyProtocol
        self.acceptProxyProtocol = acceptProxyProtocol
        #: The open client connections.
        self.relays = set()
        #: Client connections accepted so far.
        self.accepted = 0

    @property
    def openConnections(self):
        return len(self.relays)

    def closeGracefully(self, clock, grace, lingerIdle=False):
        """
        Let the open relays end by themselves, for C{grace} seconds at
        most; then cut the rest.

        @return: a L{Deferred} that fires when all are closed.
        """
        from playbalancer.graceful import untilClosed

        return untilClosed(self.relays, clock, grace)

    def buildProtocol(self, addr):
        if self.maxConnections and len(self.relays) >= self.maxConnections:
            self.rejected += 1
            return Rejected()
        relay = TCPRelay(self)
        relay.factory = self
        return relay
