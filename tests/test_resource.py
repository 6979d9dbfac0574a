"""
The proxy as a twisted.web resource, over real sockets: a C{Site} on
127.0.0.1 with a static child and a L{ReverseProxyResource} at C{/app},
over balancers read by L{loadBalancers} from a config file, and real
members.
"""

from __future__ import annotations

import io
import json
import os

import treq

from twisted.internet import reactor
from twisted.internet.protocol import ClientCreator, Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import resource, server, static
from twisted.web.test.requesthelper import DummyRequest

from zope.interface.verify import verifyObject

from playbalancer.balancer import Balancer, Member
from playbalancer.config import ConfigError
from playbalancer.testing.exchange import memoryProxy
from playbalancer.interfaces import IRequestView
from playbalancer.embed import loadBalancers
from playbalancer.resource import ReverseProxyResource, WebRequestClient
from playbalancer.schedulers import RoundRobinScheduler
from playbalancer.testing import MemberServer, waitUntil


class _EmbeddedCase(TestCase):
    timeout = 60

    def setUp(self):
        self.members = []
        for name in ("app1", "app2"):
            member = MemberServer(name, reactor).start()
            self.addCleanup(member.stop)
            self.members.append(member)

    def serve(self, extra=""):
        """
        Load the balancers from a file and serve a site with them at /app
        and a static directory at /static.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                '[balancer.mycluster]\nscheduler = "round-robin"\n'
                + "".join(
                    f'[[balancer.mycluster.member]]\nname = "{m.name}"\nurl = "{m.url}"\n'
                    for m in self.members
                )
                + extra
            )
        self.balancers = loadBalancers(path, reactor)
        self.balancers.startService()
        self.addCleanup(self.balancers.stopService)
        public = self.mktemp()
        os.mkdir(public)
        with open(os.path.join(public, "hello.txt"), "w") as f:
            f.write("static hello\n")
        root = resource.Resource()
        root.putChild(b"static", static.File(public))
        root.putChild(b"app", ReverseProxyResource(self.balancers["mycluster"]))
        site = server.Site(root)
        site.log = lambda request: None
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.base = f"http://127.0.0.1:{port.getHost().port}"

    async def get(self, path, **kwargs):
        response = await treq.get(self.base + path, persistent=False, **kwargs)
        return response, await response.content()


class EmbeddedTests(_EmbeddedCase):

    async def test_pathUnderTheMount(self):
        """
        /app/echo?y=1 reaches a member as /echo?y=1, with the proxy's
        forwarding headers; the site's own resources are served beside it.
        """
        self.serve()
        response, body = await self.get("/app/echo?y=1")
        self.assertEqual(response.code, 200)
        echoed = json.loads(body)
        self.assertEqual(echoed["uri"], "/echo?y=1")
        names = {name.lower() for name, _ in echoed["headers"]}
        self.assertIn("x-forwarded-for", names)
        self.assertIn("x-request-id", names)
        response, body = await self.get("/static/hello.txt")
        self.assertEqual(body, b"static hello\n")

    async def test_spreadsOverMembers(self):
        """
        The balancer's scheduler spreads the requests.
        """
        self.serve()
        served = set()
        for _ in range(4):
            response, _ = await self.get("/app/")
            served.add(response.headers.getRawHeaders(b"x-served-by")[0])
        self.assertEqual(served, {b"app1", b"app2"})

    async def test_locationRewritten(self):
        """
        A member's redirect to itself comes back under the mount.
        """
        self.serve()
        response, _ = await self.get("/app/redirect", allow_redirects=False)
        self.assertEqual(response.code, 302)
        location = response.headers.getRawHeaders(b"location")[0]
        self.assertEqual(location, self.base.encode() + b"/app/")

    async def test_bodyToMember(self):
        """
        A request body (larger than is kept for a retry) reaches the
        member whole.
        """
        self.serve()
        data = b"x" * 300000
        response = await treq.post(self.base + "/app/upload", data=data, persistent=False)
        echoed = json.loads(await response.content())
        self.assertEqual(echoed["body_length"], len(data))
        self.assertEqual(echoed["method"], "POST")

    async def test_largeResponseStreams(self):
        """
        A large response arrives whole.
        """
        self.serve()
        response, body = await self.get("/app/large?size=3000000")
        self.assertEqual(len(body), 3000000)
        self.assertEqual(response.length, 3000000)  # framed by Content-Length, not chunked

    async def test_failover(self):
        """
        With one member gone, requests go to the other (the failed member
        is retried elsewhere, as on a listener).
        """
        self.serve()
        await self.members[0].stop()
        for _ in range(3):
            response, _ = await self.get("/app/")
            self.assertEqual(response.code, 200)
            self.assertEqual(response.headers.getRawHeaders(b"x-served-by"), [b"app2"])
        self.assertFalse(self.balancers.balancer("mycluster").member("app1").healthy)

    async def test_healthChecks(self):
        """
        The service runs the balancer's health checks: members that fail
        them are marked down.
        """
        self.serve('[balancer.mycluster.health]\npath = "/nothing-here"\ninterval = 0.1\nfall = 1\n')
        balancer = self.balancers.balancer("mycluster")
        await waitUntil(lambda: not any(m.healthy for m in balancer.members), reactor)
        self.assertTrue(
            all(m.downReason.startswith("health check") for m in balancer.members),
            [m.downReason for m in balancer.members],
        )

    def test_badConfig(self):
        """
        A bad config raises ConfigError naming the key.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[balancer.mycluster]\n[[balancer.mycluster.member]]\nname = "a"\nurl = "ftp://x"\n')
        error = self.assertRaises(ConfigError, loadBalancers, path, reactor)
        self.assertIn("balancer.mycluster.member[0].url", str(error))


