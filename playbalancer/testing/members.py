"""
Members on real sockets for tests: L{MemberServer}, the demo member that
records what reached it and can hold requests (L{HoldPage}), and
L{BrokenMember}, a few misbehaviours of L{FaultMember} under older names.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.protocols.policies import WrappingFactory
from twisted.web import resource, server

from playbalancer.demo import DemoInstance
from playbalancer.testing.faultmember import FaultMember
from playbalancer.testing.waiting import closeAll

__all__ = ["HoldPage", "MemberServer", "BrokenMember"]


class HoldPage(resource.Resource):
    """
    A page that answers only when the test says so.

    @ivar held: the requests waiting for L{release}.
    """

    isLeaf = True

    def __init__(self):
        resource.Resource.__init__(self)
        self.held = []
        self.cancelled = []
        self._arrivals = []

    def render(self, request):
        self.held.append(request)
        request.notifyFinish().addErrback(lambda f: self.cancelled.append(request))
        waiting, self._arrivals = self._arrivals, []
        for d in waiting:
            d.callback(request)
        return server.NOT_DONE_YET

    def arrival(self):
        """
        A L{Deferred} that fires with the next request to arrive.
        """
        d = defer.Deferred()
        self._arrivals.append(d)
        return d

    def release(self, body=b"released\n"):
        """
        Answer every held request that is still connected.
        """
        held, self.held = self.held, []
        for request in held:
            if request not in self.cancelled:
                request.write(body)
                request.finish()


class _HeadersPage(resource.Resource):
    isLeaf = True

    def __init__(self, member):
        resource.Resource.__init__(self)
        self.member = member

    def render(self, request):
        request.setHeader(b"connection", b"X-Internal")
        request.setHeader(b"x-internal", b"secret")
        request.setHeader(b"keep-alive", b"timeout=5")
        request.responseHeaders.setRawHeaders(b"set-cookie", [b"a=1", b"b=2"])
        request.setHeader(b"content-location", self.member.url.encode() + b"/c")
        return b"headers\n"


class _RecordingSite(server.Site):
    def __init__(self, resource, seen):
        server.Site.__init__(self, resource)
        self.seen = seen

    def getResourceFor(self, request):
        self.seen.append(request)
        return server.Site.getResourceFor(self, request)

    def log(self, request):
        pass


class MemberServer:
    """
    A demo member listening on 127.0.0.1, recording every request that
    reached it and every connection made to it.

    Beyond the demo pages it has C{/hold} (a L{HoldPage}) and C{/headers}
    (a response with hop-by-hop headers and repeated C{Set-Cookie}).
    """

    def __init__(self, name, reactor, port=0, tls=None):
        self.name = name
        self.reactor = reactor
        self.requested = port
        #: C{(keyPath, certPath)} or TLS options (e.g. from
        #: L{playbalancer.testing.authority.memberTLSOptions}) to serve
        #: HTTPS, or L{None}.
        self.tls = tls
        self.seen = []
        self.hold = HoldPage()
        self.connections = 0
        self._listening = None
        self._factory = None

    @property
    def url(self):
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self):
        instance = DemoInstance(self.name, self.requested, self.reactor)
        root = instance.resource()
        root.putChild(b"hold", self.hold)
        root.putChild(b"headers", _HeadersPage(self))
        self._factory = _CountingFactory(_RecordingSite(root, self.seen), self)
        if self.tls:
            from twisted.internet.ssl import PrivateCertificate

            if isinstance(self.tls, tuple):
                key, cert = (open(path).read() for path in self.tls)
                options = PrivateCertificate.loadPEM(key + cert).options()
            else:
                options = self.tls
            self._listening = self.reactor.listenSSL(
                self.requested, self._factory, options, interface="127.0.0.1"
            )
        else:
            self._listening = self.reactor.listenTCP(
                self.requested, self._factory, interface="127.0.0.1"
            )
        self.port = self.requested = self._listening.getHost().port
        instance.port = self.port
        return self

    def stop(self):
        """
        Stop listening and cut every open connection, as a killed process
        would.  Fires when all are closed.
        """
        listening, self._listening = self._listening, None
        d = defer.maybeDeferred(listening.stopListening) if listening else defer.succeed(None)
        d.addCallback(lambda _: closeAll(self._factory, self.reactor))
        return d

    @property
    def paths(self):
        """
        The request targets that reached this member, in order.
        """
        return [request.uri for request in self.seen]


class _CountingFactory(WrappingFactory):
    def __init__(self, wrapped, member):
        WrappingFactory.__init__(self, wrapped)
        self.member = member

    def buildProtocol(self, addr):
        self.member.connections += 1
        return WrappingFactory.buildProtocol(self, addr)


#: What each L{BrokenMember} misbehaviour is, as a L{FaultMember}
#: behaviour and its options.
_BROKEN = {
    "close": ("close", {}),
    "reset": ("reset", {"after": 0}),
    "truncate-length": ("short-cl", {}),
    "truncate-chunked": ("truncated-chunked", {}),
    "stall": ("stall", {"size": 100, "after": 3}),
    "silent": ("hang", {}),
}


class BrokenMember:
    """
    A member that misbehaves on every request: a L{FaultMember} with one
    of these behaviours, named as older tests know them:

      - C{"close"}: closes as soon as it has read the head, without
        answering;
      - C{"reset"}: resets the connection;
      - C{"truncate-length"}: C{Content-Length: 100}, then 10 bytes
        (C{"s"}), closes;
      - C{"truncate-chunked"}: two chunks (C{"hello"}, C{" world"}),
        closes without the last-chunk;
      - C{"stall"}: C{Content-Length: 100} and 3 bytes (C{"xxx"}), then
        nothing;
      - C{"silent"}: never answers.

    Since it is a L{FaultMember} it behaves as one, which differs from the
    older C{BrokenMember} that acted on the head alone:

      - all but C{"close"} act once the whole request, body included, has
        been read, and send no C{100 Continue}: a client that holds back
        its body (C{Expect: 100-continue}) sees nothing;
      - a head it cannot parse gets C{400} and a close (one over
        L{playbalancer.testing.faultmember.MAX_HEAD} bytes, C{431});
      - it sends the bytes above; the older one sent C{"y"} * 10, one
        chunk of C{"z"} * 10 and C{"abc"}.

    @ivar requests: the raw request heads it read.
    @ivar member: the L{FaultMember}.
    """

    def __init__(self, how, reactor):
        if how not in _BROKEN:
            raise ValueError(f"unknown misbehaviour {how!r}; known: {', '.join(sorted(_BROKEN))}")
        behaviour, options = _BROKEN[how]
        self.how = how
        self.reactor = reactor
        self.member = FaultMember(reactor, behaviour, **options)
        self.requests = self.member.received

    def start(self):
        self.member.start()
        self.port = self.member.port
        self.url = self.member.url
        return self

    def stop(self):
        return self.member.stop()
