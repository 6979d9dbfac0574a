"""
Session affinity (L{playbalancer.sticky}): the inserted cookie and the
application's session routes, over real sockets through the proxy, and
their rules (drain keeps sessions for a bound, disabled and down move them
at once) on the balancer's clock; and the C{[balancer.NAME.sticky]} table.
"""

from __future__ import annotations

import time

from twisted.internet import reactor, task
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.balancer import Balancer, Member
from playbalancer.config import ConfigError, parseConfig
from playbalancer.config.sticky import StickyConfig
from playbalancer.schedulers import RoundRobinScheduler
from playbalancer.sticky import SESSION_MEMORY, SESSION_WINDOW, RecentSessions, affinityFor
from playbalancer.testing import rawExchange
from playbalancer.testing.twistd import TwistdTestCase

from tests.proxyharness import ProxyTestCase
from tests.test_http2 import HTTP2Case
from tests.test_manager import ManagerTestCase
from tests.test_reload import ConfigServiceCase, configText

SCHEDULERS = {"round-robin": object(), "standby": object()}


def _config(sticky, mode="http", members=None):
    listen = {"endpoint": "tcp:8080", "balancer": "web"}
    if mode == "tcp":
        listen["mode"] = "tcp"
    scheme = "tcp" if mode == "tcp" else "http"
    return {
        "listen": [listen],
        "balancer": {
            "web": {
                "sticky": sticky,
                "member": members or [
                    {"name": "app1", "url": f"{scheme}://127.0.0.1:9999"},
                    {"name": "app2", "url": f"{scheme}://127.0.0.1:9998"},
                ],
            }
        },
    }


class StickyConfigTests(SynchronousTestCase):
    def assertRefused(self, raw, key, words):
        with self.assertRaises(ConfigError) as caught:
            parseConfig(raw, SCHEDULERS)
        self.assertEqual(caught.exception.path, key)
        self.assertIn(words, caught.exception.message)

    def test_kinds(self):
        config = parseConfig(_config({"cookie": "PBROUTE", "max_age": 3600}), SCHEDULERS)
        self.assertEqual(
            config.balancers["web"].sticky, StickyConfig(cookie="PBROUTE", maxAge=3600)
        )
        config = parseConfig(
            _config({"session_cookie": "JSESSIONID", "session_param": "jsessionid",
                     "drain_seconds": 5}),
            SCHEDULERS,
        )
        self.assertEqual(
            config.balancers["web"].sticky,
            StickyConfig(sessionCookie="JSESSIONID", sessionParam="jsessionid", drainSeconds=5.0),
        )
        self.assertIsNone(parseConfig(_config({"cookie": "x"}), SCHEDULERS).balancers["web"].sticky.maxAge)

    def test_refused(self):
        self.assertRefused(_config({}), "balancer.web.sticky", "give cookie")
        self.assertRefused(
            _config({"cookie": "A", "session_cookie": "B"}), "balancer.web.sticky.session_cookie",
            "not with cookie",
        )
        self.assertRefused(
            _config({"session_cookie": "B", "max_age": 5}), "balancer.web.sticky.max_age", "only with cookie"
        )
        self.assertRefused(_config({"cookie": "a b"}), "balancer.web.sticky.cookie", "HTTP token")
        self.assertRefused(_config({"cookie": "A", "max_age": 1.5}), "balancer.web.sticky.max_age", "whole")
        self.assertRefused(_config({"cookie": "A", "drain_seconds": -1}), "balancer.web.sticky.drain_seconds", ">= 0")
        self.assertRefused(_config({"cookie": "A", "ttl": 1}), "balancer.web.sticky.ttl", "unknown key")

    def test_dottedNamesNeedARoute(self):
        """
        With session routes, a member whose name has a dot needs a route
        (a route is what follows the last dot of a session id); with an
        inserted cookie it does not matter.
        """
        members = [
            {"name": "web.1", "url": "http://127.0.0.1:9999"},
            {"name": "web.2", "url": "http://127.0.0.1:9998", "route": "w2"},
        ]
        self.assertRefused(_config({"session_cookie": "J"}, members=members),
                           "balancer.web.member[0].name", "give this member a route")
        members[0]["route"] = "w1"
        parseConfig(_config({"session_cookie": "J"}, members=members), SCHEDULERS)
        del members[0]["route"]
        parseConfig(_config({"cookie": "PB"}, members=members), SCHEDULERS)

    def test_cookieNamesOwnedByOneBalancer(self):
        raw = _config({"cookie": "PB"})
        raw["balancer"]["api"] = dict(raw["balancer"]["web"])
        raw["listen"].append({"endpoint": "tcp:8081", "balancer": "api"})
        self.assertRefused(raw, "balancer.api.sticky.cookie", "also balancer 'web''s cookie")
        raw["balancer"]["api"] = dict(raw["balancer"]["web"], sticky={"cookie": "PB2"})
        parseConfig(raw, SCHEDULERS)

    def test_refusedOnTCP(self):
        raw = _config({"cookie": "A"}, mode="tcp")
        with self.assertRaises(ConfigError) as caught:
            parseConfig(raw, SCHEDULERS)
        self.assertIn("sticky", caught.exception.path)

    def test_routes(self):
        members = [
            {"name": "app1", "url": "http://127.0.0.1:9999", "route": "node1"},
            {"name": "app2", "url": "http://127.0.0.1:9998", "route": "node1"},
        ]
        self.assertRefused(
            _config({"session_cookie": "J"}, members=members), "balancer.web.member[1].route",
            "also member 'app1'",
        )
        members[1]["route"] = "a.b"
        self.assertRefused(_config({"session_cookie": "J"}, members=members),
                           "balancer.web.member[1].route", "no dot")
        del members[0]["route"]
        members[1]["route"] = "app1"  # app1's route is its name
        self.assertRefused(_config({"session_cookie": "J"}, members=members),
                           "balancer.web.member[1].route", "also member 'app1'")


