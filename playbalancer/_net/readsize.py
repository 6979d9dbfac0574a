"""
Socket read sizes that follow the traffic.

Twisted reads C{transport.bufferSize} bytes at a time, and a read first
allocates a buffer of that size.  Large reads halve the CPU that bulk
bodies cost (1 MiB bodies: about 800 against 1,300-1,600 MiB per
CPU-second with 128 KiB and 256 KiB reads on CPython), but on PyPy a
256 KiB buffer costs about 15-30 µs per read even when 200 bytes arrive.
So a connection reads L{SMALL} at a time until a read fills its buffer,
then L{LARGE} until a read comes in under L{SMALL} again.  Only plain
socket transports adapt (L{playbalancer._net.rawsocket}): under TLS the bytes a
protocol receives are not what one read took from the socket.
"""

from __future__ import annotations

from playbalancer._net.internals import readSize, setReadSize
from playbalancer._net.rawsocket import socketTransport

__all__ = ["SMALL", "LARGE", "FIRST", "followReads", "startSmall"]

#: The read size of a connection carrying small messages (Twisted's own).
SMALL = 65536

#: The read size of a connection moving bulk data.
LARGE = 262144

#: A member connection's read size at the start of each response: what
#: one read can put in a slow client's buffer before it is paused.
FIRST = 16384


def followReads(transport, received, keepsUp=None):
    """
    Adjust C{transport}'s read size after a read of C{received} bytes.

    @param keepsUp: L{None}, or a callable saying whether the other side
        of a relay keeps up with what these reads bring.  While it does
        not, reads stay at L{FIRST} bytes, so that one read cannot put
        much into a slow peer's buffer.  (Asked only of reads of
        L{FIRST} bytes or more.)
    """
    transport = socketTransport(transport)
    if transport is None:
        return  # TLS, or not a socket
    size = readSize(transport)
    if keepsUp is not None and received >= FIRST and not keepsUp():
        setReadSize(transport, FIRST)
        return
    if received >= size:
        if size < LARGE:
            setReadSize(transport, LARGE)
    elif received < SMALL and size > SMALL:
        setReadSize(transport, SMALL)


def startSmall(transport):
    """
    Read L{FIRST} bytes at a time from now on, until the reads show bulk
    data to a peer that keeps up.
    """
    transport = socketTransport(transport)
    if transport is not None:
        setReadSize(transport, FIRST)
