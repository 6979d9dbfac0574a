"""
Redirects that name a member by another address: the addresses its host
name resolves to (L{playbalancer.http.memberaddresses.MemberAddresses}),
its own C{aliases} and its route's, rewritten by
L{playbalancer.http.proxy.HTTPProxy.locationRewriter}; alone with a fake
resolver, then through a real front over sockets.
"""

from __future__ import annotations

from zope.interface import implementer

from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver, IHostResolution
from twisted.internet.task import Clock
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import resource, server

from playbalancer.balancer import Balancer, Member
from playbalancer.endpoints import MemberEndpoints
from playbalancer.front import FrontSettings, HTTPFrontFactory
from playbalancer.http.memberaddresses import (
    REFRESH_INTERVAL,
    MemberAddresses,
    aliasBases,
    baseURLs,
)
from playbalancer.testing.exchange import memoryProxy
from playbalancer.http.proxy import HTTPProxy
from playbalancer.schedulers import RoundRobinScheduler
from playbalancer.sweeper import Sweeper
from playbalancer.testing import closeAll
from playbalancer.upstream import MemberPools
from tests.proxyharness import ProxyTestCase


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name):
        self.name = name

    def cancel(self):
        raise NotImplementedError()


@implementer(IHostnameResolver)
class FakeResolver:
    """
    Answers what C{answers} says for a name (address texts; none: it does
    not resolve), when told to with L{answer}, or at once if C{synchronous}.

    @ivar asked: the names asked for, in order.
    @ivar pending: C{(name, receiver)} of the resolutions not answered yet.
    """

    def __init__(self, answers=None, synchronous=False):
        self.answers = dict(answers or {})
        self.synchronous = synchronous
        self.asked = []
        self.pending = []

    def resolveHostName(
        self, receiver, hostName, portNumber=0, addressTypes=None, transportSemantics="TCP"
    ):
        self.asked.append(hostName)
        resolution = _Resolution(hostName)
        receiver.resolutionBegan(resolution)
        if self.synchronous:
            self._complete(receiver, hostName)
        else:
            self.pending.append((hostName, receiver))
        return resolution

    def answer(self, name=None):
        """
        Complete the pending resolutions (of C{name} only, if given).
        """
        still = []
        for hostName, receiver in self.pending:
            if name is None or hostName == name:
                self._complete(receiver, hostName)
            else:
                still.append((hostName, receiver))
        self.pending = still

    def _complete(self, receiver, hostName):
        for address in self.answers.get(hostName, ()):
            if ":" in address:
                receiver.addressResolved(IPv6Address("TCP", address, 0))
            else:
                receiver.addressResolved(IPv4Address("TCP", address, 0))
        receiver.resolutionComplete()


@implementer(IHostnameResolver)
class BrokenResolver:
    def resolveHostName(self, receiver, hostName, *args, **kwargs):
        raise ValueError("no resolving today")


class ResolverClock(Clock):
    """
    A L{Clock} that, as the reactor does, provides C{nameResolver}.
    """

    def __init__(self, resolver):
        super().__init__()
        self.nameResolver = resolver


LOCALHOST = {"localhost": ["127.0.0.1", "::1"]}


class BaseURLsTests(SynchronousTestCase):
    """
    L{baseURLs} and L{aliasBases}: the ways one base URL may be written.
    """

    def test_otherPort(self):
        self.assertEqual(
            baseURLs("http", "10.0.0.1", 9999, b"/base"), [b"http://10.0.0.1:9999/base"]
        )

    def test_defaultPorts(self):
        """
        With the scheme's default port, also without it.
        """
        self.assertEqual(
            baseURLs("http", "app", 80, b""), [b"http://app:80", b"http://app"]
        )
        self.assertEqual(
            baseURLs("https", "app", 443, b"/x"), [b"https://app:443/x", b"https://app/x"]
        )
        self.assertEqual(baseURLs("https", "app", 80, b""), [b"https://app:80"])

    def test_ipv6Brackets(self):
        self.assertEqual(baseURLs("http", "::1", 9999, b""), [b"http://[::1]:9999"])

    def test_scopedIPv6(self):
        """
        A zone id is written as RFC 6874 says: its C{%} escaped.
        """
        self.assertEqual(
            baseURLs("http", "fe80::1%eth0", 80, b""),
            [b"http://[fe80::1%25eth0]:80", b"http://[fe80::1%25eth0]"],
        )

    def test_aliasWithoutPort(self):
        self.assertEqual(
            aliasBases("http://app.internal"), [b"http://app.internal:80", b"http://app.internal"]
        )

    def test_aliasWithPortAndPath(self):
        self.assertEqual(
            aliasBases("https://app.internal:8443/shop/"), [b"https://app.internal:8443/shop"]
        )
        self.assertEqual(
            aliasBases("http://app.internal:80/shop"),
            [b"http://app.internal:80/shop", b"http://app.internal/shop"],
        )


