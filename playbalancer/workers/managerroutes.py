"""
The manager behind a route (C{manager_path}, or a C{[[listen.route]]} with
C{manager = true}) of a listener that worker processes serve.

The manager lives in the parent.  For each such route the parent listens
on a Unix socket of its own (in a private directory) and serves the
manager there as it would on the listener (L{ManagerSockets}); a worker
hands a connection that takes the route over to that socket
(L{RemoteMount}), after a PROXY protocol line naming the real client, so
that the manager's access rules see the client, not the worker.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from playbalancer.tcp import proxyHeader


def routeKey(listenerIndex, route):
    """
    How parent and workers name one manager route.
    """
    return f"{listenerIndex}/{route.name}"


class _ToParent(Protocol):
    def __init__(self, relay):
        self.relay = relay

    def connectionMade(self):
        self.relay.parentConnected(self)

    def dataReceived(self, data):
        self.relay.transport.write(data)

    def connectionLost(self, reason):
        self.relay.parentGone()


class ManagerRelay(Protocol):
    """
    The client's end of a connection handed over to the parent's manager:
    what the client sends goes there, after a PROXY line, and back.
    """

    def __init__(self, path, reactor):
        self.path = path
        self.reactor = reactor
        self.parent = None
        self.pending = []
        self.done = False

    def connectionMade(self):
        self.pending.append(proxyHeader(self.transport.getPeer(), self.transport.getHost()))
        d = connectProtocol(UNIXClientEndpoint(self.reactor, self.path), _ToParent(self))
        d.addErrback(lambda failure: self._unreachable())

    def _unreachable(self):
        if not self.done:
            self.transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self.transport.loseConnection()

    def parentConnected(self, parent):
        if self.done:
            parent.transport.loseConnection()
            return
        self.parent = parent
        parent.transport.write(b"".join(self.pending))
        self.pending = []
        parent.transport.registerProducer(self.transport, True)
        self.transport.registerProducer(parent.transport, True)

    def dataReceived(self, data):
        if self.parent is not None:
            self.parent.transport.write(data)
        else:
            self.pending.append(data)

    def parentGone(self):
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.done = True
        if self.parent is not None:
            self.parent.transport.loseConnection()


class RemoteMount:
    """
    A worker's stand-in for a L{playbalancer.manager.mount.ManagerMount}:
    the connection goes to the parent's socket at C{path}.
    """

    def __init__(self, path, reactor):
        self.path = path
        self.reactor = reactor

    def buildProtocol(self, addr):
        return ManagerRelay(self.path, self.reactor)


class ManagerSockets:
    """
    The parent's side: one Unix socket per manager route of C{config}'s
    listeners, serving the manager as the route would (see
    L{playbalancer.listenerroutes.buildRoutes}).

    @ivar paths: C{{routeKey: socket path}}, for the workers.
    """

    def __init__(self, config, manager, reactor, policy=None):
        self.config = config
        self.manager = manager
        #: The manager's access policy the routes start from (by default
        #: its own; a reload's new one before it is applied).
        self.policy = policy
        self.reactor = reactor
        self.paths = {}
        self.ports = []
        self.directory = None

    def open(self):
        """
        Listen on every socket (none without manager routes).
        """
        from twisted.internet.endpoints import UNIXServerEndpoint
        from twisted.protocols.haproxy import proxyEndpoint

        from playbalancer.listenerroutes import managerMount

        routes = [
            (index, listener, route)
            for index, listener in enumerate(self.config.listeners)
            for route in listener.routes
            if route.manager
        ]
        if not routes or self.manager is None:
            return self
        # (systemd's RuntimeDirectory= when there is one.)
        runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or None
        self.directory = tempfile.mkdtemp(prefix="playbalancer-manager-", dir=runtime)
        for number, (index, listener, route) in enumerate(routes):
            path = os.path.join(self.directory, f"{number}.sock")
            mount = managerMount(route, listener, self.manager, self.policy)
            endpoint = proxyEndpoint(UNIXServerEndpoint(self.reactor, path, mode=0o600))
            endpoint.listen(mount.site).addCallback(self.ports.append)
            self.paths[routeKey(index, route)] = path
        return self

    def close(self):
        """
        Stop listening, then remove the directory.

        @return: a L{Deferred} that fires when done.
        """
        from twisted.internet.defer import DeferredList, maybeDeferred

        stopped = [maybeDeferred(port.stopListening) for port in self.ports]
        self.ports = []
        directory, self.directory = self.directory, None

        def remove(_):
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)

        return DeferredList(stopped, consumeErrors=True).addCallback(remove)
