"""
How a node reaches etcd: TLS (whom to trust, which client certificate to
show) and the user and password it authenticates as.
"""

from __future__ import annotations

from twisted.internet.ssl import PrivateCertificate, optionsForClientTLS, trustRootFromCertificates
from twisted.logger import Logger
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from playbalancer.membertls import loadAuthorities
from playbalancer.tokens import exposure, readTokenFile

_log = Logger()


@implementer(IPolicyForHTTPS)
class StoreTLS:
    """
    TLS to C{https://} etcd endpoints: the certificate must be valid for
    the endpoint's host and chain to C{authorities} (L{None}: the system's);
    C{clientCertificate}, if given, is shown to etcd.
    """

    def __init__(self, authorities=None, clientCertificate=None):
        self._trustRoot = trustRootFromCertificates(authorities) if authorities else None
        self._client = clientCertificate

    def creatorForNetloc(self, hostname, port):
        return optionsForClientTLS(
            hostname.decode("ascii"), trustRoot=self._trustRoot, clientCertificate=self._client
        )


def loadClientCertificate(certFile, keyFile):
    """
    The certificate in C{certFile} with its private key from C{keyFile}
    (both PEM).

    @raise ValueError: naming what is wrong.
    """
    data = []
    for path in (certFile, keyFile):
        try:
            with open(path, "rb") as f:
                data.append(f.read())
        except OSError as e:
            raise ValueError(f"cannot read {path}: {e.strerror}") from None
    try:
        return PrivateCertificate.loadPEM(data[0] + b"\n" + data[1])
    except Exception as e:  # pyOpenSSL's errors name nothing useful
        raise ValueError(f"{certFile} and {keyFile} are not a PEM certificate and its key ({e})") from None


def readPassword(path):
    """
    The password in the file at C{path}, stripped; a warning when others
    than its owner may read it.

    @raise ValueError: saying why it cannot be used.
    """
    password = readTokenFile(path)
    problem = exposure(path)
    if problem is not None:
        _log.warn("cluster.password_file: {problem}", problem=problem)
    return password


def storeAccess(settings):
    """
    The TLS policy and the C{(user, password)} (or L{None}) of a
    L{playbalancer.config.ClusterConfig}.

    @raise ValueError: naming the key whose file cannot be used.
    """
    authorities = client = None
    if settings.caFile:
        try:
            authorities = loadAuthorities(settings.caFile)
        except ValueError as e:
            raise ValueError(f"cluster.ca_file: {e}") from None
    if settings.certFile:
        try:
            client = loadClientCertificate(settings.certFile, settings.keyFile)
        except ValueError as e:
            raise ValueError(f"cluster.cert_file: {e}") from None
    credentials = None
    if settings.user:
        password = settings.password
        if settings.passwordFile:
            try:
                password = readPassword(settings.passwordFile)
            except ValueError as e:
                raise ValueError(f"cluster.password_file: {e}") from None
        credentials = (settings.user, password)
    return StoreTLS(authorities, client), credentials
