"""
Which clients may use a route: its C{allow} list of addresses, networks,
host names and C{unix:}, as Apache's C{Require ip} and C{Require host} and
nginx's C{allow}.

A host-name rule is checked the way Apache checks one, by double-reverse
DNS: the names the client's address points to (PTR) must match the rule,
and one of them must resolve (A or AAAA) back to that address.  The
lookups go through a L{twisted.names} resolver (L{systemResolver}) and
never block; their verdicts are cached (L{ClientAccess}).
"""

from __future__ import annotations

import ipaddress
import re
from collections import OrderedDict

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, fail
from twisted.logger import Logger
from twisted.names import client, dns, error, hosts, resolve

#: The rule that allows clients on a Unix socket (they have no address).
UNIX = "unix:"

#: Bounds, in seconds, on how long a verdict from DNS records is cached
#: (the smallest TTL of the records it rests on, within these).
MIN_TTL = 5.0
MAX_TTL = 3600.0

#: Seconds a denial is cached when DNS did not answer properly: a timeout,
#: NXDOMAIN, a server failure or an answer with no record of the type asked.
FAILURE_TTL = 30.0

#: At most this many names of one PTR answer are looked up forward.
MAX_NAMES = 8

#: The errors DNS lookups are expected to fail with (others are logged).
_EXPECTED = (
    error.DomainError,
    error.AuthoritativeDomainError,
    error.ResolverError,
    TimeoutError,
    CancelledError,
    OSError,
)

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")

_log = Logger()


def _mapped(address):
    """
    C{address} (an L{ipaddress} address), as IPv4 if it is IPv4-mapped IPv6.
    """
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _mappedNetwork(network):
    """
    C{network}, as the IPv4 network it is if it lies within C{::ffff:0:0/96}.
    """
    if network.version == 6 and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _checkName(text, rule):
    """
    C{text} as a host name, lower case and without a trailing dot.

    @raise ValueError: if it is not a host name.
    """
    name = text.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValueError(f"{rule!r} is not an address, network or host name")
    if not name.isascii():
        raise ValueError(f"{rule!r}: write an international host name in its ASCII (xn--) form")
    if len(name) > 253:
        raise ValueError(f"{rule!r}: a host name has at most 253 characters")
    labels = name.split(".")
    for label in labels:
        if not label:
            raise ValueError(f"{rule!r}: empty label (two dots in a row)")
        if not _LABEL.match(label):
            raise ValueError(
                f"{rule!r}: {label!r} is not a host name label "
                "(letters, digits and inner hyphens, at most 63)"
            )
    if labels[-1].isdigit():
        raise ValueError(
            f"{rule!r} is neither a whole IP address nor a host name; "
            "write a network such as 10.1.0.0/16"
        )
    return name


