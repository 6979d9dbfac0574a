"""
Allow rules (L{playbalancer.access}): parsing, address rules, and host-name
rules checked by double-reverse DNS, with an in-memory resolver and a
L{Clock}, then over UDP against L{playbalancer.testing.dns.listenDNS}.
"""

from __future__ import annotations

import ipaddress

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.interfaces import IResolver
from twisted.internet.task import Clock
from twisted.names import client, dns, error
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from playbalancer.access import (
    FAILURE_TTL,
    MAX_TTL,
    MIN_TTL,
    ClientAccess,
    checkRule,
    checkServer,
    matchesName,
    parseServer,
    systemResolver,
)
from playbalancer.testing.dns import MemoryAuthority, listenDNS

PTR_7 = "7.2.0.192.in-addr.arpa"


class HeldResolver:
    """
    Asks C{inner} (a L{MemoryAuthority}) only when told to (L{release}):
    until then its lookups are pending, and may be cancelled.

    @ivar pending: C{(type, name, deferred)} of each lookup not released.
    @ivar cancelled: C{(type, name)} of each lookup cancelled.
    """

    def __init__(self, inner):
        self.inner = inner
        self.pending = []
        self.cancelled = []

    def _hold(self, kind, name):
        def cancel(d):
            self.cancelled.append((kind, name))
            self.pending = [p for p in self.pending if p[2] is not d]

        d = Deferred(cancel)
        self.pending.append((kind, name, d))
        return d

    def lookupPointer(self, name, timeout=None):
        return self._hold("lookupPointer", name)

    def lookupAddress(self, name, timeout=None):
        return self._hold("lookupAddress", name)

    def lookupIPV6Address(self, name, timeout=None):
        return self._hold("lookupIPV6Address", name)

    def release(self):
        """
        Answer the pending lookups (those made meanwhile stay pending).
        """
        pending, self.pending = self.pending, []
        for kind, name, d in pending:
            getattr(self.inner, kind)(name).chainDeferred(d)


def fired(testCase, result):
    """
    The verdict C{result} of L{ClientAccess.check} gave, which must be a
    L{Deferred} that has fired.
    """
    testCase.assertIsInstance(result, Deferred)
    return testCase.successResultOf(result)


class RuleTests(SynchronousTestCase):
    """
    L{checkRule} normalizes good rules and rejects others in one line.
    """

    def test_normalized(self):
        cases = {
            "192.0.2.7": "192.0.2.7",
            "::0001": "::1",
            "::ffff:192.0.2.7": "192.0.2.7",
            "10.0.0.0/8": "10.0.0.0/8",
            "10.0.0.0/255.0.0.0": "10.0.0.0/8",
            "FD00::/8": "fd00::/8",
            "::ffff:10.0.0.0/104": "10.0.0.0/8",
            "unix:": "unix:",
            "Host.Example.COM.": "host.example.com",
            ".Example.com": ".example.com",
            ".net": ".net",
            "localhost": "localhost",
            "xn--bcher-kva.example": "xn--bcher-kva.example",
        }
        self.assertEqual({text: checkRule(text) for text in cases}, cases)

    def test_rejected(self):
        for text in [
            "",
            "*",
            "*.example.com",
            " 10.0.0.1",
            "10.0.0.1 ",
            "a b",
            "example..com",
            "..example.com",
            ".",
            "10.0.0.1:80",
            "[::1]:80",
            "[::1]",
            "example.com:80",
            "10.1.2.3/8",
            "10.0.0.0/33",
            "10.1",
            "192.0.2.256",
            "-bad.example",
            "bad-.example",
            "exa_mple.com",
            "exämple.com",
            "unix:/run/app.sock",
            "fe80::1%eth0",
            "1:2:3:4:5:6:7:8:9",
            "a" * 64 + ".example",
            None,
            5,
        ]:
            with self.assertRaises(ValueError, msg=repr(text)) as caught:
                checkRule(text)
            message = str(caught.exception)
            self.assertNotIn("\n", message)
            self.assertTrue(message, repr(text))

    def test_hostBitsMessage(self):
        """
        A network with host bits set is refused, naming the network meant.
        """
        with self.assertRaises(ValueError) as caught:
            checkRule("10.1.2.3/8")
        self.assertIn("10.0.0.0/8", str(caught.exception))

    def test_clientAccessChecksRules(self):
        self.assertRaises(ValueError, ClientAccess, ["10.0.0.0/8", "*"], None, Clock())

    def test_matchesName(self):
        """
        As Apache's C{in_domain}: whole labels at the end; a leading dot
        excludes the bare domain.
        """
        self.assertTrue(matchesName("example.com", "example.com"))
        self.assertTrue(matchesName("example.com", "www.example.com"))
        self.assertTrue(matchesName("example.com", "a.b.Example.COM."))
        self.assertFalse(matchesName("example.com", "fooexample.com"))
        self.assertFalse(matchesName("example.com", "example.com.evil.test"))
        self.assertTrue(matchesName(".example.com", "www.example.com"))
        self.assertFalse(matchesName(".example.com", "example.com"))
        self.assertFalse(matchesName(".example.com", "wwwexample.com"))

    def test_describe(self):
        access = ClientAccess(["127.0.0.0/8", ".Example.com", "127.0.0.0/8", "unix:"], None, Clock())
        self.assertEqual(access.describe(), "127.0.0.0/8, .example.com, unix:")

    def test_needsResolver(self):
        self.assertFalse(ClientAccess(["10.0.0.0/8", "::1", "unix:"], None, Clock()).needsResolver)
        self.assertTrue(ClientAccess(["10.0.0.0/8", "app.example.com"], None, Clock()).needsResolver)


