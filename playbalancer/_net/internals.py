"""
The private parts of Twisted that playbalancer relies on, named here and
nowhere else, so that a Twisted upgrade that changes them breaks one
module (and C{tests/test_twisted_internals.py} says which one).

- a socket transport's (C{twisted.internet.tcp.Connection}) write queue:
  C{dataBuffer} and C{offset}, plus C{_tempDataBuffer} and
  C{_tempDataLen}, the writes not yet joined into C{dataBuffer};
- its C{SEND_LIMIT} (bytes handed to one C{send}) and C{bufferSize}
  (bytes asked of one C{recv});
- a TLS wrapper's (C{TLSMemoryBIOProtocol}) C{_appSendBuffer}: what is
  written before its handshake ends;
- C{SSL4ServerEndpoint._sslContextFactory}: the TLS options a listener's
  connections share (read, and replaced by a listener's own);
- C{StreamServerEndpointService._raiseSynchronously}: raise a listening
  error from C{startService} instead of only logging it;
- a listening port's (C{twisted.internet.tcp.Port}) C{_shouldShutdown}:
  whether stopping it shuts the socket down (for every process that
  shares it) rather than only closing its own descriptor;
- C{twisted.internet.unix.Port}: its C{connectionLost} removes the socket's
  path, C{_bindPath} (C{port} in Twisted 25.5) names it,
  C{_fromListeningDescriptor} makes a port of a listening descriptor, whose
  C{mode} C{startListening} sets on the path.
"""

from __future__ import annotations

__all__ = [
    "hasQueuedWrites",
    "queuedLength",
    "sendLimit",
    "setSendLimit",
    "readSize",
    "setReadSize",
    "tlsPendingLength",
    "listenerTLSOptions",
    "setListenerTLSOptions",
    "raiseStartErrors",
    "shareOnStop",
    "adoptUnixPort",
]


def hasQueuedWrites(connection):
    """
    Whether socket transport C{connection} has written bytes waiting for
    the socket.
    """
    return bool(connection.dataBuffer or connection._tempDataBuffer)


def queuedLength(connection):
    """
    How many written bytes socket transport C{connection} holds for the
    socket.
    """
    return len(connection.dataBuffer) - connection.offset + connection._tempDataLen


def sendLimit(connection):
    """
    The most bytes socket transport C{connection} hands to one C{send}.
    """
    return connection.SEND_LIMIT


def setSendLimit(connection, limit):
    """
    Let socket transport C{connection} hand up to C{limit} bytes to one
    C{send} (Twisted's default: 128 KiB, on the class).
    """
    connection.SEND_LIMIT = limit


def readSize(connection):
    """
    The bytes socket transport C{connection} asks for in one C{recv}.
    """
    return connection.bufferSize


def setReadSize(connection, size):
    """
    Make socket transport C{connection} ask for C{size} bytes in each
    C{recv} from now on.
    """
    connection.bufferSize = size


def tlsPendingLength(wrapper):
    """
    Bytes written to protocol wrapper C{wrapper} that it holds until its
    TLS handshake ends (0 for any other wrapper).
    """
    waiting = wrapper.__dict__.get("_appSendBuffer")
    if not waiting:
        return 0
    return sum(len(piece) for piece in waiting)


def listenerTLSOptions(endpoint):
    """
    The TLS options (an C{IOpenSSLContextFactory}) of the
    C{SSL4ServerEndpoint} C{endpoint}: every connection it accepts uses
    their context.
    """
    return endpoint._sslContextFactory


def setListenerTLSOptions(endpoint, options):
    """
    Make the C{SSL4ServerEndpoint} C{endpoint} give the connections it
    accepts the TLS options C{options} (an C{IOpenSSLContextFactory})
    instead of the ones its endpoint string made.
    """
    endpoint._sslContextFactory = options


def raiseStartErrors(service):
    """
    Make C{StreamServerEndpointService} C{service} raise from
    C{startService} when it cannot listen (by default it logs the error
    and starts anyway).
    """
    service._raiseSynchronously = True


def shareOnStop(port):
    """
    Make the listening C{port} close only this process's descriptor of its
    socket when stopped, without shutting the socket down: another process
    that shares it (an upgrade's new process) goes on accepting from it.
    """
    port._shouldShutdown = False
    from twisted.internet import tcp, unix

    if isinstance(port, unix.Port):
        # Nor remove its path: the other process listens there.
        def connectionLost(reason, port=port):
            if port.lockFile is not None:
                port.lockFile.unlock()
            tcp.Port.connectionLost(port, reason)

        port.connectionLost = connectionLost


def adoptUnixPort(reactor, fd, factory):
    """
    Listen with C{factory} on the listening Unix socket C{fd}, as
    C{reactor.adoptStreamPort} does, but keeping the mode its path has
    (C{adoptStreamPort} makes it 0666).
    """
    import os

    from twisted.internet import unix

    port = unix.Port._fromListeningDescriptor(reactor, fd, factory)
    # (C{_bindPath} in Twisted 26.10, C{port} in 25.5.)
    path = getattr(port, "_bindPath", None) or port.port
    if path and path[:1] not in (b"\0", "\0"):
        port.mode = os.stat(path).st_mode & 0o7777
    port.startListening()
    return port
