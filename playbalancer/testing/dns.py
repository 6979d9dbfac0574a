"""
A small DNS server for tests: PTR, A and AAAA records from dicts
(L{MemoryAuthority}), served over UDP on 127.0.0.1 (L{listenDNS}).
"""

from __future__ import annotations

import ipaddress

from twisted.internet import defer
from twisted.names import common, dns, error, server

__all__ = ["MemoryAuthority", "listenDNS"]


def _text(name):
    """
    A DNS name (bytes or text) as text: lower case, without trailing dot.
    """
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    name = name.lower()
    return name[:-1] if name.endswith(".") else name


class MemoryAuthority(common.ResolverBase):
    """
    An L{IResolver} answering from dicts, at once: PTR records for
    addresses, A and AAAA records for names; a name it knows with no record
    of the type asked gets an empty answer, any other fails with
    L{error.DNSNameError} (NXDOMAIN).  The dicts are kept, not copied:
    change them, or C{ttl}, to change later answers.

    @ivar queries: C{(type, name)} of each query answered, in order, as
        C{("PTR", "7.2.0.192.in-addr.arpa")}.
    """

    def __init__(self, pointers=None, addresses=None, ttl=60, ttls=None):
        """
        @param pointers: an IP address (text) -> the names it points to.
        @param addresses: a name -> its IP addresses (text; IPv4 ones are
            served as A records, IPv6 ones as AAAA).
        @param ttl: the TTL of every record, in seconds...
        @param ttls: ...but for those of the addresses and names here
            (address or name -> TTL).
        """
        common.ResolverBase.__init__(self)
        self.pointers = {} if pointers is None else pointers
        self.addresses = {} if addresses is None else addresses
        self.ttl = ttl
        self.ttls = {} if ttls is None else ttls
        self.queries = []

    def _ttlOf(self, key):
        return self.ttls.get(key, self.ttl)

    def _lookup(self, name, cls, type, timeout):
        asked = _text(name)
        self.queries.append((dns.QUERY_TYPES.get(type, str(type)), asked))
        known = False
        records = []
        for address, targets in self.pointers.items():
            if ipaddress.ip_address(address).reverse_pointer == asked:
                known = True
                if type == dns.PTR:
                    ttl = self._ttlOf(address)
                    records.extend(
                        dns.RRHeader(name, dns.PTR, dns.IN, ttl, dns.Record_PTR(target, ttl), auth=True)
                        for target in targets
                    )
        for host, found in self.addresses.items():
            if _text(host) == asked:
                known = True
                ttl = self._ttlOf(host)
                for address in found:
                    version = ipaddress.ip_address(address).version
                    if type == dns.A and version == 4:
                        payload = dns.Record_A(address, ttl)
                    elif type == dns.AAAA and version == 6:
                        payload = dns.Record_AAAA(address, ttl)
                    else:
                        continue
                    records.append(dns.RRHeader(name, type, dns.IN, ttl, payload, auth=True))
        if not known:
            return defer.fail(error.DNSNameError(asked))
        return defer.succeed((records, [], []))


def listenDNS(reactor, pointers=None, addresses=None, ttl=60, authority=None):
    """
    Serve DNS over UDP on 127.0.0.1, on a port of the system's choosing.

    @param pointers: as L{MemoryAuthority} takes them, like
        C{{"127.0.0.1": ["app.example.test"]}}.
    @param addresses: likewise, C{{"app.example.test": ["127.0.0.1"]}}.
    @param ttl: the TTL of the records.
    @param authority: the L{MemoryAuthority} (or other L{IResolver}) to
        serve instead of one made from C{pointers}, C{addresses} and
        C{ttl}, to see or change what is served.
    @return: C{(port, "127.0.0.1:PORT")}: stop serving with
        C{port.stopListening()}; the text is a server for
        L{playbalancer.access.systemResolver}.
    """
    if authority is None:
        authority = MemoryAuthority(pointers, addresses, ttl)
    factory = server.DNSServerFactory(authorities=[authority])
    factory.noisy = False
    protocol = dns.DNSDatagramProtocol(factory)
    protocol.noisy = False
    port = reactor.listenUDP(0, protocol, interface="127.0.0.1")
    return port, f"127.0.0.1:{port.getHost().port}"
