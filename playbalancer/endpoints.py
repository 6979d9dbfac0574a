"""
Client endpoints for members, cached per address.
"""

from __future__ import annotations

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)


class MemberEndpoints:
    """
    One client endpoint per C{(scheme, host, port)}, built once: members
    are few and fixed.  IP literals get a plain TCP endpoint (no name
    resolution at all); https members get TLS, checked as C{tls} says (a
    L{playbalancer.membertls.MemberTLS}; by default the system's
    authorities).
    """

    def __init__(self, reactor, connectTimeout, tls=None):
        self._reactor = reactor
        self._connectTimeout = connectTimeout
        self._endpoints = {}
        if tls is None:
            from playbalancer.membertls import SYSTEM as tls
        self._tls = tls

    def forMember(self, member):
        """
        The endpoint for C{member}.
        """
        return self._cached(
            member.scheme.encode("ascii"), member.host.encode("ascii"), member.port
        )

    def _cached(self, scheme, host, port):
        key = (scheme, host, port)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = self._endpoints[key] = self._build(*key)
        return endpoint

    def _build(self, scheme, host, port):
        hostText = host.decode("ascii")
        if isIPAddress(hostText):
            endpoint = TCP4ClientEndpoint(
                self._reactor, hostText, port, timeout=self._connectTimeout
            )
        elif isIPv6Address(hostText):
            endpoint = TCP6ClientEndpoint(
                self._reactor, hostText, port, timeout=self._connectTimeout
            )
        else:
            endpoint = HostnameEndpoint(
                self._reactor, hostText, port, timeout=self._connectTimeout
            )
        if scheme == b"https":
            endpoint = wrapClientTLS(self._tls.creatorFor(hostText), endpoint)
        return endpoint