class AddressRuleTests(SynchronousTestCase):
    """
    Address and network rules decide at once, without DNS.
    """

    def setUp(self):
        self.dns = MemoryAuthority()

    def access(self, rules):
        return ClientAccess(rules, self.dns, Clock())

    def test_address(self):
        access = self.access(["192.0.2.7", "2001:db8::7"])
        self.assertIs(access.check("192.0.2.7"), True)
        self.assertIs(access.check("192.0.2.8"), False)
        self.assertIs(access.check("2001:db8:0::7"), True)
        self.assertIs(access.check("2001:db8::8"), False)

    def test_network(self):
        access = self.access(["10.0.0.0/8", "fd00::/8"])
        self.assertIs(access.check("10.255.1.2"), True)
        self.assertIs(access.check("11.0.0.1"), False)
        self.assertIs(access.check("fd12::1"), True)
        self.assertIs(access.check("fe80::1"), False)

    def test_ipv4Mapped(self):
        """
        An IPv4-mapped client address is its IPv4 address, for IPv4 rules
        and IPv4-mapped ones.
        """
        self.assertIs(self.access(["127.0.0.0/8"]).check("::ffff:127.0.0.1"), True)
        self.assertIs(self.access(["127.0.0.0/8"]).check("::ffff:128.0.0.1"), False)
        self.assertIs(self.access(["::ffff:192.0.2.7"]).check("192.0.2.7"), True)

    def test_zoneIgnored(self):
        self.assertIs(self.access(["fe80::/10"]).check("fe80::1%eth0"), True)

    def test_unix(self):
        self.assertIs(self.access(["unix:"]).check(None), True)
        self.assertIs(self.access(["unix:"]).check("127.0.0.1"), False)
        self.assertIs(self.access(["127.0.0.1"]).check(None), False)
        self.assertIs(self.access([".example.com"]).check(None), False)
        self.assertEqual(self.dns.queries, [])

    def test_noRules(self):
        self.assertIs(self.access([]).check("127.0.0.1"), False)
        self.assertIs(self.access([]).check(None), False)

    def test_notAnAddress(self):
        access = self.access(["0.0.0.0/0", "::/0", ".example.com"])
        self.assertIs(access.check("example.com"), False)
        self.assertIs(access.check(""), False)
        self.assertEqual(self.dns.queries, [])

    def test_addressBeforeNames(self):
        """
        An address rule that allows saves the DNS lookup.
        """
        access = self.access([".example.com", "192.0.2.0/24"])
        self.assertIs(access.check("192.0.2.7"), True)
        self.assertEqual(self.dns.queries, [])


