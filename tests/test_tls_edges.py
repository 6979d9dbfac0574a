"""
TLS edge cases found by the review of listener certificates and TLS to
members.

These failed on the code as first merged:
  MemberReviewTests.test_postAfterLateClientCertificateRefusal
  IdlePoolTests.test_tlsIdleClosedByMemberNotReused
  UnusableCertificateTests.test_checkNamesIt, test_reloadNamesIt
  NotYetValidTests.test_notYetValidRefused

The rest pin settings no other test would notice losing:
session resumption off, h2 on an SNI-chosen context, the TLS 1.2 cipher
list, extraCertChain sent, chain errors at depth > 0, the not-yet-valid
reason, and the plain-HTTP control of the idle-pool test.
"""

from __future__ import annotations

import os
import time

from OpenSSL import SSL
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS

from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from tests.test_certificates import DAY, NOW, ClientTLS, Probe, TLSServiceCase, subjectOf
from tests.test_membertls import MemberTLSCase, configText, pause


@implementer(IOpenSSLClientConnectionCreator)
class _ResumingTLS:
    """
    A client whose connections share one context (so that a session may
    be offered again), at one TLS version.
    """

    def __init__(self, serverName, version):
        self.serverName = serverName
        self.context = SSL.Context(SSL.TLS_METHOD)
        self.context.set_min_proto_version(version)
        self.context.set_max_proto_version(version)
        self.session = None

    def clientConnectionForTLS(self, tlsProtocol):
        connection = SSL.Connection(self.context, None)
        connection.set_tlsext_host_name(self.serverName.encode("ascii"))
        if self.session is not None:
            connection.set_session(self.session)
        connection.set_app_data(tlsProtocol)
        connection.set_connect_state()
        return connection


def _reused(connection):
    from OpenSSL._util import lib

    return bool(lib.SSL_session_reused(connection._ssl))


async def _handshake(port, creator):
    endpoint = wrapClientTLS(creator, TCP4ClientEndpoint(reactor, "127.0.0.1", port))
    probe = Probe()
    await connectProtocol(endpoint, probe)
    return await probe.handshake


class ListenerReviewTests(TLSServiceCase):
    async def test_h2OnSNIChosenCertificate(self):
        """
        A client that offers h2 and http/1.1 and names a.example (a
        non-default certificate) negotiates h2, as with the default.
        """
        (member,) = self.startMembers("app1")
        await self.startWith(self.configText(member))
        for serverName in (None, "a.example"):
            probe = await self.connect(serverName, [b"h2", b"http/1.1"])
            self.assertEqual(probe.protocol, b"h2", serverName)

    async def test_noResumption(self):
        """
        No session resumption, TLS 1.2 or 1.3 (README: no session cache
        nor tickets).
        """
        (member,) = self.startMembers("app1")
        await self.startWith(self.configText(member))
        for version in (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION):
            client = _ResumingTLS("a.example", version)
            first = await _handshake(self.tlsPort, client)
            self.addCleanup(first.transport.abortConnection)
            self.assertEqual(await first.request(), b"HTTP/1.1 200 OK")
            await pause()
            client.session = first.transport.getHandle().get_session()
            second = await _handshake(self.tlsPort, client)
            self.addCleanup(second.transport.abortConnection)
            self.assertFalse(_reused(second.transport.getHandle()), version)

    async def test_trailingDotName(self):
        (member,) = self.startMembers("app1")
        await self.startWith(self.configText(member))
        probe = await self.connect("A.Example.")
        self.assertEqual(subjectOf(probe.certificate), "a")


class MemberReviewTests(MemberTLSCase):
    async def test_postAfterLateClientCertificateRefusal(self):
        """
        Over TLS 1.3 a member refuses a missing client certificate after
        our side of the handshake is done: the POST was sent on the
        connection, but the member never saw it (as with a refused
        server certificate), so it must go to the next member, not end
        in a 502.
        """
        bad = self.startMember("bad", clientAuthority=self.ca.certPath)
        good = self.startMember("good")
        text = configText(bad.url, [("tls_ca_file", self.ca.certPath)], retry=60)
        text += f'[[balancer.web.member]]\nname = "app2"\nurl = "{good.url}"\n'
        await self.startWith(text)
        codes = [(await self.get("/echo", method="POST"))[0] for _ in range(4)]
        self.assertEqual(bad.seen, [])
        self.assertEqual(codes, [200] * 4)


class _Recording:
    """
    A member (twisted.web) whose server-side connections are kept, so a
    test can close one from the member's side.
    """

    def __init__(self, tls=None):
        from twisted.web.resource import Resource
        from twisted.web.server import Site
        from twisted.web.static import Data

        root = Resource()
        root.putChild(b"", Data(b"ok", "text/plain"))
        self.channels = []
        site = Site(root)
        build = site.buildProtocol

        def buildProtocol(addr):
            channel = build(addr)
            self.channels.append(channel)
            return channel

        site.buildProtocol = buildProtocol
        if tls is None:
            self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        else:
            self.port = reactor.listenSSL(0, site, tls, interface="127.0.0.1")

    def socketOf(self, channel):
        transport = getattr(channel, "_channel", channel).transport
        while not hasattr(transport, "socket"):
            transport = transport.transport
        return transport.socket


