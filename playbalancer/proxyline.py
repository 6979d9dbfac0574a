"""
Reading the PROXY protocol header (HAProxy's, versions 1 and 2) that a
balancer in front of us sends first on a connection, to learn the real
client address.
"""

from __future__ import annotations

import ipaddress
import struct

from twisted.internet.address import IPv4Address, IPv6Address

_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_MAX = 107


class ProxyHeaderError(ValueError):
    """
    The connection does not start with a valid PROXY header.
    """


def _v1(line):
    parts = line.split(b" ")
    if parts[0] != b"PROXY" or len(parts) < 2:
        raise ProxyHeaderError("not a PROXY line")
    if parts[1] == b"UNKNOWN":
        return None
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError("a malformed PROXY line")
    try:
        source = ipaddress.ip_address(parts[2].decode("ascii"))
        ipaddress.ip_address(parts[3].decode("ascii"))
        port = int(parts[4])
        if not (parts[4].isdigit() and parts[5].isdigit() and 0 <= port <= 65535):
            raise ValueError(port)
    except ValueError:
        raise ProxyHeaderError("a malformed PROXY line")
    if (source.version == 4) != (parts[1] == b"TCP4"):
        raise ProxyHeaderError("a PROXY line whose address does not match its family")
    kind = IPv4Address if source.version == 4 else IPv6Address
    return kind("TCP", str(source), port)


def _v2(data):
    command = data[12]
    if command >> 4 != 2:
        raise ProxyHeaderError("an unknown PROXY protocol version")
    family = data[13]
    (length,) = struct.unpack("!H", data[14:16])
    if len(data) < 16 + length:
        return None, None
    body = data[16 : 16 + length]
    consumed = 16 + length
    if command & 0x0F == 0:  # LOCAL: the sender's own connection
        return consumed, None
    if family == 0x11 and length >= 12:
        host = str(ipaddress.IPv4Address(body[0:4]))
        (port,) = struct.unpack("!H", body[8:10])
        return consumed, IPv4Address("TCP", host, port)
    if family == 0x21 and length >= 36:
        host = str(ipaddress.IPv6Address(body[0:16]))
        (port,) = struct.unpack("!H", body[32:34])
        return consumed, IPv6Address("TCP", host, port)
    return consumed, None


def parseProxyHeader(data):
    """
    Read a PROXY header at the start of C{data}.

    @raise ProxyHeaderError: C{data} cannot start with a PROXY header.
    @return: L{None} while more bytes are needed; else C{(consumed,
        address)}, the address being L{None} when the header names none
        (C{UNKNOWN}, C{LOCAL}, other families).
    """
    if data[:1] == b"\r":
        if len(data) < 16:
            if not _V2_SIGNATURE.startswith(data[:12]):
                raise ProxyHeaderError("not a PROXY header")
            return None
        if data[:12] != _V2_SIGNATURE:
            raise ProxyHeaderError("not a PROXY header")
        consumed, address = _v2(data)
        return None if consumed is None else (consumed, address)
    if not b"PROXY "[: len(data)] == data[:6]:
        raise ProxyHeaderError("not a PROXY header")
    end = data.find(b"\r\n", 0, _V1_MAX + 1)
    if end == -1:
        if len(data) > _V1_MAX:
            raise ProxyHeaderError("a PROXY line that is too long")
        return None
    return end + 2, _v1(data[:end])
