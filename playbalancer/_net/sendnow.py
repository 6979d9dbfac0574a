"""
Writing to a plain TCP transport at once when nothing is queued.

Twisted's transports queue every write until the reactor's next turn.  A
proxy that answers a request with one write per response pays for that
turn (an epoll update, a second pass through the loop) on every request;
when the transport's buffer is empty the bytes can go to the socket now,
and only what the kernel does not take is queued as usual.  This relies on
the buffer attributes of C{twisted.internet.tcp.Connection}; any other
transport (TLS above all: its bytes must be encrypted first) gets a plain
C{write}, as L{playbalancer._net.rawsocket} decides.
"""

from __future__ import annotations

from playbalancer._net.internals import hasQueuedWrites
from playbalancer._net.rawsocket import socketTransport

__all__ = ["sendNow", "sendSequenceNow"]


def _idleSocket(transport):
    """
    The socket of C{transport} if bytes may go to it now (a plain socket
    transport, nothing queued, still open), else L{None}.
    """
    transport = socketTransport(transport)
    if (
        transport is None
        or hasQueuedWrites(transport)
        or transport.disconnecting
        or not transport.connected
    ):
        return None
    return transport.socket


def sendNow(transport, data):
    """
    Write C{data} to C{transport}, sending it at once if it can.

    @return: whether some of it waits in the transport's buffer (always,
        when it could not be sent at once).
    """
    sock = _idleSocket(transport)
    if sock is None:
        transport.write(data)
        return True
    try:
        sent = sock.send(data)
    except OSError:
        sent = 0  # EAGAIN, or a broken connection that write() will report
    if sent < len(data):
        transport.write(data[sent:] if sent else data)
        return True
    return False


def sendSequenceNow(transport, parts):
    """
    Write the byte strings C{parts}, in order, to C{transport}: at once, in
    one system call without joining them, if it can.

    @return: whether some of them wait in the transport's buffer.
    """
    sock = _idleSocket(transport)
    if sock is None:
        transport.writeSequence(parts)
        return True
    try:
        sent = sock.sendmsg(parts)
    except OSError:
        sent = 0
    if sent == 0:
        transport.writeSequence(parts)
        return True
    for index, part in enumerate(parts):
        if sent < len(part):
            transport.writeSequence([part[sent:], *parts[index + 1 :]])
            return True
        sent -= len(part)
    return False
