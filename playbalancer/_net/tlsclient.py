"""
TLS connections to one member: the name sent by SNI and checked in its
certificate, and a reason in words when the check fails.

A failed check ends the handshake through the TLS protocol's
C{failVerification} (as Twisted's own client options do), with a
L{CertificateRejected} that says why: "certificate has expired", not
OpenSSL's bare "certificate verify failed".
"""

from __future__ import annotations

import datetime

from OpenSSL import SSL
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

_log = Logger()

#: OpenSSL's certificate check errors (X509_V_ERR_*) that members run
#: into, in OpenSSL's own words.
VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    23: "certificate revoked",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose",
}

_NOT_YET_VALID, _EXPIRED = 9, 10


class CertificateRejected(Exception):
    """
    A member's certificate did not pass the check; its text says why.
    """


def verifyErrorText(errno, certificate):
    """
    Words for OpenSSL's certificate check error C{errno} about
    C{certificate} (an L{OpenSSL.crypto.X509}).
    """
    text = VERIFY_ERRORS.get(errno, f"X509 verify error {errno}")
    if errno in (_NOT_YET_VALID, _EXPIRED):
        if errno == _NOT_YET_VALID:
            edge, stamp = "not before", certificate.get_notBefore()
        else:
            edge, stamp = "not after", certificate.get_notAfter()
        when = datetime.datetime.strptime(stamp.decode("ascii"), "%Y%m%d%H%M%SZ")
        text += f" ({edge} {when:%Y-%m-%d %H:%M:%S} UTC)"
    return "certificate verify failed: " + text


def namesOf(certificate):
    """
    The host names and addresses a certificate (an
    L{OpenSSL.crypto.X509}) is for: its subject alternative names.
    """
    from cryptography import x509

    try:
        extension = certificate.to_cryptography().extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except x509.ExtensionNotFound:
        return []
    names = extension.value
    return names.get_values_for_type(x509.DNSName) + [
        str(address) for address in names.get_values_for_type(x509.IPAddress)
    ]


def isAddress(name):
    """
    Whether C{name} is an IP address (then it is never sent by SNI, as RFC
    6066 says).
    """
    return isIPAddress(name) or isIPv6Address(name)


def mismatchText(certificate, name):
    """
    L{None} when C{certificate} is for C{name} (a host name or an IP
    address), else the words saying it is not.
    """
    from service_identity import CertificateError, VerificationError
    from service_identity.cryptography import (
        verify_certificate_hostname,
        verify_certificate_ip_address,
    )

    check = verify_certificate_ip_address if isAddress(name) else verify_certificate_hostname
    try:
        check(certificate.to_cryptography(), name)
    except (VerificationError, CertificateError):
        names = ", ".join(namesOf(certificate)) or "no name"
        return f"certificate verify failed: not valid for {name} (it is for {names})"
    return None


class _Check:
    """
    The certificate check of one connection: OpenSSL checks the chain,
    then this the name; the first failure ends the handshake.
    """

    def __init__(self, name):
        self.name = name
        self.rejected = False

    def __call__(self, connection, certificate, errno, depth, ok):
        try:
            if ok and depth != 0:
                return True
            if ok:
                why = mismatchText(certificate, self.name)
            else:
                why = verifyErrorText(errno, certificate)
            if why is None:
                return True
            if not self.rejected:
                self.rejected = True
                connection.get_app_data().failVerification(Failure(CertificateRejected(why)))
            return False
        except BaseException:
            # An exception must not escape into OpenSSL: log it, refuse.
            _log.failure("while checking a member's certificate")
            return False


@implementer(IOpenSSLClientConnectionCreator)
class MemberConnectionCreator:
    """
    Makes the TLS connections to one member.

    @param context: the L{OpenSSL.SSL.Context} shared by them (trust,
        client certificate, protocol versions).
    @param name: the host name (sent by SNI unless an IP address) or IP
        address the member's certificate must be for.
    @param verify: L{False} to check no certificate at all (the name is
        still sent).
    """

    def __init__(self, context, name, verify=True):
        self._context = context
        self.name = name
        self.verify = verify
        self.serverName = None if isAddress(name) else name.encode("idna")

    def clientConnectionForTLS(self, tlsProtocol):
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        connection.set_connect_state()
        if self.serverName is not None:
            connection.set_tlsext_host_name(self.serverName)
        if self.verify:
            connection.set_verify(
                SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _Check(self.name)
            )
        else:
            connection.set_verify(SSL.VERIFY_NONE)
        return connection