class MemberAddressesTests(SynchronousTestCase):
    """
    L{MemberAddresses} with a fake resolver on a L{Clock}.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)

    def addresses(self, resolver):
        return MemberAddresses(self.clock, resolver=resolver)

    def test_resolvedBases(self):
        """
        A member's extra bases are its URL with each address its host name
        resolves to, IPv6 ones in brackets.
        """
        resolver = FakeResolver(LOCALHOST, synchronous=True)
        addresses = self.addresses(resolver)
        member = Member("a", "http://localhost:9999/base")
        addresses.watch([member])
        self.assertEqual(resolver.asked, ["localhost"])
        self.assertEqual(
            addresses.basesFor(member),
            [b"http://127.0.0.1:9999/base", b"http://[::1]:9999/base"],
        )

    def test_defaultPortBases(self):
        """
        With the scheme's default port, each address also without it.
        """
        addresses = self.addresses(FakeResolver(LOCALHOST, synchronous=True))
        member = Member("a", "https://localhost/")
        addresses.watch([member])
        self.assertEqual(
            sorted(addresses.basesFor(member)),
            sorted(
                [
                    b"https://127.0.0.1:443",
                    b"https://127.0.0.1",
                    b"https://[::1]:443",
                    b"https://[::1]",
                ]
            ),
        )

    def test_ipLiteralNotResolved(self):
        """
        A member named by its address has no other addresses: nothing is
        resolved.
        """
        resolver = FakeResolver(synchronous=True)
        addresses = self.addresses(resolver)
        members = [Member("a", "http://10.0.0.1:9999"), Member("b", "http://[::1]:9999")]
        addresses.watch(members)
        self.assertEqual(resolver.asked, [])
        self.assertEqual([addresses.basesFor(m) for m in members], [[], []])

    def test_cached(self):
        """
        A name is resolved once, whatever members and calls use it, until
        the refresh interval has passed.
        """
        resolver = FakeResolver(LOCALHOST, synchronous=True)
        addresses = self.addresses(resolver)
        a = Member("a", "http://localhost:9999")
        b = Member("b", "http://localhost:9998")
        addresses.watch([a])
        addresses.watch([a, b])
        addresses.refreshIfDue()
        self.clock.advance(REFRESH_INTERVAL - 1)
        addresses.refreshIfDue()
        self.assertEqual(resolver.asked, ["localhost"])
        self.assertEqual(addresses.basesFor(b), [b"http://127.0.0.1:9998", b"http://[::1]:9998"])

    def test_refresh(self):
        """
        Once the interval has passed, the next use resolves every watched
        name again; new addresses replace the old ones and change the
        version.
        """
        resolver = FakeResolver({"app": ["10.0.0.1"]}, synchronous=True)
        addresses = self.addresses(resolver)
        member = Member("a", "http://app:9999")
        addresses.watch([member])
        version = addresses.version
        self.clock.advance(REFRESH_INTERVAL)
        resolver.answers["app"] = ["10.0.0.2"]
        addresses.refreshIfDue()
        self.assertEqual(resolver.asked, ["app", "app"])
        self.assertEqual(addresses.basesFor(member), [b"http://10.0.0.2:9999"])
        self.assertGreater(addresses.version, version)

    def test_refreshSameAddresses(self):
        """
        A refresh that finds the same addresses (in any order) leaves the
        version alone: nothing needs rebuilding.
        """
        resolver = FakeResolver({"app": ["10.0.0.1", "10.0.0.2"]}, synchronous=True)
        addresses = self.addresses(resolver)
        addresses.watch([Member("a", "http://app:9999")])
        version = addresses.version
        resolver.answers["app"] = ["10.0.0.2", "10.0.0.1"]
        self.clock.advance(REFRESH_INTERVAL)
        addresses.refreshIfDue()
        self.assertEqual(len(resolver.asked), 2)
        self.assertEqual(addresses.version, version)

    def test_versionChangesOnAnswer(self):
        resolver = FakeResolver(LOCALHOST)
        addresses = self.addresses(resolver)
        addresses.watch([Member("a", "http://localhost:9999")])
        version = addresses.version
        resolver.answer()
        self.assertGreater(addresses.version, version)

    def test_oneInFlight(self):
        """
        While a name is being resolved, no other resolution of it starts,
        for another member or a refresh; the answer serves all.
        """
        resolver = FakeResolver(LOCALHOST)
        addresses = self.addresses(resolver)
        a = Member("a", "http://localhost:9999")
        b = Member("b", "http://localhost:9998")
        addresses.watch([a, b])
        addresses.watch([a, b, Member("c", "http://localhost:9997")])
        self.clock.advance(REFRESH_INTERVAL - 1)
        addresses.refreshIfDue()
        self.assertEqual(resolver.asked, ["localhost"])
        self.assertEqual(addresses.basesFor(a), [])
        resolver.answer()
        self.assertEqual(addresses.basesFor(b), [b"http://127.0.0.1:9998", b"http://[::1]:9998"])

    def test_hungResolutionReplaced(self):
        """
        A resolution still unanswered after the interval no longer stops
        another; its late answer is ignored.
        """
        resolver = FakeResolver({"app": ["10.0.0.1"]})
        addresses = self.addresses(resolver)
        member = Member("a", "http://app:9999")
        addresses.watch([member])
        self.clock.advance(REFRESH_INTERVAL)
        addresses.refreshIfDue()
        self.assertEqual(resolver.asked, ["app", "app"])
        resolver.answers["app"] = ["10.0.0.2"]
        pending = resolver.pending
        resolver.pending = pending[1:]
        resolver.answer()
        resolver.answers["app"] = ["10.0.0.1"]
        resolver.pending = pending[:1]
        resolver.answer()
        self.assertEqual(addresses.basesFor(member), [b"http://10.0.0.2:9999"])

    def test_failureLeavesLiteralBases(self):
        """
        A name that does not resolve gives no extra bases; it is tried
        again at the next refresh.
        """
        resolver = FakeResolver(synchronous=True)
        addresses = self.addresses(resolver)
        member = Member("a", "http://nowhere.invalid:9999")
        addresses.watch([member])
        self.assertEqual(addresses.basesFor(member), [])
        resolver.answers["nowhere.invalid"] = ["10.0.0.9"]
        self.clock.advance(REFRESH_INTERVAL)
        addresses.refreshIfDue()
        self.assertEqual(addresses.basesFor(member), [b"http://10.0.0.9:9999"])

    def test_failedRefreshKeepsAddresses(self):
        """
        A refresh that finds nothing (DNS down) keeps what was known.
        """
        resolver = FakeResolver({"app": ["10.0.0.1"]}, synchronous=True)
        addresses = self.addresses(resolver)
        member = Member("a", "http://app:9999")
        addresses.watch([member])
        del resolver.answers["app"]
        self.clock.advance(REFRESH_INTERVAL)
        addresses.refreshIfDue()
        self.assertEqual(len(resolver.asked), 2)
        self.assertEqual(addresses.basesFor(member), [b"http://10.0.0.1:9999"])

    def test_resolverRaises(self):
        """
        A resolver that raises is logged; the member keeps its literal
        bases only, and nothing stays in flight.
        """
        addresses = self.addresses(BrokenResolver())
        member = Member("a", "http://app:9999")
        addresses.watch([member])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(addresses.basesFor(member), [])
        self.successResultOf(addresses.settled())

    def test_noNameResolver(self):
        """
        On a clock without C{nameResolver} (a L{Clock}) nothing is
        resolved.
        """
        addresses = MemberAddresses(self.clock)
        member = Member("a", "http://localhost:9999")
        addresses.watch([member])
        self.assertEqual(addresses.basesFor(member), [])
        self.successResultOf(addresses.settled())

    def test_clocksResolver(self):
        """
        Without a resolver given, the clock's (the reactor's)
        C{nameResolver} is used.
        """
        resolver = FakeResolver(LOCALHOST, synchronous=True)
        addresses = MemberAddresses(ResolverClock(resolver))
        addresses.watch([Member("a", "http://localhost:9999")])
        self.assertEqual(resolver.asked, ["localhost"])

    def test_settled(self):
        """
        L{MemberAddresses.settled} fires once no resolution is in flight.
        """
        resolver = FakeResolver(LOCALHOST)
        addresses = self.addresses(resolver)
        addresses.watch([Member("a", "http://localhost:9999"), Member("b", "http://app:9999")])
        d = addresses.settled()
        self.assertNoResult(d)
        resolver.answer("app")
        self.assertNoResult(d)
        resolver.answer()
        self.successResultOf(d)
        self.successResultOf(addresses.settled())

    def test_forgetsUnwatchedNames(self):
        """
        Names no watched member has any more are forgotten: not refreshed,
        and resolved afresh if a member has them again.
        """
        resolver = FakeResolver({"old": ["10.0.0.1"], "new": ["10.0.0.2"]}, synchronous=True)
        addresses = self.addresses(resolver)
        addresses.watch([Member("a", "http://old:9999")])
        addresses.watch([Member("b", "http://new:9999")])
        self.clock.advance(REFRESH_INTERVAL)
        addresses.refreshIfDue()
        self.assertEqual(resolver.asked, ["old", "new", "new"])
        addresses.watch([Member("a", "http://old:9999")])
        self.assertEqual(resolver.asked, ["old", "new", "new", "old"])


class ProxyRewriterTests(SynchronousTestCase):
    """
    L{HTTPProxy.locationRewriter} with the members' addresses and
    aliases, on in-memory members.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.resolver = FakeResolver(LOCALHOST)

    def proxy(self, members, **settings):
        balancer = Balancer("b", RoundRobinScheduler(), members, self.clock)
        settings.setdefault("addresses", MemberAddresses(self.clock, resolver=self.resolver))
        proxy, _ = memoryProxy(balancer, self.clock, **settings)
        return proxy

    def rewritten(self, proxy, location):
        return proxy.locationRewriter().rewrite(location, b"https://www.example.com")

    def test_resolvedAddress(self):
        """
        A redirect to an address the member's host name resolves to is
        rewritten, as one to its URL is.
        """
        proxy = self.proxy([Member("a", "http://localhost:9999")])
        self.resolver.answer()
        for location in [b"http://127.0.0.1:9999/next", b"http://[::1]:9999/next"]:
            self.assertEqual(self.rewritten(proxy, location), b"https://www.example.com/next")
        self.assertEqual(
            self.rewritten(proxy, b"http://localhost:9999/next"), b"https://www.example.com/next"
        )
        self.assertEqual(
            self.rewritten(proxy, b"http://127.0.0.1:9998/next"), b"http://127.0.0.1:9998/next"
        )

    def test_resolutionStartsAtConstruction(self):
        """
        The members' names are resolved as soon as the proxy is made, on
        its clock's C{nameResolver}: the first redirect is covered.
        """
        clock = ResolverClock(self.resolver)
        balancer = Balancer("b", RoundRobinScheduler(), [Member("a", "http://localhost:1")], clock)
        proxy, _ = memoryProxy(balancer, clock)
        self.assertEqual(self.resolver.asked, ["localhost"])
        self.resolver.answer()
        self.successResultOf(proxy.addresses.settled())
        self.assertEqual(self.rewritten(proxy, b"http://127.0.0.1:1/"), b"https://www.example.com/")

    def test_memberAlias(self):
        """
        A member's aliases are rewritten, with the default-port variant.
        """
        proxy = self.proxy(
            [Member("a", "http://10.0.0.1:9999", aliases=["http://app.internal"])]
        )
        for location in [b"http://app.internal/x", b"http://app.internal:80/x"]:
            self.assertEqual(self.rewritten(proxy, location), b"https://www.example.com/x")

    def test_routeAlias(self):
        """
        The route's aliases are rewritten too, in any member's answer.
        """
        proxy = self.proxy(
            [Member("a", "http://10.0.0.1:9999")], aliases=["https://old.example.com:443/shop"]
        )
        for location, expected in [
            (b"https://old.example.com/shop/x", b"https://www.example.com/x"),
            (b"https://old.example.com:443/shop", b"https://www.example.com"),
            (b"https://old.example.com/other", b"https://old.example.com/other"),
        ]:
            self.assertEqual(self.rewritten(proxy, location), expected)

    def test_sameRewriterUntilChange(self):
        """
        The rewriter is rebuilt only when the members or their addresses
        change.
        """
        members = [Member("a", "http://localhost:9999")]
        proxy = self.proxy(members)
        first = proxy.locationRewriter()
        self.assertIs(proxy.locationRewriter(), first)
        self.resolver.answer()
        second = proxy.locationRewriter()
        self.assertIsNot(second, first)
        self.assertIs(proxy.locationRewriter(), second)
        proxy.balancer.members.append(Member("b", "http://10.0.0.2:9999"))
        third = proxy.locationRewriter()
        self.assertIsNot(third, second)
        self.assertEqual(
            third.rewrite(b"http://10.0.0.2:9999/", b"http://front"), b"http://front/"
        )

    def test_newMemberResolved(self):
        """
        A member added later has its name resolved when the proxy next
        needs its rewriter.
        """
        proxy = self.proxy([Member("a", "http://10.0.0.1:9999")])
        self.assertEqual(self.resolver.asked, [])
        proxy.balancer.members.append(Member("b", "http://localhost:9998"))
        proxy.locationRewriter()
        self.assertEqual(self.resolver.asked, ["localhost"])
        self.resolver.answer()
        self.assertEqual(
            self.rewritten(proxy, b"http://127.0.0.1:9998/y"), b"https://www.example.com/y"
        )

    def test_refreshOnUse(self):
        """
        Once the interval has passed, using the rewriter refreshes the
        members' addresses.
        """
        proxy = self.proxy([Member("a", "http://localhost:9999")])
        self.resolver.answer()
        self.clock.advance(REFRESH_INTERVAL)
        self.resolver.answers["localhost"] = ["127.0.0.2"]
        proxy.locationRewriter()
        self.resolver.answer()
        self.assertEqual(self.resolver.asked, ["localhost", "localhost"])
        self.assertEqual(
            self.rewritten(proxy, b"http://127.0.0.2:9999/z"), b"https://www.example.com/z"
        )