def checkRule(text):
    """
    Check one allow rule and return it normalized.

    The rules:
      - an IP address, C{"192.0.2.7"} or C{"::1"} (an IPv4-mapped one is
        written as its IPv4 address);
      - a network, C{"10.0.0.0/8"} or C{"fd00::/8"} (a netmask such as
        C{/255.0.0.0} is written as its prefix length; no host bits);
      - C{"unix:"}, the clients on a Unix socket;
      - a host name, lower case and without a trailing dot once normalized,
        as Apache's C{Require host}: C{".example.com"} matches the names
        that end in C{".example.com"} (not C{example.com} itself), and
        C{"example.com"} matches C{example.com} and the names that end in
        C{".example.com"} -- only whole labels, never C{fooexample.com}
        (see L{matchesName}).

    @raise ValueError: with a one-line message naming what is wrong.
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not text")
    if text == UNIX:
        return UNIX
    if not text or text != text.strip() or any(c.isspace() for c in text):
        raise ValueError(f"{text!r}: a rule is one address, network or host name, without spaces")
    if "*" in text:
        raise ValueError(f"{text!r}: no wildcards; write a network (0.0.0.0/0, ::/0) or .domain")
    if "%" in text:
        raise ValueError(f"{text!r}: no zone ids in rules")
    if "/" in text:
        try:
            network = ipaddress.ip_network(text)
        except ValueError as e:
            if "host bits set" in str(e):
                loose = ipaddress.ip_network(text, strict=False)
                raise ValueError(f"{text!r} has host bits set; did you mean {loose}?") from None
            raise ValueError(f"{text!r} is not a network: {e}") from None
        return str(_mappedNetwork(network))
    try:
        return str(_mapped(ipaddress.ip_address(text)))
    except ValueError:
        pass
    if text.startswith(UNIX):
        raise ValueError(f"{text!r}: Unix-socket clients are allowed by 'unix:' alone")
    if text.startswith("[") or text.count(":") == 1:
        raise ValueError(f"{text!r}: a rule takes no port (and no brackets)")
    if ":" in text:
        raise ValueError(f"{text!r} is not an IP address")
    if text.startswith("."):
        return "." + _checkName(text[1:], text)
    return _checkName(text, text)


def matchesName(rule, name):
    """
    Whether the host name C{name} matches the host-name rule C{rule}, as
    Apache's C{in_domain} decides for C{Require host}: C{name} ends in
    C{rule} at a label boundary; a rule with a leading dot never matches
    the bare domain.  Both compared without case and trailing dot.

    @param rule: a host-name rule as L{checkRule} returns it.
    @param name: a host name (text).
    """
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    if rule.startswith("."):
        return name.endswith(rule)
    return name == rule or name.endswith("." + rule)


def parseServer(text):
    """
    The C{(host, port)} of a name server written C{"192.0.2.53"},
    C{"192.0.2.53:5353"}, C{"[2001:db8::53]:53"} or C{"2001:db8::53"} (a
    port only with the brackets); the port is 53 unless given.

    @raise ValueError: with a one-line message naming what is wrong.
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not text")
    host, port = text, "53"
    if text.startswith("["):
        closing = text.find("]")
        if closing < 0:
            raise ValueError(f"DNS server {text!r}: no closing bracket")
        host, rest = text[1:closing], text[closing + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"DNS server {text!r}: expected :port after the bracket")
            port = rest[1:]
        if ":" not in host:
            raise ValueError(f"DNS server {text!r}: brackets are for IPv6 addresses")
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not port.isdigit() or not port.isascii() or not 0 < int(port) < 65536:
        raise ValueError(f"DNS server {text!r}: port {port!r} is not a number from 1 to 65535")
    if "%" in host:
        raise ValueError(f"DNS server {text!r}: no zone ids")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"DNS server {text!r}: not an IP address (names cannot be used here)") from None
    return str(address), int(port)


def checkServer(text):
    """
    Check a name server written as L{parseServer} takes it, and return it
    normalized, C{"host:port"} (C{"[host]:port"} for IPv6).

    @raise ValueError: with a one-line message naming what is wrong.
    """
    host, port = parseServer(text)
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def systemResolver(reactor, servers=None, timeout=(1, 3)):
    """
    A L{twisted.names} resolver (an L{IResolver}) for L{ClientAccess}.

    @param reactor: the reactor its queries and timers use.
    @param servers: name servers as L{parseServer} takes them: queried
        alone (no C{/etc/hosts}, no C{/etc/resolv.conf}).  If L{None} or
        empty, C{/etc/hosts} then the servers of C{/etc/resolv.conf}, which
        is read again when it changes (a timer on C{reactor}).
    @param timeout: the seconds each query waits for an answer before it
        is asked again, then given up (see L{twisted.names.client.Resolver}).
    @raise ValueError: if a server is malformed.
    """
    if servers:
        pairs = [parseServer(s) for s in servers]
        return client.Resolver(servers=pairs, timeout=timeout, reactor=reactor)
    return resolve.ResolverChain(
        [
            hosts.Resolver(b"/etc/hosts"),
            client.Resolver(resolv=b"/etc/resolv.conf", timeout=timeout, reactor=reactor),
        ]
    )


def _owned(answers, name, kind):
    """
    The records of type C{kind} in C{answers} that answer for C{name}: its
    own, or those of the names it is a CNAME of, in the same answer.  A
    record for another owner is not an answer (a server may add any).
    """
    owners = {_normalName(dns.Name(name))}
    grew = True
    while grew:
        grew = False
        for record in answers:
            if record.type == dns.CNAME and _normalName(record.name) in owners:
                target = _normalName(record.payload.name)
                if target not in owners:
                    owners.add(target)
                    grew = True
    return [r for r in answers if r.type == kind and _normalName(r.name) in owners]


def _boundedTTL(ttls):
    return min(MAX_TTL, max(MIN_TTL, float(min(ttls))))