class IdlePoolTests(MemberTLSCase):
    async def idleAfterMemberClosed(self, scheme):
        """
        A keep-alive connection to a member sits idle in the pool; the
        member closes it (FIN on the wire, not yet seen by the reactor);
        what the pool then hands out.
        """
        import socket

        from playbalancer.testing.authority import memberTLSOptions

        tls = None
        if scheme == "https":
            tls, _ = memberTLSOptions(*self.ca.issue("idle"))
        member = _Recording(tls)
        self.addCleanup(member.port.stopListening)
        url = f"{scheme}://127.0.0.1:{member.port.getHost().port}"
        await self.startWith(configText(url, [("tls_ca_file", self.ca.certPath)]))
        self.assertEqual((await self.get("/"))[0], 200)
        await pause()
        pools = self.service.runtime.pools["web"]
        (pool,) = pools._pools.values()
        self.assertEqual(len(pool.idle), 1)
        (channel,) = member.channels
        member.socketOf(channel).shutdown(socket.SHUT_RDWR)
        time.sleep(0.1)  # the FIN is in, the reactor has not run
        return pool.idleConnection()

    async def test_plainIdleClosedByMemberNotReused(self):
        self.assertIsNone(await self.idleAfterMemberClosed("http"))

    async def test_tlsIdleClosedByMemberNotReused(self):
        """
        The same over TLS: the pool must not hand out a connection the
        member already closed (a POST on it ends in a 502, as it is not
        retried).
        """
        self.assertIsNone(await self.idleAfterMemberClosed("https"))


def _weakCertificate(directory, name="weak"):
    """
    A self-signed RSA-1024 certificate for weak.example and its key in
    one file: valid, not expired, its key matches -- and OpenSSL's default
    security level refuses it ("ee key too small").
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    os.makedirs(directory, exist_ok=True)
    key = rsa.generate_private_key(65537, 1024)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weak.example")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("weak.example")]), False)
        .sign(key, hashes.SHA256())
    )
    path = os.path.join(directory, f"{name}.pem")
    with open(path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            + cert.public_bytes(serialization.Encoding.PEM)
        )
    return path


class UnusableCertificateTests(TLSServiceCase):
    """
    A certificate that reads and checks (key matches, not expired) but
    that OpenSSL will not use: the config check passes it.
    """

    def weakTables(self):
        path = _weakCertificate(self.directory)
        return f'[[listen.certificate]]\ncert = "{path}"\n'

    def test_checkNamesIt(self):
        """
        C{playbalancer check} (and start-up) must refuse it with a line
        naming listen[0].certificate[0]: it says OK.
        """
        import io

        from playbalancer.ctl.check import checkConfig
        from playbalancer.ctl.client import CommandError

        (member,) = self.startMembers("app1")
        path = os.path.join(self.directory, "playbalancer.toml")
        with open(path, "w") as f:
            f.write(self.configText(member, tables=self.weakTables()))
        out = io.StringIO()
        with self.assertRaises(CommandError) as caught:
            checkConfig(path, reactor, out)
        self.assertTrue(str(caught.exception).startswith("listen[0].certificate[0]: "))

    async def test_reloadNamesIt(self):
        """
        A reload to it is refused (good), but the line names
        listen[0].endpoint and no file, only OpenSSL's words.
        """
        (member,) = self.startMembers("app1")
        await self.startWith(self.configText(member))
        with open(self.configPath, "w") as f:
            f.write(self.configText(member, tables=self.weakTables()))
        result = self.reload()
        self.assertFalse(result.ok)
        self.assertTrue(result.error.startswith("listen[0].certificate[0]: "), result.error)


def _issue(subject, issuerKey=None, issuerName=None, ca=False, hosts=(), start=-1, end=30):
    """
    A certificate (cryptography) and its key: for C{hosts}, valid from
    C{start} to C{end} days from now, signed by C{issuerKey} (self-signed
    without one).
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuerName or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=start))
        .not_valid_after(now + datetime.timedelta(days=end))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if hosts:
        names = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    return builder.sign(issuerKey or key, hashes.SHA256()), key


def _pemOf(*certificates):
    from cryptography.hazmat.primitives import serialization

    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _memberOptions(leaf, key, chain=()):
    from OpenSSL import crypto
    from twisted.internet.ssl import CertificateOptions

    return CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),
        certificate=crypto.X509.from_cryptography(leaf),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in chain],
    )


