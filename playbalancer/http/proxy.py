"""
What the exchanges of one balancer share, whichever client face they come
from: the balancer, the member connection pools, the header settings and
the request ids.
"""

from __future__ import annotations

import os

from playbalancer.flow import BUFFER_SIZE
from playbalancer.http.headers import LocationRewriter
from playbalancer.http.memberaddresses import MemberAddresses, aliasBases, baseURLs
from playbalancer.http.trust import TrustedProxies


def _memberBases(member, addresses):
    """
    The base URLs (bytes) that name C{member} in a redirect: its URL (and
    without the port when it is the scheme's default), the same with each
    address its host name resolves to (from L{MemberAddresses}
    C{addresses}), and its C{aliases}.
    """
    bases = baseURLs(member.scheme, member.host, member.port, member.basePath)
    bases.extend(addresses.basesFor(member))
    for alias in member.aliases:
        bases.extend(aliasBases(alias))
    return bases


class HTTPProxy:
    """
    What every exchange of one listener shares: its balancer, the member
    connection pools and the settings.

    @param pools: a L{playbalancer.http.upstream.MemberPools}.
    @param preserveHost: send the client's I{Host} (Apache's
        C{ProxyPreserveHost On}); otherwise the member's own.
    @param timeout: seconds a member may take to start answering once it
        has the whole request, and may stay silent mid-response.
    @param trustedProxies: a L{TrustedProxies} (or the networks of the
        proxies in front of us whose X-Forwarded-For / Forwarded we extend).
    @param aliases: other base URLs (text) whose locations are rewritten as
        the members' are (a route's extra C{ProxyPassReverse}).
    @param routeName: the name of the route it serves, for the access log
        and metrics (L{None}: not behind a route).
    @param addresses: the L{MemberAddresses} that resolves the members'
        host names; by default one on C{clock} (the reactor's
        C{nameResolver}).  Resolution starts here, so that the first
        redirect is already covered.
    """

    def __init__(
        self,
        balancer,
        pools,
        clock,
        preserveHost=True,
        timeout=60.0,
        trustedProxies=(),
        underscoresInHeaders=False,
        bufferSize=BUFFER_SIZE,
        aliases=(),
        routeName=None,
        addresses=None,
    ):
        self.balancer = balancer
        self.pools = pools
        self.clock = clock
        self.sweeper = pools.sweeper
        self.preserveHost = preserveHost
        self.timeout = timeout
        if not isinstance(trustedProxies, TrustedProxies):
            trustedProxies = TrustedProxies(trustedProxies)
        self.trustedProxies = trustedProxies
        #: Whether any proxy is trusted (checked for every request).
        self.trusting = bool(trustedProxies.networks)
        #: C{trusts(address)}: whether the client at C{address} (text) is a
        #: trusted proxy; C{originOf(request)}: the client the trusted
        #: proxies in front name for C{request} (see L{TrustedProxies}).
        self.trusts = trustedProxies.trusts
        self.originOf = trustedProxies.originOf
        self.aliases = tuple(aliases)
        self.routeName = routeName
        #: The L{playbalancer.http.routing.BalancerTarget} it serves (which
        #: counts the responses), or L{None}.
        self.routeTarget = None
        self.underscoresInHeaders = underscoresInHeaders
        #: Bytes that may wait for a slow client (or member) before the
        #: other side is paused.
        self.bufferSize = bufferSize
        self._rewriter = None
        self.addresses = MemberAddresses(clock) if addresses is None else addresses
        self._idPrefix = os.urandom(6).hex().encode("ascii") + b"-"
        self._idCounter = 0
        self.locationRewriter()

    def nextRequestId(self):
        """
        A new request id, unique in this process and across processes.
        """
        self._idCounter += 1
        return self._idPrefix + b"%x" % self._idCounter

    def locationRewriter(self):
        """
        The rewriter for the balancer's current members (L{_memberBases})
        and the route's C{aliases}, rebuilt only when the members or their
        addresses change.  Called for every response with a location
        header: cheap when nothing changed.
        """
        members = tuple(self.balancer.members)
        addresses = self.addresses
        rewriter = self._rewriter
        if rewriter is None or rewriter[0] != members:
            addresses.watch(members)
        else:
            addresses.refreshIfDue()
            if rewriter[1] == addresses.version:
                return rewriter[2]
        bases = []
        for member in members:
            bases.extend(_memberBases(member, addresses))
        for alias in self.aliases:
            bases.extend(aliasBases(alias))
        self._rewriter = (members, addresses.version, LocationRewriter(bases))
        return self._rewriter[2]
