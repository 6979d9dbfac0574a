"""
The TLS contexts of a listener with several certificates, one picked per
handshake by the client's SNI name, and swapped whole by a reload.

Every certificate gets its own OpenSSL context with the same settings
(L{TLS_SETTINGS}) and the listener's ALPN protocols.  Connections start
on the default certificate's context; once the client's hello is in, a
servername callback on it moves the connection to the context of the
certificate that answers for the name: an exact name first, then a
wildcard C{*.example.com} (one label: C{a.example.com}, not
C{example.com} nor C{a.b.example.com}); no SNI name, or one no
certificate answers for, keeps the default.  That lookup (one or two
dict lookups) is all it costs, once per handshake.

A reload prepares a new L{ContextSet} (L{ListenerContexts.prepare}) and
installs it (L{ListenerContexts.install}): handshakes from then on use
it; connections already open keep the context they have.
"""

from __future__ import annotations

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer

from playbalancer._net.tlslisten import selector

__all__ = ["TLS12_CIPHERS", "ContextSet", "ListenerContexts", "contextFor"]

#: The TLS 1.2 cipher suites offered, in our order of preference: ECDHE
#: key exchange, AEAD ciphers only (Mozilla's "intermediate" list); the
#: DHE ones only when the endpoint names C{dhParameters}.  TLS 1.3 offers
#: OpenSSL's default suites (AES-256-GCM, ChaCha20-Poly1305, AES-128-GCM).
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-CHACHA20-POLY1305",
)


def contextFor(certificate, protocols, dhParameters=None, chooser=None):
    """
    A server context for one certificate: TLS 1.2 or 1.3 only,
    L{TLS12_CIPHERS} in our order, no compression, no renegotiation, no
    session cache nor tickets (as Twisted's own defaults), and ALPN for
    C{protocols}.

    @param certificate: a L{playbalancer.config.tls.Certificate}.
    @param chooser: a servername callback to install, if any.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(
        SSL.OP_NO_COMPRESSION
        | SSL.OP_CIPHER_SERVER_PREFERENCE
        | SSL.OP_NO_RENEGOTIATION
        | SSL.OP_NO_TICKET
    )
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    chain = [x509.load_pem_x509_certificate(block) for block in certificate.chain]
    context.use_certificate(chain[0])
    for extra in chain[1:]:
        context.add_extra_chain_cert(extra)
    context.use_privatekey(serialization.load_pem_private_key(certificate.key, password=None))
    context.check_privatekey()
    if dhParameters is not None:
        context.load_tmp_dh(dhParameters)
    context.set_alpn_select_callback(selector(tuple(protocols)))
    if chooser is not None:
        context.set_tlsext_servername_callback(chooser)
    # Last: some pyOpenSSL versions make a connection to check the list,
    # and a context may not change once it has made one.
    context.set_cipher_list(":".join(TLS12_CIPHERS).encode("ascii"))
    return context


class ContextSet:
    """
    The contexts of one set of certificates (a
    L{playbalancer.config.tls.ListenerCertificates}) and the names that
    pick them.

    @ivar default: the default certificate's context, on which every
        handshake starts.
    @ivar exact: C{{name: context}}.
    @ivar wildcards: C{{parent domain: context}} of the C{*.} names.
    """

    def __init__(self, certificates, protocols):
        self.certificates = certificates
        self.exact = {}
        self.wildcards = {}
        dh = certificates.dhParameters
        for certificate in certificates.others:
            self._name(certificate, contextFor(certificate, protocols, dh))
        self.default = contextFor(certificates.default, protocols, dh, self.choose)
        self._name(certificates.default, self.default)

    def _name(self, certificate, context):
        for name in certificate.names:
            if name.startswith("*."):
                self.wildcards.setdefault(name[2:], context)
            else:
                self.exact.setdefault(name, context)

    def contextForName(self, name):
        """
        The context for the SNI host name C{name} (bytes, or L{None}).
        """
        if not name:
            return self.default
        name = name.decode("ascii", "replace").lower().rstrip(".")
        context = self.exact.get(name)
        if context is None:
            parent = name.partition(".")[2]
            context = self.wildcards.get(parent, self.default) if parent else self.default
        return context

    def choose(self, connection):
        """
        The servername callback: move C{connection} to its name's context.
        """
        context = self.contextForName(connection.get_servername())
        if context is not self.default:
            connection.set_context(context)


@implementer(IOpenSSLContextFactory)
class ListenerContexts:
    """
    The TLS options of one listener (what its endpoint gives every
    connection it accepts): the L{ContextSet} installed now.

    @param certificates: a L{playbalancer.config.tls.ListenerCertificates}.
    @param protocols: its ALPN protocols (see
        L{playbalancer._net.tlslisten.protocolsOf}).
    """

    def __init__(self, certificates, protocols):
        self.protocols = tuple(protocols)
        self.current = self.prepare(certificates)

    def prepare(self, certificates, protocols=None):
        """
        A L{ContextSet} for C{certificates}, not yet used.

        @param protocols: the ALPN protocols (by default the same as now).
        """
        return ContextSet(certificates, self.protocols if protocols is None else tuple(protocols))

    def install(self, contexts, protocols=None):
        """
        New handshakes use C{contexts} (from L{prepare}) from now on.
        """
        self.current = contexts
        if protocols is not None:
            self.protocols = tuple(protocols)

    @property
    def certificates(self):
        return self.current.certificates

    def getContext(self):
        return self.current.default
