"""
What the exchanges of one balancer share, whichever client face they come
from: the balancer, the member connection pools, the header settings and
the request ids.
"""

from __future__ import annotations

import ipaddress
import os

from playbalancer.flow import BUFFER_SIZE
from playbalancer.http.headers import LocationRewriter


def _memberBases(member):
    hostText = member.host if ":" not in member.host else f"[{member.host}]"
    scheme = member.scheme
    bases = [member.origin + member.basePath]
    if member.port == {"http": 80, "https": 443}.get(scheme):
        bases.append(f"{scheme}://{hostText}".encode("ascii") + member.basePath)
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
    @param trustedProxies: the networks (L{ipaddress} networks) of proxies
        in front of us whose X-Forwarded-For / Forwarded we extend.
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
    ):
        self.balancer = balancer
        self.pools = pools
        self.clock = clock
        self.sweeper = pools.sweeper
        self.preserveHost = preserveHost
        self.timeout = timeout
        self.trustedProxies = tuple(trustedProxies)
        self.underscoresInHeaders = underscoresInHeaders
        #: Bytes that may wait for a slow client (or member) before the
        #: other side is paused.
        self.bufferSize = bufferSize
        self._rewriter = None
        self._trusted = {}
        self._idPrefix = os.urandom(6).hex().encode("ascii") + b"-"
        self._idCounter = 0

    def nextRequestId(self):
        """
        A new request id, unique in this process and across processes.
        """
        self._idCounter += 1
        return self._idPrefix + b"%x" % self._idCounter

    def trusts(self, address):
        """
        Whether the client at C{address} (text) is a trusted proxy.
        """
        if not self.trustedProxies:
            return False
        known = self._trusted.get(address)
        if known is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                known = False
            else:
                known = any(ip in network for network in self.trustedProxies)
            if len(self._trusted) > 10000:
                self._trusted.clear()
            self._trusted[address] = known
        return known

    def originOf(self, request):
        """
        The client that trusted proxies in front of us name for C{request}
        (its peer being one): the last address in its I{X-Forwarded-For}
        that is not a trusted proxy itself (nginx's C{real_ip_recursive}),
        or L{None} when there is none to believe.
        """
        named = []
        for name, value in request.headers:
            if name.lower() == b"x-forwarded-for":
                named.extend(part.strip() for part in value.split(b","))
        for raw in reversed(named):
            try:
                address = str(ipaddress.ip_address(raw.decode("ascii")))
            except (UnicodeDecodeError, ValueError):
                return None
            if not self.trusts(address):
                return address
        return None

    def locationRewriter(self):
        """
        The rewriter for the balancer's current members (rebuilt only when
        they change).
        """
        members = tuple(self.balancer.members)
        if self._rewriter is None or self._rewriter[0] != members:
            bases = []
            for member in members:
                bases.extend(_memberBases(member))
            self._rewriter = (members, LocationRewriter(bases))
        return self._rewriter[1]
