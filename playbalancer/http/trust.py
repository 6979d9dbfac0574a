"""
The proxies in front of a listener that it trusts to name the client
(their I{X-Forwarded-For}), and the client they name.
"""

from __future__ import annotations

import ipaddress


class TrustedProxies:
    """
    @param networks: the networks (L{ipaddress} networks) of the proxies in
        front of us whose I{X-Forwarded-For} / I{Forwarded} we believe.
    """

    def __init__(self, networks=()):
        self.networks = tuple(networks)
        self._known = {}

    def __bool__(self):
        return bool(self.networks)

    def trusts(self, address):
        """
        Whether the client at C{address} (text) is a trusted proxy.
        """
        if not self.networks:
            return False
        known = self._known.get(address)
        if known is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                known = False
            else:
                known = any(ip in network for network in self.networks)
            if len(self._known) > 10000:
                self._known.clear()
            self._known[address] = known
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
