"""
The HTTP/2 client face of the proxy (RFC 9113), built on the C{h2}
library: each stream is one more L{playbalancer.interfaces.IClientSide}
of the same exchange as an HTTP/1.1 request, so it gets the same routes,
balancers, retries, limits, access log and metrics.  Members are spoken
to in HTTP/1.1, over the same pools.

The C{h2} library is optional (C{pip install 'playbalancer[http2]'}): this
package imports it only in its modules, and L{available} says whether it
is there.
"""


def available():
    """
    Whether the C{h2} library can be imported, so that listeners may speak
    HTTP/2.
    """
    try:
        import h2.connection  # noqa: F401
    except ImportError:
        return False
    return True


#: What a config that asks for HTTP/2 without the library is told.
INSTALL_HINT = "HTTP/2 needs the h2 library: pip install 'playbalancer[http2]'"
