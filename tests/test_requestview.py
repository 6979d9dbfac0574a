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
        self.assertEqual((head.header("X-User"), head.cookie("lang")), (b"bob", b"fr"))  # text names
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


class TrustedProxyViewTests(ProxyTestCase):
    async def test_clientBehindTrustedProxy(self):
        """
        Behind a trusted proxy the scheduler sees the client that proxy
        names (the last address in X-Forwarded-For that is not itself a
        trusted proxy), not the proxy's address; an untrusted peer's
        X-Forwarded-For is not believed.
        """
        import ipaddress

        members = self.startMembers("app1")
        balancer = self.startBalancer(
            [members[0].url],
            trustedProxies=[ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8")],
        )
        scheduler = balancer.scheduler = ByUser()
        client = self.client()
        for forwarded in [b"203.0.113.5", b"198.51.100.1, 203.0.113.5, 10.1.2.3", b"not an address"]:
            response, _ = await self.fetch(
                client, "/echo", headers=Headers({b"X-Forwarded-For": [forwarded]})
            )
            self.assertEqual(response.code, 200)
        self.assertEqual(
            [view.clientAddress for view in scheduler.seen],
            ["203.0.113.5", "203.0.113.5", "127.0.0.1"],
        )

    async def test_untrustedPeer(self):
        members = self.startMembers("app1")
        balancer = self.startBalancer([members[0].url])
        scheduler = balancer.scheduler = ByUser()
        response, _ = await self.fetch(
            self.client(), "/echo", headers=Headers({b"X-Forwarded-For": [b"203.0.113.5"]})
        )
        self.assertEqual(scheduler.seen[0].clientAddress, "127.0.0.1")


class UNIXSocketViewTests(ProxyTestCase):
    async def test_noAddress(self):
        """
        A client on a UNIX socket has no address: the view says L{None}.
        """
        from twisted.internet.endpoints import UNIXClientEndpoint
        from twisted.internet.protocol import Factory, Protocol

        from playbalancer.testing import waitUntil
        members = self.startMembers("app1")
        balancer = self.startBalancer([members[0].url])
        scheduler = balancer.scheduler = ByUser()
        path = self.mktemp()
        port = reactor.listenUNIX(path, self.frontFactory)
        self.addCleanup(port.stopListening)
        client = await UNIXClientEndpoint(reactor, path).connect(Factory.forProtocol(Protocol))
        self.addCleanup(client.transport.loseConnection)
        client.transport.write(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
        await waitUntil(lambda: scheduler.seen, reactor)
        self.assertIsNone(scheduler.seen[0].clientAddress)


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
