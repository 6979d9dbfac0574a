"""
The other names of a member in its redirects: the addresses its host name
resolves to (a member configured as C{http://localhost:9999} may well send
C{Location: http://127.0.0.1:9999/}) and the base URLs configured as its
aliases, each written every way it may appear in a C{Location}.
"""

from __future__ import annotations

import ipaddress

from hyperlink import URL
from zope.interface import implementer

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IResolutionReceiver
from twisted.logger import Logger

#: Seconds after which the watched names are resolved again, the next time
#: the addresses are used (L{MemberAddresses.refreshIfDue}).
REFRESH_INTERVAL = 60.0

_DEFAULT_PORTS = {"http": 80, "https": 443}

_log = Logger()


def baseURLs(scheme, host, port, basePath):
    """
    The ways a base URL may be written: C{scheme://host:port} plus
    C{basePath}, and without the port when it is the scheme's default.

    @param host: a name or an address (text); an IPv6 address is put in
        brackets, its zone id escaped (RFC 6874).
    @param basePath: the path prefix as bytes, without a trailing slash.
    @return: a list of bytes.
    """
    if ":" in host:
        host = "[" + host.replace("%", "%25") + "]"
    bases = [f"{scheme}://{host}:{port}".encode("ascii") + basePath]
    if port == _DEFAULT_PORTS.get(scheme):
        bases.append(f"{scheme}://{host}".encode("ascii") + basePath)
    return bases


def aliasBases(url):
    """
    The L{baseURLs} of an alias given as a base URL (text), such as
    C{"http://app.internal:9999/prefix"}, as a member's URL is written.
    """
    parsed = URL.from_text(url)
    basePath = "/".join(("",) + tuple(s for s in parsed.path if s)).encode("ascii")
    return baseURLs(parsed.scheme, parsed.host, parsed.port, basePath)


def _isAddress(host):
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@implementer(IResolutionReceiver)
class _Resolution:
    """
    Collects the addresses of one resolution of C{name} and hands them to
    its L{MemberAddresses} when it completes.
    """

    def __init__(self, owner, name):
        self._owner = owner
        self._name = name
        self._found = []

    def resolutionBegan(self, resolutionInProgress):
        pass

    def addressResolved(self, address):
        if address.host not in self._found:
            self._found.append(address.host)

    def resolutionComplete(self):
        self._owner._resolved(self, self._name, self._found)


class MemberAddresses:
    """
    The addresses the host names of a balancer's members resolve to, kept
    without blocking: names are resolved with an L{IHostnameResolver}
    (by default the reactor's, which member connections use too), at most
    one resolution in flight per name, and the answers cached.

    The names of the members last given to L{watch} are resolved again
    every C{interval} seconds (L{REFRESH_INTERVAL} by default), or rather
    on the first use (L{refreshIfDue}) after that.  An answer with no address (the
    resolver's way to fail) leaves what was known before, if anything.  A
    resolution unanswered after the interval no longer blocks another,
    and its late answer is dropped.  Members named by an address need no
    resolution.

    Share one only among the proxies of one balancer: L{watch} replaces
    the names watched.

    @ivar version: a number that changes whenever the known addresses of
        some name do (what was built from them is then out of date).
    """

    def __init__(self, clock, resolver=None, interval=REFRESH_INTERVAL):
        """
        @param clock: the reactor (or a clock), which gives the time.
        @param resolver: the L{IHostnameResolver}; by default the clock's
            C{nameResolver}, if it has one (the reactor does): without
            either, nothing is resolved.
        @param interval: seconds between two resolutions of a name.
        """
        self.version = 0
        self._clock = clock
        self._resolver = resolver
        self._interval = interval
        self._watched = frozenset()
        #: Name -> its addresses (text), sorted.
        self._addresses = {}
        #: Name -> C{(resolution, started)} of the one in flight.
        self._inFlight = {}
        self._nextRound = clock.seconds() + interval
        self._waiters = []

    def watch(self, members):
        """
        Keep the host names of C{members} resolved (those new here are
        resolved now), and forget any other.
        """
        names = frozenset(m.host for m in members if not _isAddress(m.host))
        for name in set(self._addresses) - names:
            del self._addresses[name]
        self._watched = names
        for name in names:
            if name not in self._addresses:
                self._resolve(name)

    def refreshIfDue(self):
        """
        Resolve the watched names again if the refresh interval has passed
        since the last round; cheap otherwise.
        """
        now = self._clock.seconds()
        if now < self._nextRound:
            return
        self._nextRound = now + self._interval
        for name in self._watched:
            self._resolve(name)

    def basesFor(self, member):
        """
        C{member}'s base URL with each address its host name is known to
        resolve to in place of that name (see L{baseURLs}), as bytes: none
        for a member named by its address, or a name not resolved (yet).
        """
        return [
            base
            for address in self._addresses.get(member.host, ())
            for base in baseURLs(member.scheme, address, member.port, member.basePath)
        ]

    def settled(self):
        """
        A L{Deferred} that fires (with L{None}) once no resolution is in
        flight.
        """
        if not self._inFlight:
            return succeed(None)
        d = Deferred()
        self._waiters.append(d)
        return d

    def _resolve(self, name):
        now = self._clock.seconds()
        current = self._inFlight.get(name)
        if current is not None and now - current[1] < self._interval:
            return
        resolver = self._resolver
        if resolver is None:
            resolver = getattr(self._clock, "nameResolver", None)
            if resolver is None:
                return
        resolution = _Resolution(self, name)
        self._inFlight[name] = (resolution, now)
        try:
            resolver.resolveHostName(resolution, name)
        except Exception:
            _log.failure("Resolving member host name {name!r}", name=name)
            self._resolved(resolution, name, [])

    def _resolved(self, resolution, name, found):
        current = self._inFlight.get(name)
        if current is None or current[0] is not resolution:
            return
        del self._inFlight[name]
        addresses = tuple(sorted(found))
        if name in self._watched and addresses:
            if self._addresses.get(name) != addresses:
                self._addresses[name] = addresses
                self.version += 1
        if not self._inFlight:
            waiters, self._waiters = self._waiters, []
            for d in waiters:
                d.callback(None)
