"""
The listening services of front listeners: they log when they start and
stop, and an HTTP listener stops gracefully.
"""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger

from playbalancer._net.internals import raiseStartErrors

_log = Logger()


class CannotServe(Exception):
    """
    A listener cannot listen: its message is one short line naming the
    listener and why (short enough for the 100 bytes twistd passes from a
    daemon to the terminal).
    """


def _why(error):
    reason = getattr(error, "socketError", None) or error
    text = getattr(reason, "strerror", None) or str(reason)
    return text[0].lower() + text[1:] if text else type(error).__name__


class ListenerService(StreamServerEndpointService):
    """
    Listens on an endpoint; start-up errors are raised at once, and
    starting and stopping are structured log events.

    @param name: the listener's name in logs and metrics.
    """

    def __init__(self, endpoint, factory, name="listener"):
        StreamServerEndpointService.__init__(self, endpoint, factory)
        raiseStartErrors(self)
        self.listenerName = name
        self._bound = False
        #: The listening port, once listening.
        self.port = None

    def privilegedStartService(self):
        # Once only: a reload binds a new listener before its service is
        # added to a running parent (which would bind it again).
        if not self._bound:
            self._bound = True
            try:
                StreamServerEndpointService.privilegedStartService(self)
            except Exception as e:
                raise CannotServe(f"listener {self.listenerName}: {_why(e)}") from e
            self._waitingForPort.addCallback(self._listening)

    def _listening(self, port):
        self.port = port
        return port

    def listeningSocket(self):
        """
        The file descriptor of its listening socket, or L{None}.
        """
        port = self.port
        if port is None or not hasattr(port, "fileno") or port.fileno() < 0:
            return None
        return port.fileno()

    def startService(self):
        StreamServerEndpointService.startService(self)
        _log.info(
            "listener {listener} started",
            listener=self.listenerName,
            playbalancer_event="listener.started",
        )

    def stopService(self):
        _log.info(
            "listener {listener} stopping",
            listener=self.listenerName,
            playbalancer_event="listener.stopped",
        )
        return StreamServerEndpointService.stopService(self)


class GracefulService(ListenerService):
    """
    Listens for an L{playbalancer.http.front.HTTPFrontFactory}; when stopped,
    stops listening and then closes its client connections gracefully (see
    L{HTTPFrontFactory.closeGracefully}).
    """

    def __init__(self, endpoint, factory, clock, grace=10.0, name="listener"):
        ListenerService.__init__(self, endpoint, factory, name)
        self.clock = clock
        self.grace = grace
        #: Set when another process (or listener) takes over: idle
        #: keep-alive connections get their next request answered.
        self.lingerIdle = False
        #: An C{ssl:} listener's L{playbalancer._net.sni.ListenerContexts}.
        self.tls = None

    def stopService(self):
        d = maybeDeferred(ListenerService.stopService, self)
        d.addCallback(
            lambda _: self.factory.closeGracefully(self.clock, self.grace, self.lingerIdle)
        )
        return d
