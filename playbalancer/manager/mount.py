"""
The manager served under a path of a front listener (like Apache's
C{ProxyPass /balancer-manager !} next to C{ProxyPass /}).  The data path
(L{playbalancer.http.front}) routes requests under the path to a manager
route (L{playbalancer.http.routing.ManagerTarget}), and hands the
connection over to the protocol the mount builds.
"""

from __future__ import annotations

from twisted.web import http, resource

from playbalancer.manager.root import managerSite


class _OneRequestChannel(http.HTTPChannel):
    """
    A twisted.web channel that closes after its first response.
    """

    def checkPersistence(self, request, version):
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        return False


class ManagerMount:
    """
    Serves the manager under a path of a front listener (like Apache's
    C{ProxyPass /balancer-manager !}): a request under that path is handed,
    with its connection, to a twisted.web channel serving the manager, and
    that connection closes after its response.

    @param path: the manager's path, e.g. C{"/balancer-manager"}.
    @param manager: the manager's root resource (its C{policy} guards
        request bodies, see L{playbalancer.manager.root.GuardedRequest}).
    @param trustedProxies: the listener's trusted proxies (networks), the
        only ones that may pass manager requests on without a token.
    @param policy: the L{playbalancer.manager.guard.AccessPolicy} of
        requests that come this way (the manager's own when L{None}).
    """

    def __init__(self, path, manager, trustedProxies=(), policy=None):
        segments = [s.encode("ascii") for s in path.strip("/").split("/")]
        self.prefix = b"/" + b"/".join(segments)
        root = parent = resource.Resource()
        for segment in segments[:-1]:
            child = resource.Resource()
            parent.putChild(segment, child)
            parent = child
        parent.putChild(segments[-1], manager)
        self.policy = policy if policy is not None else manager.policy
        self.site = managerSite(root, self.policy)
        self.site.protocol = _OneRequestChannel
        # The listener's trusted proxies may pass on manager requests.
        self.site.trustedProxies = tuple(trustedProxies)

    def buildProtocol(self, addr):
        return self.site.buildProtocol(addr)