def _normalName(name):
    """
    A DNS name (L{dns.Name}) as text: lower case, without trailing dot.
    """
    text = name.name.decode("ascii", "replace").lower()
    return text[:-1] if text.endswith(".") else text


class _Lookup:
    """
    One double-reverse lookup of one address: its PTR names that match a
    rule, then each of them forward until one has the address.  It ends
    once (L{ClientAccess._settle}): with a verdict, on its timeout (the
    query in flight is then cancelled), or on an error.

    @ivar waiters: the L{Deferred}s given out for its verdict.
    """

    def __init__(self, access, address):
        self._access = access
        self.address = address
        self.waiters = []
        self.done = False
        self._pending = None
        self._timer = None
        self._names = []
        self._ttls = []
        self._definite = True

    def start(self, clock, timeout):
        self._timer = clock.callLater(timeout, self._timedOut)
        resolver = self._access.resolver
        if resolver is None:
            _log.error("allow: host-name rules {rules} but no resolver", rules=self._access.describe())
            self._end(False, FAILURE_TTL)
            return
        self._ask(resolver.lookupPointer, self.address.reverse_pointer, self._gotPointers, self._failed)

    def _ask(self, method, name, answered, failed):
        try:
            d = method(name)
        except Exception:
            d = fail()
        self._pending = d
        d.addCallbacks(self._live(answered), self._live(failed))
        d.addErrback(self._unexpected)

    def _live(self, f):
        def call(result):
            if not self.done:
                return f(result)
            return None

        return call

    def _failed(self, reason):
        if not reason.check(*_EXPECTED):
            return reason
        self._end(False, FAILURE_TTL)
        return None

    def _unexpected(self, reason):
        _log.failure(
            "allow: checking {address} by DNS failed", reason, address=str(self.address)
        )
        self._end(False, FAILURE_TTL)

    def _gotPointers(self, result):
        answers = result[0]
        pointers = _owned(answers, self.address.reverse_pointer, dns.PTR)
        if not pointers:
            self._end(False, FAILURE_TTL)
            return
        self._ttls = [r.ttl for r in answers if r.type in (dns.PTR, dns.CNAME)]
        names = []
        for record in pointers:
            name = _normalName(record.payload.name)
            if name not in names and self._access._nameAllowed(name):
                names.append(name)
        if not names:
            self._end(False, _boundedTTL(self._ttls))
            return
        self._names = names[:MAX_NAMES]
        self._nextName()

    def _nextName(self):
        if not self._names:
            self._end(False, _boundedTTL(self._ttls) if self._definite else FAILURE_TTL)
            return
        name = self._current = self._names.pop(0)
        resolver = self._access.resolver
        if self.address.version == 4:
            method = resolver.lookupAddress
        else:
            method = resolver.lookupIPV6Address
        self._ask(method, name, self._gotAddresses, self._forwardFailed)

    def _gotAddresses(self, result):
        kind = dns.A if self.address.version == 4 else dns.AAAA
        answers = result[0]
        found = _owned(answers, self._current, kind)
        if not found:
            self._definite = False
        elif any(ipaddress.ip_address(r.payload.address) == self.address for r in found):
            used = [r.ttl for r in answers if r.type in (kind, dns.CNAME)]
            self._end(True, _boundedTTL(self._ttls + used))
            return
        else:
            self._ttls.extend(r.ttl for r in found)
        self._nextName()

    def _forwardFailed(self, reason):
        if not reason.check(*_EXPECTED):
            return reason
        self._definite = False
        self._nextName()
        return None

    def _timedOut(self):
        self._timer = None
        if self.done:
            return
        _log.info("allow: DNS lookups for {address} timed out", address=str(self.address))
        pending = self._pending
        self._end(False, FAILURE_TTL)
        if pending is not None and not pending.called:
            pending.cancel()

    def _end(self, verdict, ttl):
        if self.done:
            return
        self.done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._access._settle(self, verdict, ttl)


