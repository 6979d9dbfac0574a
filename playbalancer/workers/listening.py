"""
The listening sockets the parent opens for its workers: one per worker
and listener, on the same port, with C{SO_REUSEPORT}.
"""

from __future__ import annotations

import socket

#: The listen backlog of a worker's socket when the endpoint names none.
DEFAULT_BACKLOG = 1024


def endpointAddress(endpoint):
    """
    C{(family, interface, port, backlog)} of a C{tcp:}, C{tcp6:} or
    C{ssl:} endpoint string, parsed by Twisted's own endpoint parser (so
    escaped colons in an IPv6 interface, C{interface=\\:\\:1}, are
    understood).  (A worker does TLS itself over an C{ssl:} listener's
    socket.)

    @raise ValueError: for other kinds of endpoint.
    """
    from twisted.internet.endpoints import (
        SSL4ServerEndpoint,
        TCP4ServerEndpoint,
        TCP6ServerEndpoint,
        _parse,
        serverFromString,
    )

    try:
        parsed = serverFromString(None, endpoint)
    except Exception as e:
        raise ValueError(f"{endpoint!r}: {e}")
    if isinstance(parsed, TCP6ServerEndpoint):
        family, interface = socket.AF_INET6, parsed._interface or "::"
    elif isinstance(parsed, (TCP4ServerEndpoint, SSL4ServerEndpoint)):
        family, interface = socket.AF_INET, parsed._interface
    else:
        raise ValueError(f"{endpoint!r}: workers need tcp:, tcp6: or ssl: listeners")
    # Twisted's default backlog (50) is small for several processes.
    backlog = parsed._backlog if "backlog" in _parse(endpoint)[1] else DEFAULT_BACKLOG
    return family, interface, parsed._port, backlog


def listeningSocket(endpoint, port=None):
    """
    Open a listening socket of a C{tcp:}, C{tcp6:} or C{ssl:} endpoint string, with
    C{SO_REUSEPORT}: each worker gets its own socket on the same port, and
    the kernel spreads new connections evenly over them.

    @param port: the port to use instead of the endpoint's (the one the
        first socket got, for C{tcp:0}).
    @raise ValueError: for other kinds of endpoint.
    """
    family, interface, endpointPort, backlog = endpointAddress(endpoint)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((interface, endpointPort if port is None else port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