class RecentSessionsTests(SynchronousTestCase):
    def test_window(self):
        a, b = Member("a", "http://a"), Member("b", "http://b")
        seen = RecentSessions()
        seen.note(a, "s1", 100.0)
        seen.note(a, "s2", 110.0)
        seen.note(a, "s1", 120.0)
        self.assertEqual(seen.count(a, 121.0), 2)
        self.assertEqual(seen.count(a, 110.0 + SESSION_WINDOW + 1), 1)
        self.assertEqual(seen.count(a, 200.0 + SESSION_WINDOW), 0)
        self.assertEqual(seen.count(b, 0.0), 0)

    def test_bounded(self):
        """
        At most L{SESSION_MEMORY} sessions per member, each kept as a small
        digest however long its id; a member gone is forgotten.
        """
        import gc

        a = Member("a", "http://a")
        seen = RecentSessions()
        for i in range(SESSION_MEMORY + 100):
            seen.note(a, f"{i}-" + "x" * 8000 + ".a", 1.0)
        self.assertEqual(seen.count(a, 1.0), SESSION_MEMORY)
        self.assertEqual({len(key) for key in seen._seen[a]}, {8})
        del a
        gc.collect()
        self.assertEqual(len(seen._seen), 0)


class _View:
    """
    A request view with cookies, a path and a query.
    """

    def __init__(self, cookies=None, path=b"/", query=b"", secure=False):
        self.cookies = cookies or {}
        self.path, self.query, self.secure = path, query, secure

    def cookie(self, name):
        return self.cookies.get(name.encode() if isinstance(name, str) else name)


class AffinityRulesTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.members = [Member("app1", "http://a"), Member("app2", "http://b")]
        self.balancer = Balancer("web", RoundRobinScheduler(), self.members, self.clock)

    def inserted(self, **options):
        sticky = self.balancer.sticky = affinityFor(self.balancer, StickyConfig(cookie="PB", **options))
        return sticky

    def cookieFor(self, sticky, member, secure=False):
        name, value = sticky.responseHeader(_View(secure=secure), member)
        self.assertEqual(name, b"Set-Cookie")
        return value.decode()

    def viewWith(self, header):
        name, value = header.split(";")[0].split("=", 1)
        return _View({name.encode(): value.encode()})

    def test_cookieAttributes(self):
        sticky = self.inserted(maxAge=600)
        plain = self.cookieFor(sticky, self.members[1])
        self.assertRegex(plain, r"^PB=[0-9a-f]{12}\.[0-9a-f]{16}; Path=/; HttpOnly; SameSite=Lax; Max-Age=600$")
        self.assertNotIn("app2", plain)
        self.assertIn("; Secure", self.cookieFor(sticky, self.members[1], secure=True))
        # Each new session its own id; the member's part the same.
        again = self.cookieFor(sticky, self.members[1])
        self.assertNotEqual(again, plain)
        self.assertEqual(again[:15], plain[:15])

    def test_holdsAndSeen(self):
        sticky = self.inserted()
        view = self.viewWith(self.cookieFor(sticky, self.members[1]))
        for _ in range(5):
            self.assertIs(self.balancer.pick(view), self.members[1])
        self.assertIsNone(sticky.responseHeader(view, self.members[1]))
        self.assertEqual(sticky.status(self.members[1]), {"sessions_last_minute": 1, "sessions_until": None})
        # Excluded (tried already): the scheduler picks, and a new cookie.
        self.assertIsNone(sticky.memberFor(view, exclude=[self.members[1]]))
        self.assertIsNotNone(sticky.responseHeader(view, self.members[0]))

    def test_forgedOrForeignCookies(self):
        sticky = self.inserted()
        for value in (b"nonsense", b"0123456789ab.0123456789abcdef", b"", b"\xff"):
            self.assertIsNone(sticky.memberFor(_View({b"PB": value})))
        # Another balancer's token for a member of the same name.
        other = Balancer("other", RoundRobinScheduler(), [Member("app2", "http://b")], self.clock)
        foreign = affinityFor(other, StickyConfig(cookie="PB"))
        header = self.cookieFor(foreign, other.members[0])
        self.assertIsNone(sticky.memberFor(self.viewWith(header)))

    def test_drainKeepsSessionsForTheBound(self):
        sticky = self.inserted(drainSeconds=30)
        view = self.viewWith(self.cookieFor(sticky, self.members[0]))
        self.balancer.setAdmin(self.members[0], "drain")
        self.assertEqual(self.balancer.candidates(), [self.members[1]])
        self.clock.advance(29)
        self.assertIs(self.balancer.pick(view), self.members[0])
        self.assertEqual(sticky.status(self.members[0])["sessions_until"], 1030.0)
        self.clock.advance(1)
        self.assertIs(self.balancer.pick(view), self.members[1])
        # Enabled again: its sessions are its own again.
        self.balancer.setAdmin(self.members[0], "enabled")
        self.assertIs(self.balancer.pick(view), self.members[0])

    def test_disabledAndDownMoveAtOnce(self):
        sticky = self.inserted()
        view = self.viewWith(self.cookieFor(sticky, self.members[0]))
        self.balancer.setAdmin(self.members[0], "disabled")
        self.assertIs(self.balancer.pick(view), self.members[1])
        self.balancer.setAdmin(self.members[0], "enabled")
        self.members[0].downUntil = self.clock.seconds() + 60
        self.assertIs(self.balancer.pick(view), self.members[1])
        self.clock.advance(61)
        self.assertIs(self.balancer.pick(view), self.members[0])
        self.balancer.removeMember(self.members[0])
        self.assertIs(self.balancer.pick(view), self.members[1])

    def test_allRestingKeepsSessions(self):
        """
        While every member rests (and all are tried anyway), a session
        stays on its member rather than being spread; once others are up,
        a resting member's sessions move.
        """
        sticky = self.inserted()
        view = self.viewWith(self.cookieFor(sticky, self.members[1]))
        for member in self.members:
            member.downUntil = self.clock.seconds() + 60
        for _ in range(4):
            self.assertIs(self.balancer.pick(view), self.members[1])
        self.members[0].downUntil = None
        self.assertIs(self.balancer.pick(view), self.members[0])

    def test_drainBoundFromTheMembersStart(self):
        """
        The bound counts from the member's own drain start, which a worker,
        the state file or a cluster peer hands over (memberstate), not from
        when this process heard of the drain.
        """
        from playbalancer import memberstate

        sticky = self.inserted(drainSeconds=30)
        view = self.viewWith(self.cookieFor(sticky, self.members[0]))
        self.balancer.setAdmin(self.members[0], "drain")
        started = self.members[0].drainSince
        self.assertEqual(started, self.clock.seconds())
        item = memberstate.entry(self.members[0])
        self.assertEqual(item["drain_since"], started)
        # Another process that learns of it 20 s later.
        clock = Clock()
        clock.advance(self.clock.seconds() + 20)
        other = Balancer("web", RoundRobinScheduler(), [Member("app1", "http://a"), Member("app2", "http://b")], clock)
        other.sticky = affinityFor(other, StickyConfig(cookie="PB", drainSeconds=30))
        memberstate.applyEntry(other, "app1", item, "parent")
        self.assertEqual(other.sticky.drainEnds(other.member("app1")), started + 30)
        self.assertIs(other.pick(view).name, "app1")
        clock.advance(10)
        self.assertEqual(other.pick(view).name, "app2")
        self.balancer.setAdmin(self.members[0], "enabled")
        self.assertIsNone(self.members[0].drainSince)

    def test_noCookieOnA304(self):
        sticky = self.inserted()
        self.assertIsNone(sticky.responseHeader(_View(), self.members[0], 304))
        self.assertIsNotNone(sticky.responseHeader(_View(), self.members[0], 200))

    def test_sessionRoutes(self):
        config = StickyConfig(sessionCookie="JSESSIONID", sessionParam="jsessionid")
        sticky = self.balancer.sticky = affinityFor(self.balancer, config, {"node2": "app2"})
        cases = [
            (_View({b"JSESSIONID": b"ABC.node2"}), self.members[1]),
            (_View({b"JSESSIONID": b"ABC.app1"}), self.members[0]),
            (_View(path=b"/cart;jsessionid=XYZ.node2/items"), self.members[1]),
            (_View(query=b"a=1&jsessionid=XYZ.app1"), self.members[0]),
            # The URL wins over the cookie, as in Apache.
            (_View({b"JSESSIONID": b"ABC.app1"}, query=b"jsessionid=X.node2"), self.members[1]),
        ]
        for view, member in cases:
            self.assertIs(sticky.memberFor(view), member, view.__dict__)
            self.assertIsNone(sticky.responseHeader(view, member))
        for view in (_View({b"JSESSIONID": b"ABC"}), _View({b"JSESSIONID": b"ABC.nowhere"}), _View()):
            self.assertIsNone(sticky.memberFor(view))


