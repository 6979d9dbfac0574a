"""
TLS to C{https://} members: whom to trust, and whether to check at all.

By default a member's certificate must be valid for the host in its URL
(a name or an IP address) and chain to the system's trusted authorities,
as a browser would check it.  A balancer's C{tls_ca_file} trusts the
authorities in that file instead (a private CA, or a member's self-signed
certificate); C{tls_verify = false} encrypts without checking whom to,
for a test bench only.
"""

from __future__ import annotations

import re

from zope.interface import implementer

from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.web.iweb import IPolicyForHTTPS

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


def loadAuthorities(path):
    """
    The certificates in the PEM file at C{path}.

    @raise ValueError: naming what is wrong, when the file cannot be read
        or holds no certificate that parses.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    blocks = _PEM_CERTIFICATE.findall(data)
    if not blocks:
        raise ValueError(f"{path} holds no PEM certificate")
    try:
        return [Certificate.loadPEM(block) for block in blocks]
    except Exception as e:  # pyOpenSSL's errors name nothing useful
        raise ValueError(f"{path}: a certificate does not parse ({e})") from None


@implementer(IPolicyForHTTPS)
class MemberTLS:
    """
    How one balancer's C{https://} members are checked.

    @param authorities: certificates to trust instead of the system's
        (L{None}: the system's).
    @param verify: L{False} to check nothing.
    """

    def __init__(self, authorities=None, verify=True):
        self.verify = verify
        self._trustRoot = (
            trustRootFromCertificates(authorities) if authorities is not None else None
        )
        self._unchecked = None

    @classmethod
    def fromConfig(cls, caFile=None, verify=True):
        return cls(loadAuthorities(caFile) if caFile else None, verify)

    def creatorFor(self, host):
        """
        The TLS connection creator for a member at C{host} (text).
        """
        if not self.verify:
            if self._unchecked is None:
                self._unchecked = CertificateOptions(verify=False)
            return self._unchecked
        if self._trustRoot is None:
            return optionsForClientTLS(host)
        return optionsForClientTLS(host, trustRoot=self._trustRoot)

    def creatorForNetloc(self, hostname, port):
        """
        The same, for an L{twisted.web.client.Agent} (health checks).
        """
        return self.creatorFor(hostname.decode("ascii"))


#: The default: the system's authorities, names checked.
SYSTEM = MemberTLS()