class _Stalled(Protocol):
    """
    A client that sends one request and never reads the answer.
    """

    def __init__(self, data):
        self.data = data

    def connectionMade(self):
        self.transport.pauseProducing()
        self.transport.write(self.data)


class FlowTests(_EmbeddedCase):
    def memberConnections(self):
        proxy = self.balancers["mycluster"]
        return [c for m in proxy.balancer.members for c in proxy.pools.forMember(m)._all]

    async def test_slowClientPausesMember(self):
        """
        A client that stops reading a large response pauses the member: the
        proxy stops reading its connection instead of buffering the rest.
        """
        self.serve()
        port = int(self.base.rsplit(":", 1)[1])
        request = b"GET /app/large?size=500000000 HTTP/1.1\r\nHost: a\r\n\r\n"
        client = await ClientCreator(reactor, _Stalled, request).connectTCP("127.0.0.1", port)
        self.addCleanup(client.transport.abortConnection)

        def paused():
            connections = [c for c in self.memberConnections() if c.transport is not None]
            return bool(connections) and all(
                c.transport not in reactor.getReaders() for c in connections
            )

        await waitUntil(paused, reactor, timeout=20)

    async def test_clientLeaves(self):
        """
        A client that leaves before the answer ends the attempt: the
        member connection is closed and nothing stays in flight.
        """
        self.serve()
        port = int(self.base.rsplit(":", 1)[1])
        request = b"GET /app/slow?seconds=30 HTTP/1.1\r\nHost: a\r\n\r\n"
        client = await ClientCreator(reactor, _Stalled, request).connectTCP("127.0.0.1", port)
        balancer = self.balancers.balancer("mycluster")
        await waitUntil(lambda: sum(m.active for m in balancer.members) == 1, reactor)
        client.transport.loseConnection()
        await waitUntil(lambda: sum(m.active for m in balancer.members) == 0, reactor)
        await waitUntil(lambda: not self.memberConnections(), reactor)


class _Recorder:
    def __init__(self):
        self.seen = []

    def pick(self, candidates, request):
        self.seen.append(request)
        return candidates[0]


class ViewTests(_EmbeddedCase):
    async def test_schedulerSeesTheRequest(self):
        """
        Through the resource, schedulers see the same request view as on a
        listener: the method, the path under the mount, the query, the
        host, headers and the client's address.
        """
        self.serve()
        recorder = self.balancers.balancer("mycluster").scheduler = _Recorder()
        response, _ = await self.get("/app/echo?q=1", headers={b"X-User": [b"ann"]})
        self.assertEqual(response.code, 200)
        (view,) = recorder.seen
        verifyObject(IRequestView, view)
        self.assertEqual(
            (view.method, view.path, view.query, view.clientAddress, view.secure),
            (b"GET", b"/echo", b"q=1", "127.0.0.1", False),
        )
        self.assertEqual(view.header(b"x-user"), b"ann")
        self.assertTrue(view.host.startswith(b"127.0.0.1:"))


class _WebRequest(DummyRequest):
    def isSecure(self):
        return False


