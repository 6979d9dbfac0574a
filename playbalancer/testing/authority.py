"""
A throw-away certificate authority for TLS tests: it issues server and
client certificates (valid, expired, for any names), and makes the TLS
options of a member that records the SNI names it is asked for and may
demand a client certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import os

__all__ = ["TestAuthority", "memberTLSOptions"]


def _altName(host):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem(key, cert):
    from cryptography.hazmat.primitives import serialization

    keyPEM = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return keyPEM, cert.public_bytes(serialization.Encoding.PEM)


class TestAuthority:
    """
    A CA (EC P-256) whose certificate is written to C{certPath} in
    C{directory}; L{issue} writes the certificates it signs there too.
    """

    def __init__(self, directory, name="playbalancer test CA"):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.certPath = os.path.join(directory, f"{name.replace(' ', '-')}.pem")
        with open(self.certPath, "wb") as f:
            f.write(_pem(self._key, self._cert)[1])

    def issue(self, label, hosts=("localhost", "127.0.0.1"), client=False, expired=False):
        """
        Sign a certificate for C{hosts} (names or IP addresses; for a
        client, the first is its common name), expired a day ago if
        C{expired}, and write it and its key as C{LABEL-key.pem} and
        C{LABEL-cert.pem}.

        @return: C{(keyPath, certPath)}.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        if expired:
            start, end = now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)
        else:
            start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([_altName(h) for h in hosts]), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        keyPEM, certPEM = _pem(key, cert)
        keyPath = os.path.join(self.directory, f"{label}-key.pem")
        certPath = os.path.join(self.directory, f"{label}-cert.pem")
        with open(keyPath, "wb") as f:
            f.write(keyPEM)
        with open(certPath, "wb") as f:
            f.write(certPEM)
        return keyPath, certPath


def memberTLSOptions(keyPath, certPath, clientAuthority=None):
    """
    TLS options for a member (as L{playbalancer.testing.MemberServer}'s
    C{tls}) serving the key and certificate at these paths.

    @param clientAuthority: the path of a CA certificate: clients must
        show a certificate it signed.
    @return: C{(options, serverNames)}: C{serverNames} gets the SNI name
        (text, or L{None} when none was sent) of every handshake.
    """
    from OpenSSL import crypto
    from twisted.internet.ssl import CertificateOptions

    with open(keyPath, "rb") as f:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, f.read())
    with open(certPath, "rb") as f:
        cert = crypto.load_certificate(crypto.FILETYPE_PEM, f.read())
    settings = {"privateKey": key, "certificate": cert}
    if clientAuthority is not None:
        with open(clientAuthority, "rb") as f:
            authority = crypto.load_certificate(crypto.FILETYPE_PEM, f.read())
        settings.update(verify=True, caCerts=[authority], requireCertificate=True)
    options = CertificateOptions(**settings)
    serverNames = []

    def sawName(connection):
        name = connection.get_servername()
        serverNames.append(name.decode("ascii") if name is not None else None)

    options.getContext().set_tlsext_servername_callback(sawName)
    return options, serverNames