class _Redirect(resource.Resource):
    """
    A member whose every answer is a C{302} to C{target + b"/next"}.
    """

    isLeaf = True

    def __init__(self, target=None):
        super().__init__()
        self.target = target

    def render(self, request):
        request.redirect(self.target + b"/next")
        return b""


class RealSocketTests(ProxyTestCase):
    """
    Through a real front on 127.0.0.1, members that redirect to another
    name of themselves.
    """

    def startRedirecting(self):
        """
        A member on 127.0.0.1 that redirects; set its C{target} later.
        """
        page = _Redirect()
        site = server.Site(page)
        site.log = lambda request: None
        factory = WrappingFactory(site)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(lambda: closeAll(factory, reactor))
        self.addCleanup(port.stopListening)
        return page, port.getHost().port

    def startFront(self, members, aliases=()):
        clock = Clock()
        clock.advance(1000)
        balancer = Balancer("test", RoundRobinScheduler(), members, clock)
        sweeper = Sweeper(reactor, interval=0.05)
        pools = MemberPools(MemberEndpoints(reactor, 5, None).forMember, sweeper)
        self.addCleanup(pools.close)
        self.proxy = HTTPProxy(balancer, pools, reactor, aliases=aliases)
        factory = WrappingFactory(HTTPFrontFactory(self.proxy, FrontSettings()))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(lambda: closeAll(factory, reactor))
        self.addCleanup(port.stopListening)
        self.base = f"http://127.0.0.1:{port.getHost().port}"

    async def location(self):
        response, _ = await self.fetch(
            self.client(), "/", allow_redirects=False, headers={b"Host": [b"shop.example:8080"]}
        )
        self.assertEqual(response.code, 302)
        return response.headers.getRawHeaders(b"location")

    async def test_localhostMember(self):
        """
        A member configured as C{http://localhost:PORT} that redirects to
        C{http://127.0.0.1:PORT/next}: the client sees its own host.
        """
        page, port = self.startRedirecting()
        page.target = f"http://127.0.0.1:{port}".encode()
        self.startFront([Member("app1", f"http://localhost:{port}")])
        await self.proxy.addresses.settled()
        self.assertEqual(await self.location(), [b"http://shop.example:8080/next"])

    async def test_memberAlias(self):
        """
        A member that redirects to one of its C{aliases}.
        """
        page, port = self.startRedirecting()
        page.target = f"http://app.internal:{port}".encode()
        self.startFront(
            [Member("app1", f"http://127.0.0.1:{port}", aliases=[f"http://app.internal:{port}"])]
        )
        self.assertEqual(await self.location(), [b"http://shop.example:8080/next"])

    async def test_routeAlias(self):
        """
        A member that redirects to one of its route's C{aliases}, given
        without the port.
        """
        page, port = self.startRedirecting()
        page.target = b"http://www.old.example"
        self.startFront(
            [Member("app1", f"http://127.0.0.1:{port}")], aliases=["http://www.old.example:80"]
        )
        self.assertEqual(await self.location(), [b"http://shop.example:8080/next"])

    async def test_othersUntouched(self):
        """
        A redirect elsewhere goes through as it was.
        """
        page, port = self.startRedirecting()
        page.target = b"http://elsewhere.example"
        self.startFront([Member("app1", f"http://localhost:{port}")])
        await self.proxy.addresses.settled()
        self.assertEqual(await self.location(), [b"http://elsewhere.example/next"])

