"""
A balancer with real members on 127.0.0.1, for integration tests.
"""

from __future__ import annotations

import json

import treq
from treq.client import HTTPClient

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from playbalancer.balancer import Balancer, Member
from playbalancer.endpoints import MemberEndpoints
from playbalancer.exchange import HTTPProxy
from playbalancer.front import FrontSettings, HTTPFrontFactory
from playbalancer.schedulers import LeastConnScheduler, RoundRobinScheduler, StandbyScheduler
from playbalancer.sweeper import Sweeper
from playbalancer.upstream import MemberPools
from playbalancer.testing import MemberServer, closeAll

SCHEDULERS = {
    "standby": StandbyScheduler,
    "round-robin": RoundRobinScheduler,
    "least-conn": LeastConnScheduler,
}


class ProxyTestCase(TestCase):
    """
    Starts members and a balancer in this process; cleans all up.
    """

    timeout = 60

    def startMembers(self, *names):
        members = []
        for name in names:
            member = MemberServer(name, reactor).start()
            self.addCleanup(member.stop)
            members.append(member)
        return members

    def startBalancer(
        self,
        urls,
        scheduler="round-robin",
        standby=(),
        retry=60.0,
        timeout=60.0,
        preserveHost=True,
        maxBody=0,
        weights=None,
        clock=None,
        settings=None,
        mount=None,
        trustedProxies=(),
        memberTLS=None,
        **poolSettings,
    ):
        """
        Listen on 127.0.0.1 with a balancer over C{urls} (names app1, app2,
        ...); C{standby} holds the indexes of standby members.  The balancer
        keeps its down state on C{clock}, by default a L{Clock}
        (C{self.clock}).
        """
        if clock is None:
            clock = Clock()
            clock.advance(1000)
        self.clock = clock
        members = [
            Member(
                f"app{i + 1}",
                url,
                standby=i in standby,
                weight=(weights[i] if weights else 1),
            )
            for i, url in enumerate(urls)
        ]
        self.balancer = Balancer(
            "test", SCHEDULERS[scheduler](), members, self.clock, retry=retry,
            schedulerName=scheduler,
        )
        self.sweeper = Sweeper(reactor, interval=0.05)
        self.pools = MemberPools(
            MemberEndpoints(reactor, 5, memberTLS).forMember, self.sweeper, **poolSettings
        )
        self.proxy = HTTPProxy(
            self.balancer,
            self.pools,
            reactor,
            preserveHost=preserveHost,
            timeout=timeout,
            trustedProxies=trustedProxies,
        )
        if settings is None:
            settings = FrontSettings(maxBody=maxBody)
        self.front = HTTPFrontFactory(self.proxy, settings, mount)
        self.frontFactory = WrappingFactory(self.front)
        port = reactor.listenTCP(0, self.frontFactory, interface="127.0.0.1")
        self.port = port.getHost().port
        self.base = f"http://127.0.0.1:{self.port}"
        self.addCleanup(self.pools.close)
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: closeAll(self.frontFactory, reactor))
        return self.balancer

    def client(self, persistent=True):
        pool = HTTPConnectionPool(reactor, persistent=persistent)
        self.addCleanup(pool.closeCachedConnections)
        return HTTPClient(Agent(reactor, pool=pool))

    async def fetch(self, client, path, method="GET", **kwargs):
        """
        One request through the balancer: the response and its whole body.
        """
        response = await client.request(method, self.base + path, **kwargs)
        body = await treq.content(response)
        return response, body

    async def echo(self, client, path="/echo", **kwargs):
        """
        What the member saw, from the demo C{/echo} page.
        """
        response, body = await self.fetch(client, path, **kwargs)
        self.assertEqual(response.code, 200, body)
        return json.loads(body)


def servedBy(response):
    return response.headers.getRawHeaders(b"x-served-by", [b"-"])[0].decode()


def headerValues(echoed, name):
    """
    The values of header C{name} in an C{/echo} answer, in order.
    """
    return [value for key, value in echoed["headers"] if key.lower() == name.lower()]