def _head(data):
    """
    The status code, the member that answered and the Set-Cookie values of
    a raw response.
    """
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = [line.split(":", 1) for line in head[1:]]
    served = [v.strip() for k, v in headers if k.lower() == "x-served-by"]
    cookies = [v.strip() for k, v in headers if k.lower() == "set-cookie"]
    return int(head[0].split()[1]), (served or [None])[0], cookies


class StickyProxyTests(ProxyTestCase):
    """
    Through the proxy, over real sockets: the balancer's clock is
    C{self.clock}, so drain bounds pass when the test says.
    """

    def startSticky(self, scheduler="round-robin", **options):
        self.members = self.startMembers("app1", "app2", "app3")
        balancer = self.startBalancer([m.url for m in self.members], scheduler=scheduler)
        balancer.sticky = affinityFor(balancer, StickyConfig(cookie="PBROUTE", **options))
        return balancer

    async def get(self, cookie=None):
        request = b"GET / HTTP/1.1\r\nHost: www.example.test\r\nConnection: close\r\n"
        if cookie is not None:
            request += b"Cookie: theme=dark; " + cookie.split(";")[0].encode() + b"\r\n"
        return _head(await rawExchange(reactor, self.port, request + b"\r\n"))

    async def session(self):
        """
        A new session: the member that served it and its cookie.
        """
        status, served, cookies = await self.get()
        self.assertEqual(status, 200)
        self.assertEqual(len(cookies), 1, cookies)
        return served, cookies[0]

    async def test_roundTrip(self):
        """
        The first response sets the cookie; requests that send it back all
        go to that member (round robin would spread them), with no new
        cookie; new clients are spread as the scheduler says.
        """
        self.startSticky()
        served, cookie = await self.session()
        self.assertTrue(cookie.startswith("PBROUTE="))
        for _ in range(6):
            self.assertEqual(await self.get(cookie), (200, served, []))
        firsts = {(await self.session())[0] for _ in range(3)}
        self.assertEqual(len(firsts | {served}), 3)

    async def test_survivesMemberRestart(self):
        """
        A member that stops and comes back on the same port before a
        request needs it keeps its sessions.
        """
        balancer = self.startSticky()
        served, cookie = await self.session()
        member = next(m for m in self.members if m.name == served)
        await member.stop()
        member.start()
        self.assertEqual(member.port, member.requested)
        self.assertEqual(await self.get(cookie), (200, served, []))
        self.assertEqual(balancer.member(served).downUntil, None)

    async def test_fallsBackWhenMemberStaysAway(self):
        """
        A member that is gone: the request with its cookie goes elsewhere
        (a GET is retried on another member), gets a new cookie, and the
        session stays on the new member.
        """
        self.startSticky()
        served, cookie = await self.session()
        member = next(m for m in self.members if m.name == served)
        await member.stop()
        status, other, cookies = await self.get(cookie)
        self.assertEqual(status, 200)
        self.assertNotEqual(other, served)
        self.assertEqual(len(cookies), 1)
        for _ in range(3):
            self.assertEqual(await self.get(cookies[0]), (200, other, []))

    async def test_drainKeepsSessionsForTheBound(self):
        """
        A draining member serves the requests of its sessions until
        C{drain_seconds} after the drain began, and no new session; then
        they move, with a new cookie.
        """
        balancer = self.startSticky(drainSeconds=120)
        served, cookie = await self.session()
        balancer.setAdmin(balancer.member(served), "drain")
        for _ in range(3):
            self.assertNotEqual((await self.session())[0], served)
        self.clock.advance(119)
        self.assertEqual(await self.get(cookie), (200, served, []))
        self.assertEqual(balancer.sticky.status(balancer.member(served))["sessions_last_minute"], 1)
        self.clock.advance(1)
        status, other, cookies = await self.get(cookie)
        self.assertNotEqual(other, served)
        self.assertEqual(len(cookies), 1)

    async def test_disabledMovesAtOnce(self):
        balancer = self.startSticky(drainSeconds=120)
        served, cookie = await self.session()
        balancer.setAdmin(balancer.member(served), "disabled")
        status, other, cookies = await self.get(cookie)
        self.assertEqual(status, 200)
        self.assertNotEqual(other, served)
        self.assertEqual(len(cookies), 1)

    async def test_secureOnlyOverTLS(self):
        """
        Over plain HTTP the cookie has no C{Secure} (the browser would not
        send it back).
        """
        self.startSticky()
        _, cookie = await self.session()
        self.assertNotIn("Secure", cookie)


