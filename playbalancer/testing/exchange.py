"""
An exchange without sockets, for tests: an in-memory client side
(L{MemoryClient}) and in-memory members (L{MemoryMembers}), whose
connections are L{twisted.internet.testing.StringTransport}s that a test
reads requests from and writes responses to.
"""

from __future__ import annotations

from zope.interface import implementer

from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from playbalancer.http.proxy import HTTPProxy
from playbalancer.http.upstream import MemberPools
from playbalancer.interfaces import IClientSide
from playbalancer.sweeper import Sweeper


@implementer(IClientSide)
class MemoryClient:
    """
    A client side that records what the exchange sends it.

    @ivar head: C{(status, reason, headers, length, keepAlive, upgrade)} of
        the response, or L{None}.
    @ivar own: C{(status, text, keepAlive, extra)} of a response of our own.
    @ivar body: the body bytes, joined.
    @ivar ended: C{"finished"}, C{"aborted"}, C{"closed"} or L{None}.
    """

    accessLog = None

    def __init__(self):
        self.closing = False
        self.head = None
        self.own = None
        self.interim = []
        self.continued = 0
        self.body = b""
        self.ended = None
        self.paused = False
        self.slow = False
        self.pacing = []
        self.tunnel = None

    def sendContinue(self):
        self.continued += 1

    def sendInterim(self, status, reason, headers):
        self.interim.append((status, reason, headers))

    def startResponse(self, status, reason, headers, length, keepAlive, upgrade=None):
        self.head = (status, reason, headers, length, keepAlive, upgrade)

    def writeBody(self, data):
        self.body += data

    def readEnd(self):
        pass

    def finish(self):
        self.ended = "finished"

    def respond(self, status, text, keepAlive=True, extra=()):
        self.own = (status, text, keepAlive, list(extra))
        return len(text) + 1

    def abort(self):
        self.ended = "aborted"

    def close(self):
        self.ended = "closed"

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False

    def stopProducing(self):
        pass

    def pauseWhileFull(self, producer):
        self.pacing.append(producer)
        return producer

    def stopPausing(self, token):
        self.pacing.remove(token)

    def keepsUp(self):
        return not self.slow

    def startTunnel(self, exchange):
        self.tunnel = exchange

    def tunnelActive(self):
        pass

    @property
    def status(self):
        """
        The status the client got (a member's or ours), or L{None}.
        """
        if self.head is not None:
            return self.head[0]
        if self.own is not None:
            return self.own[0]
        return None


class MemoryMembers:
    """
    Endpoints for members that live in memory: C{connect} makes a member
    connection on a L{StringTransport} at once (or fails, for a member in
    C{refusing}).

    @ivar connections: per member name, the connections made, in order.
    """

    def __init__(self):
        self.connections = {}
        self.refusing = set()

    def forMember(self, member):
        return _MemoryEndpoint(self, member.name)

    def last(self, name):
        """
        The latest connection to member C{name}.
        """
        return self.connections[name][-1]


class _MemoryEndpoint:
    def __init__(self, members, name):
        self.members = members
        self.name = name

    def connect(self, factory):
        if self.name in self.members.refusing:
            return fail(Failure(ConnectionRefusedError("refused in memory")))
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        self.members.connections.setdefault(self.name, []).append(protocol)
        return succeed(protocol)


def memoryProxy(balancer, clock, **settings):
    """
    An L{HTTPProxy} for C{balancer} whose members are in memory.

    @return: the proxy and its L{MemoryMembers}.
    """
    members = MemoryMembers()
    pools = MemberPools(members.forMember, Sweeper(clock))
    return HTTPProxy(balancer, pools, clock, **settings), members
