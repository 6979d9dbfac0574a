"""
Self-signed certificates for TLS tests.
"""

from __future__ import annotations

__all__ = ["writeSelfSigned"]


def writeSelfSigned(
    directory,
    hosts=("localhost", "127.0.0.1"),
    notBefore=None,
    notAfter=None,
    keyName="key.pem",
    certName="cert.pem",
    commonName=None,
):
    """
    Write a fresh self-signed certificate (EC P-256) for C{hosts} (names,
    wildcard names or IP addresses, all in its subjectAltName) and its
    key into C{directory}.

    @param notBefore: when it becomes valid (an aware C{datetime}; by
        default five minutes ago).
    @param notAfter: when it expires (by default in a day); one in the
        past makes an expired certificate.
    @param keyName: the key's file name; the same as C{certName} writes
        the key, then the certificate, into one file.
    @param commonName: its subject's common name (by default the first
        host).
    @return: C{(keyPath, certPath)}.
    """
    import datetime
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def altName(host):
        try:
            return x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            return x509.DNSName(host)

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, commonName if commonName else hosts[0])]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    if notBefore is None:
        notBefore = now - datetime.timedelta(minutes=5)
    if notAfter is None:
        notAfter = now + datetime.timedelta(days=1)
    if notBefore >= notAfter:
        notBefore = notAfter - datetime.timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(notBefore)
        .not_valid_after(notAfter)
        .add_extension(x509.SubjectAlternativeName([altName(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    keyPath = os.path.join(directory, keyName)
    certPath = os.path.join(directory, certName)
    keyPEM = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    certPEM = cert.public_bytes(serialization.Encoding.PEM)
    if keyPath == certPath:
        _replace(certPath, keyPEM + certPEM)
    else:
        _replace(keyPath, keyPEM)
        _replace(certPath, certPEM)
    return keyPath, certPath


def _replace(path, data):
    """
    Write C{data} to C{path} as a renewal would: a new file moved over the
    old one.
    """
    import os

    temporary = path + ".new"
    with open(temporary, "wb") as f:
        f.write(data)
    os.replace(temporary, path)
