"""
The listening service of an HTTP front listener, which stops gracefully.
"""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import maybeDeferred


class GracefulService(StreamServerEndpointService):
    """
    Listens for an L{playbalancer.front.HTTPFrontFactory}; when stopped,
    stops listening and then closes its client connections gracefully (see
    L{HTTPFrontFactory.closeGracefully}).
    """

    def __init__(self, endpoint, factory, clock, grace=10.0):
        StreamServerEndpointService.__init__(self, endpoint, factory)
        self._raiseSynchronously = True
        self.clock = clock
        self.grace = grace

    def stopService(self):
        d = maybeDeferred(StreamServerEndpointService.stopService, self)
        d.addCallback(lambda _: self.factory.closeGracefully(self.clock, self.grace))
        return d
