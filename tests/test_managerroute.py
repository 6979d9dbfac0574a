"""
The manager behind a route: its policy (L{AccessPolicy.forRoute}).
"""

from __future__ import annotations

import base64

from twisted.internet.task import Clock
from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from playbalancer.manager.guard import AccessPolicy, Refusal


def request(host=b"site.test", client="198.51.100.7", token=None):
    r = DummyRequest([b"api", b"status"])
    r.client = IPv4Address("TCP", client, 40000)
    r.requestHeaders.setRawHeaders(b"host", [host])
    if token is not None:
        r.requestHeaders.setRawHeaders(b"authorization", [b"Bearer " + token])
    return r


class ForRouteTests(SynchronousTestCase):
    def setUp(self):
        self.manager = AccessPolicy(["127.0.0.0/8"], None, Clock(), hosts=["admin.test"])

    def test_routeAllowReplacesAddresses(self):
        """
        With the route's own allow list, the manager's address list no
        longer applies (the route checked the client); without one, it
        does.
        """
        self.manager.forRoute("site.test", addressChecked=True).check(request())
        refusal = self.assertRaises(
            Refusal, self.manager.forRoute("site.test", addressChecked=False).check, request()
        )
        self.assertEqual(refusal.code, 403)
        self.assertRaises(Refusal, self.manager.check, request())

    def test_routeHostAccepted(self):
        """
        The route's host (a name or a wildcard) is one requests may name;
        others still are not (DNS rebinding).
        """
        policy = self.manager.forRoute("*.site.test", addressChecked=True)
        policy.check(request(host=b"a.site.test"))
        policy.check(request(host=b"admin.test:8080"))
        refusal = self.assertRaises(Refusal, policy.check, request(host=b"evil.test"))
        self.assertEqual(refusal.code, 403)
        self.manager.forRoute("site.test", addressChecked=True).check(request(host=b"site.test."))

    def test_tokenStillApplies(self):
        """
        The manager's token is needed through a route too.
        """
        manager = AccessPolicy(["127.0.0.0/8"], "s3cret", Clock())
        policy = manager.forRoute("site.test", addressChecked=True)
        refusal = self.assertRaises(Refusal, policy.check, request())
        self.assertEqual(refusal.code, 401)
        policy.check(request(token=b"s3cret"))
        basic = b"Basic " + base64.b64encode(b"any:s3cret")
        r = request()
        r.requestHeaders.setRawHeaders(b"authorization", [basic])
        policy.check(r)

    def test_formTokensShared(self):
        """
        A form token the manager made is good through the route.
        """
        policy = self.manager.forRoute(None, addressChecked=True)
        self.assertTrue(policy.checkCsrf(self.manager.csrfToken().encode()))
