"""
Application protocol negotiation (ALPN) on TLS listeners.

Twisted's TLS server contexts always install an ALPN callback that, when
the listening factory offers no protocols (or none the client offered),
answers with an empty protocol name: OpenSSL refuses that with an
"internal error" alert, so every client that offers ALPN (curl, every
browser) fails its handshake.  L{negotiateProtocols} replaces the
callback with one that follows RFC 7301: the first of our protocols the
client offered; with none of ours offered, a C{no_application_protocol}
alert; and when we have no list at all (TCP mode relays any protocol), no
ALPN answer, so the client goes on with the protocol it would have used
anyway.
"""

from __future__ import annotations

from OpenSSL import SSL

from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IProtocolNegotiationFactory

from playbalancer._net.internals import listenerTLSOptions

__all__ = [
    "HTTP_PROTOCOLS",
    "NoCommonProtocol",
    "protocolsOf",
    "selector",
    "negotiateProtocols",
]

#: What an HTTP listener speaks.
HTTP_PROTOCOLS = (b"http/1.1",)


class NoCommonProtocol(SSL.Error):
    """
    The client offered none of the listener's protocols.
    """


def protocolsOf(factory):
    """
    The ALPN protocols a listening C{factory} speaks, in order of
    preference: its C{acceptableProtocols()} when it has them, else none.
    """
    negotiation = IProtocolNegotiationFactory(factory, None)
    if negotiation is None:
        return ()
    return tuple(negotiation.acceptableProtocols())


def selector(ours):
    """
    An OpenSSL ALPN selection callback for the protocols C{ours}.
    """

    def select(connection, offered):
        if not ours:
            return SSL.NO_OVERLAPPING_PROTOCOLS
        for protocol in ours:
            if protocol in offered:
                return protocol
        # Raising makes pyOpenSSL answer SSL_TLSEXT_ERR_ALERT_FATAL, which
        # OpenSSL sends as no_application_protocol; the handshake then
        # fails with this error (in OpenSSL's error-queue shape, which
        # Twisted reads), and Twisted closes the connection.
        raise NoCommonProtocol([("SSL routines", "alpn", "no application protocol")])

    return select


def negotiateProtocols(endpoint, protocols):
    """
    Make a TLS server C{endpoint} (from C{serverFromString}) negotiate
    C{protocols} by ALPN as RFC 7301 says; other endpoints are left alone.

    @return: C{endpoint}.
    """
    if isinstance(endpoint, SSL4ServerEndpoint):
        # The endpoint's options, whose context every connection of this
        # listener shares (a private attribute: see internals).
        options = listenerTLSOptions(endpoint)
        context = options.getContext()
        if options.getContext() is not context:
            # Every connection must share the context the callback is on.
            raise RuntimeError("this Twisted makes a TLS context per connection: ALPN not set")
        context.set_alpn_select_callback(selector(tuple(protocols)))
    return endpoint
