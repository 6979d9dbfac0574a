"""
Which transport, if any, a shortcut may treat as a plain socket.

The shortcuts in L{playbalancer._net.sendnow} and
L{playbalancer._net.readsize}, and the send sizes set on connections, use
attributes of Twisted's socket transports
(C{twisted.internet.tcp.Connection}; the private ones are named in
L{playbalancer._net.internals}).  A protocol may instead
sit on a wrapper: TLS (C{TLSMemoryBIOProtocol}), the PROXY protocol
reader, a test's C{WrappingFactory}.  Wrappers forward every attribute they
lack to the transport underneath, so C{transport.socket} on a TLS
connection is the raw TCP socket, and bytes sent to it skip encryption.
L{socketTransport} looks through only the wrappers that pass writes on
unchanged, and answers L{None} for anything else.
"""

from __future__ import annotations

import struct

try:
    import fcntl
    import sys

    # Linux's SIOCOUTQNSD (linux/sockios.h): bytes in a socket's send queue
    # not yet sent (SIOCOUTQ would count those in flight, unacknowledged,
    # too: a fast peer far away would look slow).
    _NOT_SENT = 0x894B if sys.platform.startswith("linux") else None
    # Linux's SIOCOUTQ: every byte in the send queue, sent or not.
    _QUEUED = 0x5411 if sys.platform.startswith("linux") else None
except ImportError:  # not a Unix
    fcntl = None
    _NOT_SENT = _QUEUED = None

import socket

from twisted.internet.interfaces import INegotiated
from twisted.internet.tcp import Connection
from twisted.protocols.policies import ProtocolWrapper

from playbalancer._net import internals

__all__ = [
    "socketTransport",
    "setSendLimit",
    "canHalfClose",
    "closeWhenSent",
    "closeWriting",
    "holdProducerUntilDrained",
    "kernelNotSent",
    "kernelRoom",
    "forgetPause",
    "unsentBytes",
]

_PASS_WRITE = ProtocolWrapper.write
_PASS_SEQUENCE = ProtocolWrapper.writeSequence


def socketTransport(transport):
    """
    The socket transport that bytes written to C{transport} reach
    unchanged, or L{None} (TLS and any other wrapper that changes them).
    """
    while isinstance(transport, ProtocolWrapper):
        kind = type(transport)
        if kind.write is not _PASS_WRITE or kind.writeSequence is not _PASS_SEQUENCE:
            return None
        transport = transport.transport
    if isinstance(transport, Connection) and not transport.TLS:
        return transport
    return None


#: The most bytes handed to the kernel in one send by a connection set up
#: for throughput (Twisted's is 128 KiB).
SEND_LIMIT = 1 << 20


def forThroughput(transport):
    """
    Set C{transport} up to carry traffic fast: no Nagle delay where it is a
    TCP connection (TLS included), and sends of up to L{SEND_LIMIT} bytes
    where it is a plain socket.
    """
    try:
        transport.setTcpNoDelay(True)
    except (AttributeError, OSError):
        pass
    setSendLimit(transport, SEND_LIMIT)


def setSendLimit(transport, limit):
    """
    Let C{transport} hand up to C{limit} bytes to the kernel in one send
    (Twisted's C{SEND_LIMIT}, 128 KiB), when it is a plain socket.
    """
    transport = socketTransport(transport)
    if transport is not None:
        internals.setSendLimit(transport, limit)


def canHalfClose(transport):
    """
    Whether C{transport} can stop sending and go on receiving: a TCP
    half-close.  Not on TLS, where a write-side shutdown would skip the
    close alert (the peer could not tell an end from a truncation).
    """
    return not INegotiated.providedBy(transport) and hasattr(transport, "loseWriteConnection")


def closeWhenSent(transport):
    """
    Close C{transport} once what was written has gone out.  A producer
    registered on it (the other side of a relay) is let go first: TLS
    waits for its producer to unregister before it sends its close alert.
    """
    transport.unregisterProducer()
    transport.loseConnection()


def closeWriting(transport):
    """
    Say we are done sending: a TCP half-close where L{canHalfClose}, else
    a whole, clean close (L{closeWhenSent}).
    """
    if canHalfClose(transport):
        transport.loseWriteConnection()
    else:
        closeWhenSent(transport)


def holdProducerUntilDrained(transport):
    """
    Pause the producer registered on C{transport} now, before Twisted's own
    mark (its read size, up to 256 KiB here) is reached; Twisted resumes it
    once the write buffer has drained, as when it paused it itself.  Only
    on a plain socket transport (TLS keeps Twisted's mark).

    @return: whether it was paused here.
    """
    transport = socketTransport(transport)
    if transport is None or transport.producer is None or transport.producerPaused:
        return False
    if not transport.streamingProducer:
        return False
    transport.producerPaused = True
    transport.producer.pauseProducing()
    return True


def _socketUnder(transport):
    """
    The socket transport under any wrappers, TLS included, or L{None}.
    """
    while isinstance(transport, ProtocolWrapper):
        transport = transport.transport
    return transport if isinstance(transport, Connection) else None


def kernelNotSent(transport):
    """
    Bytes in the kernel's send queue of C{transport}'s socket that it has
    not sent yet (the peer's window is closed, or the network is slower):
    Linux's C{SIOCOUTQNSD}.  0 where that cannot be read.
    """
    connection = _socketUnder(transport)
    if connection is None or _NOT_SENT is None:
        return 0
    try:
        answer = fcntl.ioctl(connection.fileno(), _NOT_SENT, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return struct.unpack("i", answer)[0]


def kernelRoom(transport):
    """
    About how many more bytes the kernel's send buffer of C{transport}'s
    socket takes before a write would wait in this process: half its
    C{SO_SNDBUF} (Linux counts its own bookkeeping in that size, and grows
    it as the connection speeds up) less what the queue holds, sent or not
    (C{SIOCOUTQ}).  L{None} where that cannot be read.
    """
    connection = _socketUnder(transport)
    if connection is None or _QUEUED is None:
        return None
    try:
        size = connection.socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        answer = fcntl.ioctl(connection.fileno(), _QUEUED, b"\0\0\0\0")
    except (OSError, ValueError):
        return None
    return size // 2 - struct.unpack("i", answer)[0]


def forgetPause(transport):
    """
    After its producer was unregistered: Twisted keeps its "paused" flag,
    which would keep L{holdProducerUntilDrained} from pausing the next
    producer of the same connection (a keep-alive one); clear it.
    """
    transport = socketTransport(transport)
    if transport is not None and transport.producer is None:
        transport.producerPaused = False


def unsentBytes(transport):
    """
    How many bytes written to C{transport} still wait in this process for
    the socket to take them: a socket transport's write buffer, seen
    through any wrapper (under TLS, the encrypted bytes, plus what waits
    for the handshake).  0 when it cannot tell.
    """
    unsent = 0
    while isinstance(transport, ProtocolWrapper):
        # TLS keeps what is written before its handshake ends.
        unsent += internals.tlsPendingLength(transport)
        transport = transport.transport
    if isinstance(transport, Connection):
        unsent += internals.queuedLength(transport)
    return unsent
