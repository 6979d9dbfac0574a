"""
TLS to C{https://} members: whom to trust, which name to ask for and
check, which certificate to show, and whether to check at all.

By default a member's certificate must be valid for the host in its URL
(a name or an IP address) and chain to the system's trusted authorities,
as a browser would check it, over TLS 1.2 or later; a host name is sent
by SNI (an IP address is not, as RFC 6066 says).  A balancer's
C{tls_ca_file} trusts the authorities in that file instead (a private CA,
or a member's self-signed certificate); C{tls_server_name} sends and
checks another name than the URL's host; C{tls_client_cert} and
C{tls_client_key} show a client certificate to members that ask for one;
C{tls_verify = false} encrypts without checking whom to, for a test bench
only.
"""

from __future__ import annotations

import re

from zope.interface import implementer

from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    TLSVersion,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.web.iweb import IPolicyForHTTPS

from playbalancer._net.tlsclient import MemberConnectionCreator

#: The oldest protocol spoken to members.
MINIMUM_TLS = TLSVersion.TLSv1_2

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None


def loadAuthorities(path):
    """
    The certificates in the PEM file at C{path}.

    @raise ValueError: naming what is wrong, when the file cannot be read
        or holds no certificate that parses.
    """
    blocks = _PEM_CERTIFICATE.findall(_read(path))
    if not blocks:
        raise ValueError(f"{path} holds no PEM certificate")
    try:
        return [Certificate.loadPEM(block) for block in blocks]
    except Exception as e:  # pyOpenSSL's errors name nothing useful
        raise ValueError(f"{path}: a certificate does not parse ({e})") from None


def _line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class ClientCertificateError(ValueError):
    """
    A client certificate or key that cannot be used; C{which} is
    C{"cert"} or C{"key"}: the setting whose file is at fault.
    """

    def __init__(self, which, text):
        ValueError.__init__(self, text)
        self.which = which


def _publicKey(keyOrCertificate):
    from cryptography.hazmat.primitives import serialization

    return keyOrCertificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class ClientCertificate:
    """
    A certificate (with the chain after it) and its private key, shown to
    members that ask for one.

    @ivar certificate: the L{OpenSSL.crypto.X509} of the leaf.
    @ivar chain: the intermediates after it, as L{OpenSSL.crypto.X509}s.
    @ivar key: the L{OpenSSL.crypto.PKey}.
    """

    def __init__(self, certificate, chain, key):
        self.certificate = certificate
        self.chain = chain
        self.key = key

    @classmethod
    def load(cls, certPath, keyPath=None):
        """
        Read a PEM certificate (and chain) from C{certPath} and its key from
        C{keyPath}, or from C{certPath} too when that is L{None}.

        @raise ClientCertificateError: naming what is wrong.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from OpenSSL import crypto

        Bad = ClientCertificateError
        try:
            certData = _read(certPath)
        except ValueError as e:
            raise Bad("cert", str(e)) from None
        if not _PEM_CERTIFICATE.search(certData):
            raise Bad("cert", f"{certPath} holds no PEM certificate")
        try:
            certificates = x509.load_pem_x509_certificates(certData)
        except ValueError as e:
            raise Bad("cert", f"{certPath}: a certificate does not parse ({_line(e)})") from None
        which, path = ("cert", certPath) if keyPath is None else ("key", keyPath)
        try:
            keyData = certData if keyPath is None else _read(keyPath)
        except ValueError as e:
            raise Bad("key", str(e)) from None
        if b"PRIVATE KEY-----" not in keyData:
            raise Bad(which, f"{path} holds no PEM private key")
        try:
            key = serialization.load_pem_private_key(keyData, password=None)
        except TypeError:
            raise Bad(which, f"{path}: the key is encrypted (give it without a passphrase)") from None
        except ValueError as e:
            raise Bad(which, f"{path}: the key does not parse ({_line(e)})") from None
        if _publicKey(key) != _publicKey(certificates[0]):
            raise Bad(which, f"the key in {path} is not the key of the certificate in {certPath}")
        return cls(
            crypto.X509.from_cryptography(certificates[0]),
            [crypto.X509.from_cryptography(c) for c in certificates[1:]],
            crypto.PKey.from_cryptography_key(key),
        )


@implementer(IPolicyForHTTPS)
class MemberTLS:
    """
    How one balancer's C{https://} members are checked, and what they are
    shown.

    @param authorities: certificates to trust instead of the system's
        (L{None}: the system's).
    @param verify: L{False} to check nothing.
    @param serverName: the name to send by SNI and check in every
        member's certificate, instead of the host of its URL (L{None}: that
        host).
    @param clientCertificate: a L{ClientCertificate} to show, or L{None}.
    """

    def __init__(
        self, authorities=None, verify=True, serverName=None, clientCertificate=None
    ):
        self.verify = verify
        self.serverName = serverName
        self._authorities = authorities
        self._clientCertificate = clientCertificate
        self._context = None
        self._creators = {}

    @classmethod
    def fromConfig(
        cls, caFile=None, verify=True, serverName=None, clientCert=None, clientKey=None
    ):
        """
        The policy of a balancer's C{tls_*} settings (file paths).

        @raise ValueError: as L{loadAuthorities}, or a
            L{ClientCertificateError}.
        """
        return cls(
            loadAuthorities(caFile) if caFile else None,
            verify,
            serverName,
            ClientCertificate.load(clientCert, clientKey) if clientCert else None,
        )

    def context(self):
        """
        The L{OpenSSL.SSL.Context} all connections to members share.
        """
        if self._context is None:
            options = {"raiseMinimumTo": MINIMUM_TLS}
            if self.verify:
                options["trustRoot"] = (
                    trustRootFromCertificates(self._authorities)
                    if self._authorities is not None
                    else platformTrust()
                )
            client = self._clientCertificate
            if client is not None:
                options.update(
                    privateKey=client.key, certificate=client.certificate, extraCertChain=client.chain
                )
            self._context = CertificateOptions(**options).getContext()
        return self._context

    def creatorFor(self, host):
        """
        The TLS connection creator for a member at C{host} (text).
        """
        creator = self._creators.get(host)
        if creator is None:
            name = self.serverName or host
            creator = self._creators[host] = MemberConnectionCreator(
                self.context(), name, self.verify
            )
        return creator

    def creatorForNetloc(self, hostname, port):
        """
        The same, for an L{twisted.web.client.Agent} (health checks).
        """
        return self.creatorFor(hostname.decode("ascii"))


#: The default: the system's authorities, names checked.
SYSTEM = MemberTLS()