class WebRequestClientTests(SynchronousTestCase):
    """
    The twisted.web client side without sockets: a twisted.web test request
    and in-memory members.
    """

    def setUp(self):
        clock = Clock()
        members = [Member("app1", "http://10.0.0.1:9999")]
        self.balancer = Balancer("b", RoundRobinScheduler(), members, clock)
        self.proxy, self.memory = memoryProxy(self.balancer, clock)

    def webRequest(self, method, uri, body=None, version=b"HTTP/1.1"):
        request = _WebRequest([])
        request.method = method
        request.uri = uri
        request.clientproto = version
        if version == b"HTTP/1.1":
            request.requestHeaders.setRawHeaders(b"host", [b"example.com"])
        request.content = io.BytesIO(body) if body is not None else None
        return request

    def test_http10WithoutHost(self):
        """
        An HTTP/1.0 request without Host is passed on, as a listener does.
        """
        request = self.webRequest(b"GET", b"/x", version=b"HTTP/1.0")
        ReverseProxyResource(self.proxy).render(request)
        self.assertIsNone(request.responseCode)
        self.assertTrue(self.memory.last("app1").transport.value().startswith(b"GET /x HTTP/1.1\r\n"))

    def test_headGetsNoZeroLength(self):
        """
        A HEAD response whose member said no length gets none of ours (a
        Content-Length: 0 would say the resource is empty); a GET with an
        empty body gets Content-Length: 0.
        """
        for method, expected in ((b"HEAD", None), (b"GET", [b"0"])):
            request = self.webRequest(method, b"/x")
            client = WebRequestClient(request)
            client.startResponse(200, b"OK", [], 0, True)
            self.assertEqual(request.responseHeaders.getRawHeaders(b"content-length"), expected)

    def test_startFailureAnswered(self):
        """
        When starting the exchange raises (a scheduler plugin's bug), the
        client gets a 500 and the member's attempt count is not left up.
        """
        class Broken:
            def pick(self, candidates, request):
                raise RuntimeError("scheduler bug")

        self.balancer.scheduler = Broken()
        request = self.webRequest(b"GET", b"/x")
        ReverseProxyResource(self.proxy).render(request)
        self.assertEqual(request.responseCode, 500)
        self.assertEqual(self.balancer.members[0].active, 0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class _AnswersEarly(Protocol):
    """
    A member that answers 413 as soon as a request head arrives, and
    reads nothing more.
    """

    def connectionMade(self):
        self.head = b""

    def dataReceived(self, data):
        if b"\r\n\r\n" in self.head:
            return
        self.head += data
        if b"\r\n\r\n" in self.head:
            self.transport.pauseProducing()
            self.transport.write(b"HTTP/1.1 413 Too Big\r\nContent-Length: 0\r\n\r\n")


class _CountingReads:
    """
    A request body file that counts the bytes read from it.
    """

    def __init__(self, content):
        self.content = content
        self.bytesRead = 0

    def __getattr__(self, name):
        return getattr(self.content, name)

    def read(self, size=-1):
        data = self.content.read(size)
        self.bytesRead += len(data)
        return data


class _Recording(ReverseProxyResource):
    def render(self, request):
        request.content = _CountingReads(request.content)
        self.bodies.append(request.content)
        return ReverseProxyResource.render(self, request)


class EarlyAnswerTests(TestCase):
    timeout = 60

    async def test_noMoreBodyReadAfterEarlyAnswer(self):
        """
        A member that answers before it took the body (a 413 to a large
        upload): the rest of the body is not read from twisted.web's
        temporary file once the answer came.
        """
        factory = Factory.forProtocol(_AnswersEarly)
        member = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(member.stopListening)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                '[balancer.b]\n[[balancer.b.member]]\nname = "early"\n'
                f'url = "http://127.0.0.1:{member.getHost().port}"\n'
            )
        balancers = loadBalancers(path, reactor)
        balancers.startService()
        self.addCleanup(balancers.stopService)
        root = resource.Resource()
        proxy = _Recording(balancers["b"])
        proxy.bodies = []
        root.putChild(b"app", proxy)
        site = server.Site(root)
        site.log = lambda request: None
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        size = 32 * 2**20
        response = await treq.put(
            f"http://127.0.0.1:{port.getHost().port}/app/up", data=b"x" * size, persistent=False
        )
        await response.content()
        self.assertEqual(response.code, 413)
        self.assertLess(proxy.bodies[0].bytesRead, size // 2)
