"""
The HTTP/2 client face of the proxy (RFC 9113), built on the C{h2}
library: each stream is one more L{playbalancer.interfaces.IClientSide}
of the same exchange as an HTTP/1.1 request, so it gets the same routes,
balancers, retries, limits, access log and metrics.  Members are spoken
to in HTTP/1.1, over the same pools.
"""
