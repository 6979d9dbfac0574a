"""
A rolling restart of a sticky balancer, with real member processes, under
the load of clients that hold sessions: no request fails, and a session
leaves its member only when that member is out (drained past
C{drain_seconds}, or restarting), never while it may still serve it.
"""

from __future__ import annotations

import os
import sys
from http.cookiejar import CookieJar, DefaultCookiePolicy

from twisted.internet import defer, reactor, task
from twisted.internet.utils import getProcessOutputAndValue
from twisted.web.client import Agent, HTTPConnectionPool
from treq.client import HTTPClient

from playbalancer.config.sticky import StickyConfig
from playbalancer.sticky import affinityFor

from tests.test_rolling import ROOT, MemberProcessTestCase

#: Seconds a draining member keeps its sessions here.
DRAIN_SECONDS = 2.0


class SessionClients:
    """
    Keep-alive clients, each holding one session: it sends back the cookie
    it was given and records which member answered each request.
    """

    def __init__(self, base, clients=8):
        self.base = base
        self.running = True
        self.failures = []
        self.served = [[] for _ in range(clients)]
        self.cookies = [None] * clients
        self.pools = [HTTPConnectionPool(reactor) for _ in range(clients)]
        self.loops = [defer.ensureDeferred(self.loop(i, pool)) for i, pool in enumerate(self.pools)]

    async def loop(self, index, pool):
        # (A cookie jar that keeps nothing: the cookie is sent by hand.)
        jar = CookieJar(DefaultCookiePolicy(allowed_domains=[]))
        http = HTTPClient(Agent(reactor, pool=pool), cookiejar=jar)
        while self.running:
            cookie = self.cookies[index]
            headers = {"Cookie": cookie} if cookie else {}
            try:
                response = await http.get(self.base + "/", headers=headers)
                text = await response.content()
            except Exception as e:
                self.failures.append((index, "error", repr(e)))
                continue
            if response.code != 200 or not text.startswith(b"Hello from app"):
                self.failures.append((index, response.code, text[:100]))
                continue
            given = response.headers.getRawHeaders(b"set-cookie", [])
            if given:
                self.cookies[index] = given[0].decode().split(";")[0]
            self.served[index].append(response.headers.getRawHeaders(b"x-served-by")[0].decode())

    async def stop(self):
        self.running = False
        await defer.DeferredList(self.loops)
        for pool in self.pools:
            await pool.closeCachedConnections()


class StickyRollingRestartTests(MemberProcessTestCase):
    def watchAffinity(self, balancer):
        """
        Record every request whose session named a member that did not take
        it, with that member's state at that moment; and every new session,
        with its member's admin state.
        """
        sticky = balancer.sticky
        self.moved, self.newSessions = [], []
        found, memberFor, responseHeader = sticky._found, sticky.memberFor, sticky.responseHeader

        def watchedMemberFor(request, exclude=()):
            member = memberFor(request, exclude)
            named = found(request)
            if named is not None and member is None:
                was = balancer.member(named[0])
                now = balancer.seconds()
                self.moved.append({
                    "member": named[0],
                    "admin": was.admin,
                    "down": was.downUntil is not None and was.downUntil > now,
                    "excluded": was in exclude,
                    "boundPassed": was.admin == "drain" and now >= sticky.drainEnds(was),
                })
            return member

        def watchedResponseHeader(request, member, status=200):
            header = responseHeader(request, member, status)
            if header is not None:
                self.newSessions.append((member.name, member.admin))
            return header

        sticky.memberFor = watchedMemberFor
        sticky.responseHeader = watchedResponseHeader

    async def test_sessionsKeptUntilTheirMemberIsOut(self):
        balancer = await self.startAll()
        balancer.sticky = affinityFor(balancer, StickyConfig(cookie="PBROUTE", drainSeconds=DRAIN_SECONDS))
        self.watchAffinity(balancer)
        self.startManager()
        clients = SessionClients(self.base)
        await task.deferLater(reactor, 1.0, lambda: None)
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-m", "playbalancer.ctl.cli", "--manager", self.managerURL, "rolling-restart", "test",
             "--exec", f"{sys.executable} {os.path.join(self.dir, 'restart.py')}", "--timeout", "60"],
            env=os.environ,
            path=ROOT,
        )
        await task.deferLater(reactor, 1.0, lambda: None)
        await clients.stop()
        report = out.decode() + err.decode()
        switches = sum(
            1 for served in clients.served for a, b in zip(served, served[1:]) if a != b
        )
        print(
            f"\n{report}requests: {sum(map(len, clients.served))}, failed: {len(clients.failures)}, "
            f"sessions moved: {len(self.moved)} requests / {switches} switches, "
            f"new sessions: {len(self.newSessions)}"
        )
        self.assertEqual(code, 0, report)
        self.assertIn(f"keeping its sessions for up to {DRAIN_SECONDS:g}s", report)
        self.assertEqual(clients.failures, [])
        self.assertTrue(all(len(served) > 5 for served in clients.served), clients.served)
        # Sessions moved, and each only once its member was out.
        self.assertGreater(len(self.moved), 0)
        for move in self.moved:
            out_ = move["boundPassed"] or move["admin"] == "disabled" or move["down"] or move["excluded"]
            self.assertTrue(out_, move)
        # No new session went to a member that was not enabled.
        self.assertEqual([s for s in self.newSessions if s[1] != "enabled"], [])
        self.assertEqual([m.admin for m in balancer.members], ["enabled", "enabled"])
