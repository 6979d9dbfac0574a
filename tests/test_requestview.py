"""
What schedulers see of a request (L{playbalancer.interfaces.IRequestView}):
in memory for the parsed head, and over real sockets for a scheduler that
places requests by a header, and for TCP mode.
"""

from __future__ import annotations

import zlib

from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from playbalancer.interfaces import IRequestView, IScheduler
from playbalancer.tcp import ConnectionView
from playbalancer.wire import Limits, parseRequestHead

from tests.proxyharness import ProxyTestCase, servedBy


class ViewTests(SynchronousTestCase):
    def test_requestHead(self):
        head = parseRequestHead(
            b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: shop.example\r\nX-User: ann\r\n"
            b"Cookie: theme=dark; session=\"abc\"\r\nCookie: lang=fr\r\nx-user: bob",
            Limits(),
        )
        head.client = "192.0.2.7"
        verifyObject(IRequestView, head)
        self.assertEqual(
            (head.method, head.path, head.query, head.host, head.clientAddress, head.secure),
            (b"GET", b"/a/b", b"x=1&y=2", b"shop.example", "192.0.2.7", False),
        )
        self.assertEqual(head.header(b"x-user"), b"bob")  # the last one
        self.assertEqual(head.header(b"X-Missing"), None)
        self.assertEqual(
            (head.cookie(b"session"), head.cookie(b"lang"), head.cookie(b"nope")),
            (b"abc", b"fr", None),
        )

    def test_connection(self):
        from twisted.internet.address import IPv4Address

        view = ConnectionView(IPv4Address("TCP", "198.51.100.3", 5555), secure=True)
        verifyObject(IRequestView, view)
        self.assertEqual((view.clientAddress, view.secure, view.method, view.path), ("198.51.100.3", True, None, None))
        self.assertIsNone(view.header(b"host"))
        self.assertIsNone(view.cookie(b"session"))


@implementer(IScheduler)
class ByUser:
    """
    Places a request by a hash of its C{X-User} header; records the views.
    """

    def __init__(self):
        self.seen = []

    def pick(self, candidates, request):
        self.seen.append(request)
        user = request.header(b"x-user") or b""
        return candidates[zlib.crc32(user) % len(candidates)]


class SchedulerSeesTheRequestTests(ProxyTestCase):
    async def test_hashByHeader(self):
        members = self.startMembers("app1", "app2")
        balancer = self.startBalancer([m.url for m in members])
        scheduler = balancer.scheduler = ByUser()
        client = self.client()
        placed = {}
        for user in [b"ann", b"bob", b"cy", b"dee"] * 3:
            response, _ = await self.fetch(client, "/echo?q=1", headers=Headers({b"X-User": [user]}))
            self.assertEqual(response.code, 200)
            placed.setdefault(user, set()).add(servedBy(response))
        self.assertTrue(all(len(where) == 1 for where in placed.values()), placed)
        view = scheduler.seen[0]
        self.assertEqual((view.method, view.path, view.query), (b"GET", b"/echo", b"q=1"))
        self.assertEqual(view.clientAddress, "127.0.0.1")


class TCPViewTests(ProxyTestCase):
    async def test_tcpModeGivesTheAddress(self):
        from twisted.internet.protocol import Factory, Protocol

        from playbalancer.balancer import Balancer, Member
        from playbalancer.endpoints import MemberEndpoints
        from playbalancer.tcp import TCPFrontFactory
        from playbalancer.testing import RawConversation

        class Echo(Protocol):
            def dataReceived(self, data):
                self.transport.write(data)

        port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        scheduler = ByUser()
        balancer = Balancer(
            "tcp", scheduler, [Member("m", f"tcp://127.0.0.1:{port.getHost().port}")], reactor
        )
        front = TCPFrontFactory(balancer, MemberEndpoints(reactor, 5).forMember)
        listening = reactor.listenTCP(0, front, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        talk = await RawConversation.open(reactor, listening.getHost().port)
        talk.send(b"hi")
        await talk.waitFor(b"hi")
        await talk.close()
        (view,) = scheduler.seen
        self.assertEqual((view.clientAddress, view.method, view.secure), ("127.0.0.1", None, False))
