"""
etc/mysuperwebapp.toml, the story's Apache configuration translated, run
with two real members and a real DNS server on 127.0.0.1: every behaviour
the Apache config had (the virtual host, ProxyPreserveHost, the hot
standby, ProxyPassReverse, the manager at /balancer-manager never proxied
and open only to clients under .mysuperwebapp.com by double-reverse DNS).
"""

from __future__ import annotations

import json
import os

from twisted.internet import reactor

from playbalancer.testing.dns import listenDNS
from tests.routeharness import RoutedTestCase, servedBy

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "etc", "mysuperwebapp.toml")


class MySuperWebAppTests(RoutedTestCase):
    async def start(self, pointers, addresses):
        self.app1, self.app2 = self.startMembers("app1", "app2")
        dnsPort, server = listenDNS(reactor, pointers=pointers, addresses=addresses, ttl=60)
        self.addCleanup(dnsPort.stopListening)
        with open(CONFIG) as f:
            text = f.read()
        for old, new in [
            ('endpoint = "tcp:80"', 'endpoint = "tcp:0:interface=127.0.0.1"'),
            ('endpoint = "tcp:8081:interface=127.0.0.1"', 'endpoint = "tcp:0:interface=127.0.0.1"'),
            ("http://127.0.0.1:9999", self.app1.url),
            ("http://127.0.0.1:9998", self.app2.url),
        ]:
            self.assertIn(old, text)
            text = text.replace(old, new)
        text += f'\n[resolver]\nservers = ["{server}"]\ntimeout = 2\n'
        await self.startConfig(text)

    async def test_site(self):
        """
        The virtual host: requests for mysuperwebapp.com go to the primary
        member only (the standby idles), with the client's Host
        (ProxyPreserveHost On), and a member's redirect to its own address
        comes back at the public name (ProxyPassReverse).
        """
        await self.start({}, {})
        for _ in range(3):
            response, body = await self.get("/", host="mysuperwebapp.com")
            self.assertEqual((response.code, servedBy(response)), (200, "app1"))
        response, body = await self.get("/echo", host="mysuperwebapp.com")
        headers = json.loads(body)["headers"]
        self.assertIn(["Host", "mysuperwebapp.com"], [[n.title(), v] for n, v in headers])
        response, _ = await self.get("/redirect", host="mysuperwebapp.com")
        self.assertEqual(response.code, 302)
        self.assertEqual(response.headers.getRawHeaders(b"location"), [b"http://mysuperwebapp.com/"])
        self.assertEqual(self.app2.paths, [])

    async def test_standbyTakesOver(self):
        """
        status=+H: with the primary gone, the standby serves.
        """
        await self.start({}, {})
        await self.app1.stop()
        response, _ = await self.get("/", host="mysuperwebapp.com")
        self.assertEqual((response.code, servedBy(response)), (200, "app2"))

    async def test_otherHosts(self):
        """
        Another name is sent to the site's name, the path kept; the
        manager's path on it is not the manager.
        """
        await self.start({}, {})
        for path in ("/x?y=1", "/balancer-manager/api/status"):
            response, _ = await self.get(path, host="www.example.test")
            self.assertEqual(response.code, 301)
            self.assertEqual(
                response.headers.getRawHeaders(b"location"), [b"http://mysuperwebapp.com" + path.encode()]
            )
        self.assertEqual(self.app1.paths + self.app2.paths, [])

    async def test_managerForClientsUnderTheDomain(self):
        """
        Allow from .mysuperwebapp.com: a client whose address has a name
        under the domain, that resolves back to it, uses the manager; its
        requests never reach a member.
        """
        await self.start(
            {"127.0.0.1": ["admin.mysuperwebapp.com"]},
            {"admin.mysuperwebapp.com": ["127.0.0.1"]},
        )
        response, body = await self.get("/balancer-manager/api/status", host="mysuperwebapp.com")
        self.assertEqual(response.code, 200, body)
        self.assertEqual(
            sorted(json.loads(body)["balancers"]["mycluster"]["members"]), ["app1", "app2"]
        )
        response, body = await self.get("/balancer-manager/", host="mysuperwebapp.com")
        self.assertEqual(response.code, 200)
        self.assertIn(b"playbalancer", body)
        self.assertEqual(self.app1.paths + self.app2.paths, [])

    async def assertRefused(self, pointers, addresses):
        await self.start(pointers, addresses)
        response, body = await self.get("/balancer-manager/api/status", host="mysuperwebapp.com")
        self.assertEqual(response.code, 403, body)
        front = self.service.listeners[0][1]
        manager = [t for t in front.routes.targets if t.name == "manager"][0]
        self.assertEqual((manager.hits, manager.denied), (1, 1))
        self.assertEqual(self.app1.paths + self.app2.paths, [])

    async def test_managerRefusesNamesElsewhere(self):
        """
        A client whose address has a name outside the domain gets a 403.
        """
        await self.assertRefused(
            {"127.0.0.1": ["host.example.net"]}, {"host.example.net": ["127.0.0.1"]}
        )

    async def test_managerRefusesForgedNames(self):
        """
        A name under the domain that does not resolve back to the client's
        address (a PTR record its owner forged) gets a 403.
        """
        await self.assertRefused(
            {"127.0.0.1": ["admin.mysuperwebapp.com"]},
            {"admin.mysuperwebapp.com": ["192.0.2.7"]},
        )

    async def test_managerRefusesUnknownClients(self):
        """
        A client DNS knows nothing about gets a 403.
        """
        await self.assertRefused({}, {})