class StickyFromConfigTests(ConfigServiceCase):
    """
    The C{sticky} table of a config file, through C{makeService} and its
    reloads, over real sockets.
    """

    def text(self, members, sticky):
        base = configText([(m.name, m.url) for m in members], extra='scheduler = "round-robin"')
        return base + ("\n[balancer.web.sticky]\n" + sticky if sticky else "")

    async def get(self, cookie=None):
        request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        if cookie is not None:
            request += b"Cookie: " + cookie.split(";")[0].encode() + b"\r\n"
        return _head(await rawExchange(reactor, self.port, request + b"\r\n"))

    async def test_configAndReload(self):
        """
        The file's cookie keeps a session on its member; a reload that
        renames the cookie starts new sessions (the old cookie no longer
        counts) and keeps drains under way; one that removes the table
        ends affinity.
        """
        members = self.startMembers("a", "b")
        await self.startWith(self.text(members, 'cookie = "SRV"\ndrain_seconds = 300\n'))
        status, served, cookies = await self.get()
        self.assertEqual(len(cookies), 1)
        self.assertTrue(cookies[0].startswith("SRV="))
        for _ in range(4):
            self.assertEqual(await self.get(cookies[0]), (200, served, []))
        balancer = self.service.balancers["web"]
        balancer.setAdmin(balancer.member(served), "drain", who="test")
        drainEnds = balancer.sticky.drainEnds(balancer.member(served))

        result = self.reload(self.text(members, 'cookie = "SRV"\ndrain_seconds = 300\nmax_age = 60\n'))
        self.assertTrue(result.ok, result.error)
        self.assertEqual(balancer.sticky.config.maxAge, 60)
        self.assertEqual(balancer.sticky.drainEnds(balancer.member(served)), drainEnds)
        self.assertEqual(await self.get(cookies[0]), (200, served, []))

        result = self.reload(self.text(members, 'cookie = "OTHER"\n'))
        self.assertTrue(result.ok, result.error)
        status, other, fresh = await self.get(cookies[0])
        self.assertNotEqual(other, served)  # (drained, and the old cookie is not read)
        self.assertTrue(fresh[0].startswith("OTHER="))

        result = self.reload(self.text(members, None))
        self.assertTrue(result.ok, result.error)
        self.assertIsNone(balancer.sticky)
        self.assertEqual((await self.get(fresh[0]))[2], [])

    async def test_badStickyReloadChangesNothing(self):
        members = self.startMembers("a", "b")
        await self.startWith(self.text(members, 'cookie = "SRV"\n'))
        balancer = self.service.balancers["web"]
        sticky = balancer.sticky
        result = self.reload(self.text(members, 'cookie = "SRV"\nsession_cookie = "J"\n'))
        self.assertFalse(result.ok)
        self.assertIn("balancer.web.sticky.session_cookie", result.error)
        self.assertIs(balancer.sticky, sticky)