class HostNameTests(SynchronousTestCase):
    """
    Host-name rules: the PTR names of the address that match a rule must
    resolve back to it.
    """

    def setUp(self):
        self.clock = Clock()
        self.dns = MemoryAuthority(
            pointers={"192.0.2.7": ["app.example.com"]},
            addresses={"app.example.com": ["192.0.2.7"]},
        )

    def access(self, rules, resolver=None, **kw):
        return ClientAccess(rules, resolver or self.dns, self.clock, **kw)

    def test_doubleReverse(self):
        self.assertIs(fired(self, self.access([".example.com"]).check("192.0.2.7")), True)
        self.assertEqual(self.dns.queries, [("PTR", PTR_7), ("A", "app.example.com")])

    def test_exactName(self):
        """
        A rule without a leading dot matches the name itself (and, as
        Apache, the names under it), not other names.
        """
        self.dns.pointers["192.0.2.8"] = ["www.app.example.com"]
        self.dns.addresses["www.app.example.com"] = ["192.0.2.8"]
        self.dns.pointers["192.0.2.9"] = ["otherapp.example.com"]
        self.dns.addresses["otherapp.example.com"] = ["192.0.2.9"]
        access = self.access(["app.example.com"])
        self.assertIs(fired(self, access.check("192.0.2.7")), True)
        self.assertIs(fired(self, access.check("192.0.2.8")), True)
        self.assertIs(fired(self, access.check("192.0.2.9")), False)

    def test_recordsOfOtherOwnersIgnored(self):
        """
        Records in an answer whose owner is not the name asked for (nor
        one it is a CNAME of) are not answers: a server that adds an A
        record of its own choosing cannot vouch for a client.
        """
        from twisted.internet.defer import succeed
        from twisted.names import dns

        class Stuffing:
            def lookupPointer(self, name, timeout=None):
                return succeed(([dns.RRHeader(name, dns.PTR, payload=dns.Record_PTR("app.example.com"))], [], []))

            def lookupAddress(self, name, timeout=None):
                stuffed = dns.RRHeader("other.example.net", dns.A, payload=dns.Record_A("192.0.2.7"))
                return succeed(([stuffed], [], []))

        self.assertIs(fired(self, self.access([".example.com"], Stuffing()).check("192.0.2.7")), False)

        class Aliased(Stuffing):
            def lookupAddress(self, name, timeout=None):
                return succeed(
                    (
                        [
                            dns.RRHeader(name, dns.CNAME, payload=dns.Record_CNAME("real.example.net")),
                            dns.RRHeader("real.example.net", dns.A, payload=dns.Record_A("192.0.2.7")),
                        ],
                        [],
                        [],
                    )
                )

        self.clock.advance(FAILURE_TTL + 1)
        self.assertIs(fired(self, self.access([".example.com"], Aliased()).check("192.0.2.7")), True)

    def test_forwardMismatch(self):
        """
        Whoever controls the PTR record of an address can name it anything:
        the name must resolve back to the address.
        """
        self.dns.addresses["app.example.com"] = ["198.51.100.1"]
        self.assertIs(fired(self, self.access([".example.com"]).check("192.0.2.7")), False)
        self.assertEqual(self.dns.queries, [("PTR", PTR_7), ("A", "app.example.com")])

    def test_otherDomain(self):
        """
        A PTR name not under a rule denies, without a forward lookup.
        """
        self.dns.pointers["192.0.2.7"] = ["app.example.net"]
        self.dns.addresses["app.example.net"] = ["192.0.2.7"]
        self.assertIs(fired(self, self.access([".example.com"]).check("192.0.2.7")), False)
        self.assertEqual(self.dns.queries, [("PTR", PTR_7)])

    def test_bareDomainNotUnderDottedRule(self):
        self.dns.pointers["192.0.2.7"] = ["example.com"]
        self.dns.addresses["example.com"] = ["192.0.2.7"]
        self.assertIs(fired(self, self.access([".example.com"]).check("192.0.2.7")), False)
        self.assertIs(fired(self, self.access(["example.com"]).check("192.0.2.7")), True)

    def test_noPointer(self):
        """
        NXDOMAIN for the PTR name denies.
        """
        self.assertIs(fired(self, self.access([".example.com"]).check("192.0.2.99")), False)
        self.assertEqual(self.dns.queries, [("PTR", "99.2.0.192.in-addr.arpa")])

    def test_forwardNXDOMAIN(self):
        del self.dns.addresses["app.example.com"]
        self.assertIs(fired(self, self.access([".example.com"]).check("192.0.2.7")), False)
        self.assertEqual(self.dns.queries, [("PTR", PTR_7), ("A", "app.example.com")])

    def test_caseAndTrailingDot(self):
        self.dns.pointers["192.0.2.7"] = ["APP.Example.COM."]
        self.assertIs(fired(self, self.access([".example.com"]).check("192.0.2.7")), True)
        self.assertEqual(self.dns.queries[-1], ("A", "app.example.com"))

    def test_ipv6(self):
        self.dns.pointers["2001:db8::7"] = ["app.example.com"]
        self.dns.addresses["app.example.com"] = ["192.0.2.7", "2001:db8::7"]
        self.assertIs(fired(self, self.access([".example.com"]).check("2001:db8::7")), True)
        self.assertEqual(
            self.dns.queries,
            [("PTR", "7." + "0." * 23 + "8.b.d.0.1.0.0.2.ip6.arpa"), ("AAAA", "app.example.com")],
        )

    def test_ipv6ForwardHasOnlyIPv4(self):
        """
        An IPv6 client is checked against AAAA records, not A ones.
        """
        self.dns.pointers["2001:db8::7"] = ["app.example.com"]
        self.dns.addresses["app.example.com"] = ["192.0.2.7"]
        self.assertIs(fired(self, self.access([".example.com"]).check("2001:db8::7")), False)

    def test_ipv4MappedLooksUpIPv4(self):
        self.assertIs(fired(self, self.access([".example.com"]).check("::ffff:192.0.2.7")), True)
        self.assertEqual(self.dns.queries, [("PTR", PTR_7), ("A", "app.example.com")])

    def test_severalPointerNames(self):
        """
        Each PTR name under a rule is tried forward until one resolves back;
        those under no rule are not looked up.
        """
        self.dns.pointers["192.0.2.7"] = ["spoof.example.com", "x.example.net", "app.example.com"]
        self.dns.addresses["spoof.example.com"] = ["198.51.100.1"]
        self.assertIs(fired(self, self.access([".example.com"]).check("192.0.2.7")), True)
        self.assertEqual(
            self.dns.queries,
            [("PTR", PTR_7), ("A", "spoof.example.com"), ("A", "app.example.com")],
        )

    def test_forwardFailureThenNextName(self):
        """
        A PTR name that does not resolve forward does not stop the others
        from being tried.
        """
        self.dns.pointers["192.0.2.7"] = ["gone.example.com", "app.example.com"]
        self.assertIs(fired(self, self.access([".example.com"]).check("192.0.2.7")), True)
        self.assertEqual(
            self.dns.queries,
            [("PTR", PTR_7), ("A", "gone.example.com"), ("A", "app.example.com")],
        )

    def test_noResolver(self):
        access = ClientAccess([".example.com"], None, self.clock)
        self.assertIs(fired(self, access.check("192.0.2.7")), False)

    def test_unexpectedError(self):
        """
        An error no DNS failure explains is logged, and denies.
        """

        class Broken:
            def lookupPointer(self, name, timeout=None):
                return fail(ZeroDivisionError())

        access = self.access([".example.com"], Broken())
        self.assertIs(fired(self, access.check("192.0.2.7")), False)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_resolverRaises(self):
        class Raises:
            def lookupPointer(self, name, timeout=None):
                raise ZeroDivisionError()

        access = self.access([".example.com"], Raises())
        self.assertIs(fired(self, access.check("192.0.2.7")), False)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_strangeRecord(self):
        """
        A forward answer that breaks the check (an address of the wrong
        size) is logged and denies.
        """

        class Strange(MemoryAuthority):
            def lookupAddress(self, name, timeout=None):
                payload = dns.Record_A("192.0.2.7")
                payload.address = b"\x01"
                return succeed(([dns.RRHeader(b"app.example.com", dns.A, dns.IN, 60, payload)], [], []))

        strange = Strange(pointers={"192.0.2.7": ["app.example.com"]})
        self.assertIs(fired(self, self.access([".example.com"], strange).check("192.0.2.7")), False)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class CacheTests(SynchronousTestCase):
    """
    Verdicts are cached for the TTL of their records, failures briefly;
    one lookup per address at once; a timeout denies.
    """

    def setUp(self):
        self.clock = Clock()
        self.dns = MemoryAuthority(
            pointers={"192.0.2.7": ["app.example.com"]},
            addresses={"app.example.com": ["192.0.2.7"]},
            ttl=60,
        )

    def access(self, resolver=None, **kw):
        return ClientAccess([".example.com"], resolver or self.dns, self.clock, **kw)

    def test_cacheHit(self):
        access = self.access()
        self.assertIs(fired(self, access.check("192.0.2.7")), True)
        self.assertEqual(len(self.dns.queries), 2)
        self.assertIs(access.check("192.0.2.7"), True)
        self.assertIs(access.check("::ffff:192.0.2.7"), True)
        self.assertEqual(len(self.dns.queries), 2)

    def test_ttlExpiry(self):
        access = self.access()
        fired(self, access.check("192.0.2.7"))
        self.clock.advance(59)
        self.assertIs(access.check("192.0.2.7"), True)
        self.assertEqual(len(self.dns.queries), 2)
        self.clock.advance(2)
        self.assertIs(fired(self, access.check("192.0.2.7")), True)
        self.assertEqual(len(self.dns.queries), 4)

    def test_smallestTTL(self):
        """
        A verdict lasts as long as the shortest-lived of its records.
        """
        self.dns.ttls["app.example.com"] = 20
        access = self.access()
        fired(self, access.check("192.0.2.7"))
        self.clock.advance(19)
        self.assertIs(access.check("192.0.2.7"), True)
        self.clock.advance(2)
        self.assertIsInstance(access.check("192.0.2.7"), Deferred)

        self.dns.ttls = {"192.0.2.7": 10}
        self.clock.advance(100)
        fired(self, access.check("192.0.2.7"))
        self.clock.advance(9)
        self.assertIs(access.check("192.0.2.7"), True)
        self.clock.advance(2)
        self.assertIsInstance(access.check("192.0.2.7"), Deferred)

    def test_ttlBounds(self):
        self.dns.ttl = 0
        access = self.access()
        fired(self, access.check("192.0.2.7"))
        self.clock.advance(MIN_TTL - 0.5)
        self.assertIs(access.check("192.0.2.7"), True)
        self.clock.advance(1)
        self.assertIsInstance(access.check("192.0.2.7"), Deferred)

        self.dns.ttl = 86400
        self.clock.advance(100)
        fired(self, access.check("192.0.2.7"))
        self.clock.advance(MAX_TTL - 1)
        self.assertIs(access.check("192.0.2.7"), True)
        self.clock.advance(2)
        self.assertIsInstance(access.check("192.0.2.7"), Deferred)

    def test_denialCachedForTTL(self):
        """
        A definite denial (a forward answer without the address) lasts the
        records' TTL, like an allowance.
        """
        self.dns.addresses["app.example.com"] = ["198.51.100.1"]
        self.dns.ttl = 300
        access = self.access()
        self.assertIs(fired(self, access.check("192.0.2.7")), False)
        self.clock.advance(299)
        self.assertIs(access.check("192.0.2.7"), False)
        self.clock.advance(2)
        self.assertIsInstance(access.check("192.0.2.7"), Deferred)

    def test_failureCachedBriefly(self):
        """
        NXDOMAIN denies for L{FAILURE_TTL}, however long the records' TTL.
        """
        self.dns.ttl = 3000
        access = self.access()
        self.assertIs(fired(self, access.check("192.0.2.99")), False)
        self.clock.advance(FAILURE_TTL - 1)
        self.assertIs(access.check("192.0.2.99"), False)
        self.assertEqual(len(self.dns.queries), 1)
        self.clock.advance(2)
        self.assertIs(fired(self, access.check("192.0.2.99")), False)
        self.assertEqual(len(self.dns.queries), 2)

    def test_forwardFailureCachedBriefly(self):
        del self.dns.addresses["app.example.com"]
        self.dns.ttl = 3000
        access = self.access()
        self.assertIs(fired(self, access.check("192.0.2.7")), False)
        self.clock.advance(FAILURE_TTL + 1)
        self.assertIsInstance(access.check("192.0.2.7"), Deferred)

    def test_sharedLookup(self):
        held = HeldResolver(self.dns)
        access = self.access(held)
        first = access.check("192.0.2.7")
        second = access.check("::ffff:192.0.2.7")
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.assertEqual([p[:2] for p in held.pending], [("lookupPointer", PTR_7)])
        held.release()
        self.assertEqual([p[:2] for p in held.pending], [("lookupAddress", "app.example.com")])
        third = access.check("192.0.2.7")
        held.release()
        self.assertEqual(held.pending, [])
        self.assertEqual(
            [self.successResultOf(d) for d in (first, second, third)], [True, True, True]
        )
        self.assertEqual(len(self.dns.queries), 2)

    def test_otherAddressesLookedUpApart(self):
        held = HeldResolver(self.dns)
        access = self.access(held)
        access.check("192.0.2.7")
        access.check("192.0.2.8")
        self.assertEqual(
            sorted(p[1] for p in held.pending), [PTR_7, "8.2.0.192.in-addr.arpa"]
        )

    def test_callerCancels(self):
        """
        One caller cancelling its L{Deferred} leaves the others theirs.
        """
        held = HeldResolver(self.dns)
        access = self.access(held)
        first = access.check("192.0.2.7")
        second = access.check("192.0.2.7")
        first.cancel()
        self.failureResultOf(first)
        held.release()
        held.release()
        self.assertIs(self.successResultOf(second), True)

    def test_timeout(self):
        held = HeldResolver(self.dns)
        access = self.access(held, timeout=5.0)
        d = access.check("192.0.2.7")
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.assertIs(self.successResultOf(d), False)
        self.assertEqual(held.cancelled, [("lookupPointer", PTR_7)])
        self.assertEqual(held.pending, [])
        self.clock.advance(FAILURE_TTL - 1)
        self.assertIs(access.check("192.0.2.7"), False)
        self.clock.advance(2)
        self.assertIsInstance(access.check("192.0.2.7"), Deferred)

    def test_timeoutInForwardLookup(self):
        """
        The timeout covers the whole check: it cancels the forward lookup.
        """
        held = HeldResolver(self.dns)
        access = self.access(held, timeout=5.0)
        d = access.check("192.0.2.7")
        self.clock.advance(3)
        held.release()
        self.assertNoResult(d)
        self.clock.advance(2)
        self.assertIs(self.successResultOf(d), False)
        self.assertEqual(held.cancelled, [("lookupAddress", "app.example.com")])

    def test_lateAnswerIgnored(self):
        """
        An answer after the timeout, from a resolver that cannot cancel,
        changes nothing.
        """

        class Uncancellable(HeldResolver):
            def _hold(self, kind, name):
                d = Deferred()
                self.pending.append((kind, name, d))
                return d

        held = Uncancellable(self.dns)
        access = self.access(held, timeout=5.0)
        d = access.check("192.0.2.7")
        pending = held.pending[0][2]
        self.clock.advance(5)
        self.assertIs(self.successResultOf(d), False)
        self.dns.lookupPointer(PTR_7).chainDeferred(pending)
        self.assertEqual(len(self.dns.queries), 1)
        self.assertIs(access.check("192.0.2.7"), False)

    def test_noTimerLeft(self):
        access = self.access()
        fired(self, access.check("192.0.2.7"))
        fired(self, access.check("192.0.2.99"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_boundedCache(self):
        for n in (7, 8, 9):
            self.dns.pointers[f"192.0.2.{n}"] = ["app.example.com"]
        access = self.access(maxEntries=2)
        for n in (7, 8, 9):
            fired(self, access.check(f"192.0.2.{n}"))
        self.assertEqual(len(self.dns.queries), 6)
        self.assertIs(access.check("192.0.2.9"), False)
        self.assertIs(access.check("192.0.2.8"), False)
        self.assertIsInstance(access.check("192.0.2.7"), Deferred)
        self.assertEqual(len(self.dns.queries), 8)

    def test_boundedLookups(self):
        """
        Past C{maxEntries} lookups at once, clients needing one are denied
        at once, and not cached.
        """
        held = HeldResolver(self.dns)
        access = self.access(held, maxEntries=2)
        access.check("192.0.2.7")
        access.check("192.0.2.8")
        self.assertIs(access.check("192.0.2.9"), False)
        self.assertEqual(len(held.pending), 2)
        held.release()
        self.assertIsInstance(access.check("192.0.2.9"), Deferred)


class ServerTests(SynchronousTestCase):
    """
    Name servers for L{systemResolver}: L{parseServer}, L{checkServer}.
    """

    def test_parsed(self):
        self.assertEqual(parseServer("127.0.0.1"), ("127.0.0.1", 53))
        self.assertEqual(parseServer("127.0.0.1:5353"), ("127.0.0.1", 5353))
        self.assertEqual(parseServer("[::1]:5353"), ("::1", 5353))
        self.assertEqual(parseServer("[::1]"), ("::1", 53))
        self.assertEqual(parseServer("::1"), ("::1", 53))

    def test_normalized(self):
        self.assertEqual(checkServer("127.0.0.1"), "127.0.0.1:53")
        self.assertEqual(checkServer("[0::1]:5353"), "[::1]:5353")
        self.assertEqual(checkServer("2001:db8::53"), "[2001:db8::53]:53")

    def test_rejected(self):
        for text in [
            "",
            "ns.example.com",
            "ns.example.com:53",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:",
            "127.0.0.1:5x",
            ":53",
            "[::1",
            "[::1]53",
            "[127.0.0.1]:53",
            "[fe80::1%eth0]:53",
            "127.0.0.1:53:53",
            None,
        ]:
            with self.assertRaises(ValueError, msg=repr(text)) as caught:
                checkServer(text)
            self.assertNotIn("\n", str(caught.exception))

    def test_systemResolverWithServers(self):
        clock = Clock()
        resolver = systemResolver(clock, ["127.0.0.1:5353", "[::1]"])
        verifyObject(IResolver, resolver)
        self.assertIsInstance(resolver, client.Resolver)
        self.assertEqual(resolver.servers, [("127.0.0.1", 5353), ("::1", 53)])
        self.assertIs(resolver._reactor, clock)

    def test_systemResolverBadServer(self):
        self.assertRaises(ValueError, systemResolver, Clock(), ["ns.example.com"])

    def test_systemResolver(self):
        """
        Without servers: C{/etc/hosts}, then C{/etc/resolv.conf}'s, whose
        re-reading is timed on the reactor given.
        """
        clock = Clock()
        resolver = systemResolver(clock)
        verifyObject(IResolver, resolver)
        self.assertEqual(resolver.resolvers[1].resolv, b"/etc/resolv.conf")
        self.assertEqual(len(clock.getDelayedCalls()), 1)


class OverUDPTests(TestCase):
    """
    L{listenDNS} over real UDP sockets, with L{systemResolver}.
    """

    def serve(self, pointers, addresses, ttl=60):
        port, server = listenDNS(reactor, pointers=pointers, addresses=addresses, ttl=ttl)
        self.addCleanup(port.stopListening)
        return systemResolver(reactor, servers=[server])

    @inlineCallbacks
    def test_records(self):
        resolver = self.serve(
            {"127.0.0.1": ["app.example.test"]},
            {"app.example.test": ["127.0.0.1", "::1"]},
            ttl=42,
        )
        answers, _, _ = yield resolver.lookupPointer("1.0.0.127.in-addr.arpa")
        self.assertEqual(
            [(r.type, r.ttl, r.payload.name.name) for r in answers], [(dns.PTR, 42, b"app.example.test")]
        )
        answers, _, _ = yield resolver.lookupAddress("APP.example.test")
        self.assertEqual([r.payload.dottedQuad() for r in answers], ["127.0.0.1"])
        answers, _, _ = yield resolver.lookupIPV6Address("app.example.test")
        self.assertEqual(
            [ipaddress.ip_address(r.payload.address) for r in answers], [ipaddress.ip_address("::1")]
        )
        answers, _, _ = yield resolver.lookupMailExchange("app.example.test")
        self.assertEqual(answers, [])
        yield self.assertFailure(resolver.lookupAddress("nope.example.test"), error.DNSNameError)

    @inlineCallbacks
    def test_allowed(self):
        resolver = self.serve({"127.0.0.1": ["app.example.test"]}, {"app.example.test": ["127.0.0.1"]})
        access = ClientAccess([".example.test"], resolver, reactor)
        self.assertIs((yield access.check("127.0.0.1")), True)
        self.assertIs(access.check("::ffff:127.0.0.1"), True)

    @inlineCallbacks
    def test_spoofedPointer(self):
        resolver = self.serve({"127.0.0.1": ["app.example.test"]}, {"app.example.test": ["127.0.0.2"]})
        access = ClientAccess([".example.test"], resolver, reactor)
        self.assertIs((yield access.check("127.0.0.1")), False)

    @inlineCallbacks
    def test_noPointer(self):
        resolver = self.serve({}, {"app.example.test": ["127.0.0.1"]})
        access = ClientAccess([".example.test"], resolver, reactor)
        self.assertIs((yield access.check("127.0.0.1")), False)
