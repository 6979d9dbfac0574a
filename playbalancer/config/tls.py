"""
The certificates of a TLS (C{ssl:}) listener: the default one named by
its endpoint string (C{privateKey=}, C{certKey=}, C{extraCertChain=}),
the PEM files of its C{certificates} directory and its
C{[[listen.certificate]]} tables, read and checked when the config is
read (at start and at every reload): a file that cannot be read, a key
that is not its certificate's, or a certificate already expired is a
L{ConfigError} naming the key.

Each certificate answers for the host names of its subjectAltName DNS
entries (or its subject's common name when it has none), or for the
C{names} its table gives; see L{playbalancer._net.sni} for how a client's
SNI name picks one.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass, field

from playbalancer.config.values import _HOST_NAME, ConfigError, _Table, _array, _show, _string

__all__ = ["Certificate", "ListenerCertificates", "listenerCertificates", "readCertificate"]

#: One PEM block: its label and the whole block.
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.+?-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class Certificate:
    """
    One certificate with its key and chain, as read from its files.

    @ivar names: the host names it answers for, lower case; C{*.} starts
        a wildcard for one label.
    @ivar notAfter: when it expires (an aware UTC C{datetime}).
    @ivar chain: the PEM certificates, its own first.
    @ivar key: the PEM private key (never shown in a C{repr}).
    """

    path: str
    keyPath: str
    names: tuple
    notAfter: datetime.datetime
    chain: tuple = field(repr=False)
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class ListenerCertificates:
    """
    Every certificate of one TLS listener.

    @ivar default: the endpoint string's certificate, for clients whose
        SNI name (or none) no other certificate answers for.
    @ivar others: the C{[[listen.certificate]]} tables' certificates in
        order, then the C{certificates} directory's by file name.
    @ivar dhParameters: the endpoint's C{dhParameters=} file, if any.
    """

    default: Certificate
    others: tuple = ()
    dhParameters: str = None

    @property
    def all(self):
        """
        Every certificate, in the order their names are looked up.
        """
        return self.others + (self.default,)


def listenerCertificates(table, path, endpoint):
    """
    Read the C{certificates} and C{certificate} keys of a C{[[listen]]}
    table (a L{_Table} at C{path}) and the certificates they and the
    C{endpoint} string name.

    @return: a L{ListenerCertificates} for an C{ssl:} endpoint, else
        L{None}.
    @raise ConfigError: naming the key of the first problem.
    """
    directory = table.get("certificates", _string)
    tables = table.get("certificate", _array, [])
    options = _tlsOptions(endpoint)
    if options is None:
        for key, given in (("certificates", directory), ("certificate", tables)):
            if given:
                raise ConfigError(table.at(key), "only on ssl: listeners")
        return None
    where = table.at("endpoint")
    method = options.get("sslmethod")
    if method not in (None, "TLS_METHOD", "SSLv23_METHOD"):
        raise ConfigError(
            where, f"sslmethod={method} is not available: TLS 1.2 and 1.3 are offered"
        )
    keyPath = options.get("privateKey", "server.pem")
    default = readCertificate(
        options.get("certKey", keyPath), keyPath, where, extraChain=options.get("extraCertChain")
    )
    others = [
        _certificateTable(item, f"{path}.certificate[{index}]")
        for index, item in enumerate(tables)
    ]
    if directory is not None:
        others.extend(_directory(directory, table.at("certificates")))
    return ListenerCertificates(default, tuple(others), options.get("dhParameters"))


def _tlsOptions(endpoint):
    """
    The options of an C{ssl:} endpoint string, or L{None} for another kind.
    """
    from twisted.internet.endpoints import _parse

    args, options = _parse(endpoint)
    return options if args and args[0] == "ssl" else None


def _certificateTable(data, path):
    table = _Table(data, path)
    certPath = table.get("cert", _string, required=True)
    keyPath = table.get("key", _string, certPath)
    names = table.get("names", _names)
    table.done()
    return readCertificate(certPath, keyPath, path, names)


def _names(value, path):
    if not isinstance(value, list) or not value:
        raise ConfigError(path, f"expected a non-empty array of host names, got {_show(value)}")
    for index, name in enumerate(value):
        plain = name[2:] if isinstance(name, str) and name.startswith("*.") else name
        if not isinstance(plain, str) or not _HOST_NAME.match(plain):
            raise ConfigError(
                f"{path}[{index}]", f"expected a host name or *.domain, got {_show(name)}"
            )
    return tuple(name.lower().rstrip(".") for name in value)


def _directory(directory, key):
    """
    The certificates of a directory: each C{*.pem} file holds a private
    key and its certificate chain (own certificate first), read in order
    of file name; other files are left alone.
    """
    try:
        names = os.listdir(directory)
    except OSError as e:
        raise ConfigError(key, f"{directory}: cannot read ({e.strerror})")
    paths = [
        os.path.join(directory, name)
        for name in sorted(names)
        if name.endswith(".pem") and not name.startswith(".")
    ]
    if not paths:
        raise ConfigError(key, f"{directory}: no .pem files")
    return [readCertificate(path, path, key) for path in paths]


#: How far ahead of our clock a certificate's start may be (clocks differ).
NOT_YET_VALID_SLACK = datetime.timedelta(minutes=5)


def readCertificate(certPath, keyPath, key, names=None, extraChain=None, now=None):
    """
    Read a certificate (and the chain after it) from C{certPath} and its
    private key from C{keyPath} (the same file may hold both), and check
    them.

    @param key: the config key that names them, for errors.
    @param names: the host names it answers for (by default its own).
    @param extraChain: a file of more chain certificates.
    @param now: the time to check its expiry against (by default now).
    @raise ConfigError: when a file cannot be read, holds no certificate
        or no unencrypted key, the key is not the certificate's, or the
        certificate has expired.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    certificates = _blocks(certPath, key, "CERTIFICATE")
    if extraChain is not None:
        certificates += _blocks(extraChain, key, "CERTIFICATE")
    try:
        leaf = x509.load_pem_x509_certificate(certificates[0])
        chain = [x509.load_pem_x509_certificate(block) for block in certificates[1:]]
    except ValueError as e:
        raise ConfigError(key, f"{certPath}: not a valid certificate ({e})")
    keyBlock = _blocks(keyPath, key, "PRIVATE KEY")[0]
    try:
        privateKey = serialization.load_pem_private_key(keyBlock, password=None)
    except TypeError:
        raise ConfigError(key, f"{keyPath}: an encrypted private key (it must not need a password)")
    except ValueError as e:
        raise ConfigError(key, f"{keyPath}: not a valid private key ({e})")
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if privateKey.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise ConfigError(
            key, f"{keyPath}: this key is not the key of the certificate in {certPath}"
        )
    notAfter = leaf.not_valid_after_utc
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    for index, certificate in enumerate([leaf] + chain):
        which = "the certificate" if index == 0 else f"chain certificate {index}"
        expired = certificate.not_valid_after_utc
        if expired <= now:
            raise ConfigError(key, f"{certPath}: {which} expired on {expired:%Y-%m-%d %H:%M:%S} UTC")
        starts = certificate.not_valid_before_utc
        if starts > now + NOT_YET_VALID_SLACK:
            raise ConfigError(
                key, f"{certPath}: {which} is not valid before {starts:%Y-%m-%d %H:%M:%S} UTC"
            )
    found = Certificate(
        path=certPath,
        keyPath=keyPath,
        names=names if names is not None else _namesOf(leaf),
        notAfter=notAfter,
        chain=tuple(certificates),
        key=keyBlock,
    )
    # What OpenSSL itself refuses (a key too small for its security
    # level, say) is refused here too, naming the file, not at start.
    from OpenSSL import SSL

    from playbalancer._net.sni import contextFor

    try:
        contextFor(found, ())
    except SSL.Error as e:
        reasons = "; ".join(entry[2] for entry in e.args[0] if entry[2]) if e.args else str(e)
        raise ConfigError(key, f"{certPath}: OpenSSL cannot use it ({reasons or e})")
    return found


def _blocks(path, key, kind):
    """
    The PEM blocks of C{kind} (C{"CERTIFICATE"}, or C{"PRIVATE KEY"} for
    any kind of private key) in the file at C{path}, at least one.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(key, f"{path}: cannot read ({e.strerror})")
    found = [m.group(0) for m in _PEM_BLOCK.finditer(data) if m.group(1).decode().endswith(kind)]
    if kind == "CERTIFICATE":
        found = [block for block in found if block.startswith(b"-----BEGIN CERTIFICATE-----")]
    if not found:
        what = "certificate" if kind == "CERTIFICATE" else "private key"
        raise ConfigError(key, f"{path}: no PEM {what} in it")
    return found


def _namesOf(certificate):
    """
    The DNS names of a certificate's subjectAltName, or (with none) its
    subject's common name, lower case.
    """
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        alternatives = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = alternatives.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [
            attribute.value
            for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if isinstance(attribute.value, str)
        ]
    return tuple(name.lower().rstrip(".") for name in names)