class CheckLineTests(SynchronousTestCase):
    def test_stickyLine(self):
        """
        C{playbalancer check} says how each sticky balancer keeps sessions.
        """
        from playbalancer.ctl.check import stickyLine

        self.assertEqual(
            stickyLine(StickyConfig(cookie="PB", maxAge=60)),
            "cookie PB inserted (max age 60s); a draining member keeps them 60s",
        )
        self.assertEqual(
            stickyLine(StickyConfig(sessionCookie="JSESSIONID", sessionParam="jsessionid", drainSeconds=5)),
            "the route suffix of cookie JSESSIONID or URL parameter jsessionid; a draining member keeps them 5s",
        )


class StickyManagerTests(ManagerTestCase):
    async def test_drainingMemberShowsItsSessions(self):
        """
        The manager's API and page say how many sessions a draining member
        of a sticky balancer still sees, and how long it keeps them; the
        member's own answer to the drain carries them too.
        """
        a, b = self.startMembers("app1", "app2")
        balancer = self.startBalancer([a.url, b.url], scheduler="standby")
        balancer.sticky = affinityFor(balancer, StickyConfig(cookie="PBROUTE", drainSeconds=90))
        self.startManager()
        cookies = []
        for _ in range(3):  # three sessions, all on app1 (standby)
            status, served, given = _head(await rawExchange(
                reactor, self.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
            cookies.append(given[0].split(";")[0])
        code, member, _ = await self.call("POST", "api/balancers/test/members/app1", {"admin": "drain"})
        self.assertEqual((code, member["sessions_until"]), (200, self.clock.seconds() + 90))
        for cookie in cookies:
            status, served, given = _head(await rawExchange(
                reactor, self.port,
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: " + cookie.encode() + b"\r\n\r\n"))
            self.assertEqual((served, given), ("app1", []))
        self.clock.advance(30)
        members = await self.status()
        self.assertEqual(members["app1"]["sessions_last_minute"], 3)
        self.assertEqual(
            members["app1"]["state_text"],
            "draining: nothing in flight, 3 sessions seen in the last minute (keeps them 60s more)",
        )
        self.assertEqual(members["app2"]["sessions_last_minute"], 0)
        code, page, _ = await self.call("GET", "")
        self.assertIn("3 sessions seen in the last minute (keeps them 60s more)", page)
        code, body, _ = await self.call("GET", "api/status")
        self.assertEqual(body["balancers"]["test"]["sticky"],
                         {"by": "cookie PBROUTE (inserted)", "drain_seconds": 90.0})


class StickyWorkersTests(TwistdTestCase):
    async def test_cookieHoldsInEveryWorker(self):
        """
        With C{workers = 2}, a session's requests on new connections (which
        the kernel spreads over both workers) all reach its member; a
        draining member's sessions show in the parent's manager, from the
        workers' reports.
        """
        await self.startTwoMembers(balancer='[balancer.web.sticky]\ncookie = "PB"\ndrain_seconds = 300\n')
        port = int(self.base.rsplit(":", 1)[1])

        async def get(cookie=None):
            request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            if cookie:
                request += b"Cookie: " + cookie.encode() + b"\r\n"
            return _head(await rawExchange(reactor, port, request + b"\r\n"))

        sessions = []
        for _ in range(4):
            status, served, given = await get()
            sessions.append((served, given[0].split(";")[0]))
        self.assertEqual({served for served, _ in sessions}, {"app1", "app2"})
        for served, cookie in sessions:
            for _ in range(10):
                self.assertEqual(await get(cookie), (200, served, []))
        await self.change("app1", {"admin": "drain"})
        expected = sum(1 for served, _ in sessions if served == "app1")

        async def shown():
            member = (await self.status())["balancers"]["web"]["members"]["app1"]
            return member["sessions_last_minute"], member["state"]

        deadline = time.monotonic() + 10
        while (await shown())[0] < expected and time.monotonic() < deadline:
            for served, cookie in sessions:
                await get(cookie)
            await task.deferLater(reactor, 0.3, lambda: None)
        seen, state = await shown()
        # (A session seen by both workers counts twice in the sum.)
        self.assertTrue(expected <= seen <= 2 * expected, (expected, seen))
        self.assertEqual(state, "draining")


class StickyHTTP2Tests(HTTP2Case):
    async def test_cookieOverHTTP2(self):
        """
        Over HTTP/2 (TLS, ALPN h2) the first response sets a C{Secure}
        cookie, and the streams that send it back, on the same connection
        or a new one, reach its member.
        """
        await self.startH2("app1", "app2", "app3")
        self.balancer.sticky = affinityFor(self.balancer, StickyConfig(cookie="PB"))
        client = await self.client()
        first = client.request(b"GET", b"/")
        await first.done
        cookie = first.header(b"set-cookie")
        self.assertIsNotNone(cookie, first.headers)
        self.assertIn(b"; Secure", cookie)
        served = first.header(b"x-served-by")
        pair = cookie.split(b";")[0]
        for connection in (client, await self.client()):
            streams = [connection.request(b"GET", b"/", headers=[(b"cookie", pair)]) for _ in range(6)]
            for stream in streams:
                await stream.done
                self.assertEqual((stream.status, stream.header(b"x-served-by")), (200, served))
                self.assertIsNone(stream.header(b"set-cookie"))


class SessionRouteProxyTests(ProxyTestCase):
    async def test_applicationSessionRoutes(self):
        """
        Through the proxy: a session id ending in a member's route, in the
        cookie or a path parameter, reaches that member (round robin would
        spread them); the balancer sets no cookie of its own.
        """
        members = self.startMembers("app1", "app2", "app3")
        balancer = self.startBalancer([m.url for m in members])
        balancer.sticky = affinityFor(
            balancer, StickyConfig(sessionCookie="JSESSIONID", sessionParam="jsessionid"), {"n2": "app2"}
        )
        for target, cookie, expected in [
            (b"/", b"JSESSIONID=ABC.n2", "app2"),
            (b"/;jsessionid=XYZ.app3", None, "app3"),
            (b"/?jsessionid=XYZ.app1", b"JSESSIONID=ABC.n2", "app1"),
        ]:
            before = {m.name: len(m.seen) for m in members}
            for _ in range(4):
                request = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                if cookie:
                    request += b"Cookie: " + cookie + b"\r\n"
                status, served, cookies = _head(await rawExchange(reactor, self.port, request + b"\r\n"))
                self.assertEqual(cookies, [], target)
            reached = {m.name: len(m.seen) - before[m.name] for m in members}
            self.assertEqual(reached, {m.name: 4 if m.name == expected else 0 for m in members}, target)