class ChainTests(MemberTLSCase):
    """
    Kill survivors: nothing in the merged tests has a chain with an
    intermediate, nor a certificate not yet valid.
    """

    async def memberWith(self, options):
        from playbalancer.testing import MemberServer

        member = MemberServer("chained", reactor, tls=options).start()
        self.addCleanup(member.stop)
        return member

    async def reasonFor(self, options, rootPEM):
        root = os.path.join(self.directory, "root.pem")
        with open(root, "wb") as f:
            f.write(rootPEM)
        member = await self.memberWith(options)
        await self.startWith(configText(member.url, [("tls_ca_file", root)]))
        code = (await self.get("/"))[0]
        return code, (await self.status())["down_reason"], member

    async def test_goodChainServes(self):
        root, rootKey = _issue("root", ca=True)
        middle, middleKey = _issue("middle", rootKey, root.subject, ca=True)
        leaf, leafKey = _issue("leaf", middleKey, middle.subject, hosts=("127.0.0.1",))
        code, reason, _ = await self.reasonFor(_memberOptions(leaf, leafKey, [middle]), _pemOf(root))
        self.assertEqual((code, reason), (200, None))

    async def test_expiredIntermediateRefused(self):
        """
        An intermediate that expired (the error is at depth 1): refused,
        and the member never sees the request.
        """
        root, rootKey = _issue("root", ca=True)
        middle, middleKey = _issue("middle", rootKey, root.subject, ca=True, start=-10, end=-1)
        leaf, leafKey = _issue("leaf", middleKey, middle.subject, hosts=("127.0.0.1",))
        code, reason, member = await self.reasonFor(
            _memberOptions(leaf, leafKey, [middle]), _pemOf(root)
        )
        self.assertIn(code, (502, 503))
        self.assertTrue(reason.startswith("TLS: certificate verify failed: certificate has expired"), reason)
        self.assertEqual(member.seen, [])

    async def test_untrustedRootInChainRefused(self):
        root, rootKey = _issue("root", ca=True)
        stranger, strangerKey = _issue("stranger", ca=True)
        leaf, leafKey = _issue("leaf", strangerKey, stranger.subject, hosts=("127.0.0.1",))
        code, reason, member = await self.reasonFor(
            _memberOptions(leaf, leafKey, [stranger]), _pemOf(root)
        )
        self.assertIn(code, (502, 503))
        self.assertEqual(reason, "TLS: certificate verify failed: self-signed certificate in certificate chain")
        self.assertEqual(member.seen, [])

    async def test_notYetValidReason(self):
        root, rootKey = _issue("root", ca=True)
        leaf, leafKey = _issue("leaf", rootKey, root.subject, hosts=("127.0.0.1",), start=2, end=30)
        code, reason, member = await self.reasonFor(_memberOptions(leaf, leafKey), _pemOf(root))
        self.assertIn(code, (502, 503))
        when = leaf.not_valid_before_utc
        self.assertEqual(
            reason,
            "TLS: certificate verify failed: certificate is not yet valid"
            f" (not before {when:%Y-%m-%d %H:%M:%S} UTC)",
        )


@implementer(IOpenSSLClientConnectionCreator)
class _CipherClient:
    def __init__(self, ciphers):
        self.ciphers = ciphers

    def clientConnectionForTLS(self, tlsProtocol):
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_max_proto_version(SSL.TLS1_2_VERSION)
        context.set_cipher_list(self.ciphers)
        connection = SSL.Connection(context, None)
        connection.set_app_data(tlsProtocol)
        connection.set_connect_state()
        return connection


class ListenerSurvivorTests(TLSServiceCase):
    """
    Kill survivors: the cipher list and the chain are untested.
    """

    async def test_cbcOnlyClientRefused(self):
        (member,) = self.startMembers("app1")
        await self.startWith(self.configText(member))
        with self.assertRaises(SSL.Error):
            await _handshake(self.tlsPort, _CipherClient(b"ECDHE-ECDSA-AES128-SHA"))
        probe = await _handshake(self.tlsPort, _CipherClient(b"ECDHE-ECDSA-AES128-GCM-SHA256"))
        self.addCleanup(probe.transport.abortConnection)

    async def test_extraCertChainSent(self):
        root, _ = _issue("some intermediate", ca=True)
        chain = os.path.join(self.directory, "chain.pem")
        with open(chain, "wb") as f:
            f.write(_pemOf(root))
        self.endpoint += f":extraCertChain={chain}"
        (member,) = self.startMembers("app1")
        await self.startWith(self.configText(member))
        for name in (None, "a.example"):
            probe = await self.connect(name)
            sent = probe.transport.getHandle().get_peer_cert_chain()
            self.assertEqual(len(sent), 2 if name is None else 1, name)


class NotYetValidTests(TLSServiceCase):
    async def test_notYetValidRefused(self):
        """
        A renewed certificate that is not valid yet (notBefore in two
        days: a clock or issuance mistake) is served to every client,
        which all refuse it; a reload should refuse it as it refuses an
        expired one.
        """
        (member,) = self.startMembers("app1")
        await self.startWith(self.configText(member))
        self.write("a", ("a.example",), notBefore=NOW + 2 * DAY, notAfter=NOW + 30 * DAY)
        result = self.reload()
        self.assertFalse(result.ok, "a not-yet-valid certificate was installed")