class ClientAccess:
    """
    Whether a client may use a route, by its allow rules (L{checkRule}).

    Address and network rules decide at once.  Host-name rules need DNS
    (L{_Lookup}): the PTR names of the client's address that match a rule
    are looked up forward (A for IPv4, AAAA for IPv6), and the client is
    allowed if one of the answers is its address -- Apache's double-reverse
    check, so that whoever controls the PTR records of an address cannot
    claim a name they do not own.

    Verdicts from DNS are cached per address for the smallest TTL of the
    records they rest on, kept within L{MIN_TTL} and L{MAX_TTL}; a denial
    because DNS failed, timed out or had no such record, for L{FAILURE_TTL}.
    At most C{maxEntries} verdicts are kept (the oldest go first), and at
    most C{maxEntries} lookups run at once: past that, clients needing one
    are denied, uncached.  Concurrent checks of one address share its
    lookup.

    An IPv4-mapped IPv6 address (C{::ffff:192.0.2.7}) is checked as its
    IPv4 address.  No rules: everyone is denied.

    @ivar needsResolver: whether a rule is a host name (without a
        C{resolver} such rules deny everyone, with an error logged).
    @ivar resolver: the L{IResolver}, or L{None}.
    """

    def __init__(self, rules, resolver, clock, timeout=5.0, maxEntries=10000):
        """
        @param rules: allow rules as L{checkRule} takes them.
        @param resolver: an L{IResolver} (L{systemResolver}), or L{None}
            if no rule is a host name.
        @param clock: the reactor or a clock, for the time and timeouts.
        @param timeout: seconds after which a DNS check that has not
            finished denies (and its query in flight is cancelled).
        @param maxEntries: the most verdicts cached, and lookups at once.
        @raise ValueError: if a rule is malformed.
        """
        if maxEntries < 1:
            raise ValueError(f"maxEntries must be at least 1, not {maxEntries!r}")
        normalized = []
        for rule in rules:
            rule = checkRule(rule)
            if rule not in normalized:
                normalized.append(rule)
        self._rules = normalized
        self._unix = UNIX in normalized
        self._networks = []
        self._names = []
        for rule in normalized:
            if rule == UNIX:
                continue
            try:
                self._networks.append(ipaddress.ip_network(rule))
            except ValueError:
                self._names.append(rule)
        self.needsResolver = bool(self._names)
        self.resolver = resolver
        self._clock = clock
        self._timeout = timeout
        self._maxEntries = maxEntries
        #: Address (text) -> C{(verdict, expiry)}, oldest first.
        self._cache = OrderedDict()
        #: Address (text) -> its L{_Lookup}.
        self._inFlight = {}
        self._saturated = False

    def describe(self):
        """
        The rules, normalized, for people: C{"127.0.0.0/8, .example.com"}.
        """
        return ", ".join(self._rules)

    def check(self, address):
        """
        Whether the client at C{address} may use the route.

        @param address: its IP address as text, or L{None} for a client on
            a Unix socket.
        @return: C{True} or C{False} when the address rules or the cache
            decide, else a L{Deferred} that fires with C{True} or C{False}
            (never with a failure, unless the caller cancels it).
        """
        if address is None:
            return self._unix
        try:
            ip = _mapped(ipaddress.ip_address(address.split("%", 1)[0]))
        except (ValueError, AttributeError, TypeError):
            _log.warn("allow: {address!r} is not an IP address; denied", address=address)
            return False
        if any(ip in network for network in self._networks):
            return True
        if not self._names:
            return False
        key = str(ip)
        cached = self._cache.get(key)
        if cached is not None:
            if self._clock.seconds() < cached[1]:
                return cached[0]
            del self._cache[key]
        lookup = self._inFlight.get(key)
        if lookup is None:
            if len(self._inFlight) >= self._maxEntries:
                if not self._saturated:
                    self._saturated = True
                    _log.warn("allow: {n} DNS checks already running; denying more", n=len(self._inFlight))
                return False
            lookup = self._inFlight[key] = _Lookup(self, ip)
            waiter = Deferred()
            lookup.waiters.append(waiter)
            lookup.start(self._clock, self._timeout)
            return waiter
        waiter = Deferred()
        lookup.waiters.append(waiter)
        return waiter

    def _nameAllowed(self, name):
        return any(matchesName(rule, name) for rule in self._names)

    def _settle(self, lookup, verdict, ttl):
        key = str(lookup.address)
        if self._inFlight.get(key) is lookup:
            del self._inFlight[key]
        if len(self._inFlight) < self._maxEntries:
            self._saturated = False
        self._cache.pop(key, None)
        while len(self._cache) >= self._maxEntries:
            self._cache.popitem(last=False)
        self._cache[key] = (verdict, self._clock.seconds() + ttl)
        waiters, lookup.waiters = lookup.waiters, []
        for waiter in waiters:
            waiter.callback(verdict)
