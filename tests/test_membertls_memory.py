"""
TLS to C{https://} members, in memory: the C{tls_*} settings checked
(one line naming the key), the defaults, the words for TLS failures, and
a member down for one cause logged once.  (Over real sockets:
L{tests.test_membertls}.)
"""

from __future__ import annotations

import os

from OpenSSL import SSL
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.config import ConfigError, parseConfig, tomllib
from playbalancer.failures import describe
from playbalancer.http.upstream import HandshakeTimeout
from playbalancer.membertls import MemberTLS
from playbalancer.testing.authority import TestAuthority

from tests.test_membertls import configText


def _config(**settings):
    text = configText("https://127.0.0.1:9", list(settings.items()))
    return parseConfig(tomllib.loads(text))


class ConfigTests(SynchronousTestCase):
    """
    Bad TLS settings: one line naming the key.
    """

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        self.ca = TestAuthority(self.directory)
        self.key, self.cert = self.ca.issue("client", ("playbalancer",), client=True)

    def assertBadAt(self, key, **settings):
        error = self.assertRaises(ConfigError, _config, **settings)
        self.assertEqual(error.path, f"balancer.web.{key}")
        self.assertEqual(len(str(error).splitlines()), 1, str(error))
        return error.message

    def test_good(self):
        config = _config(tls_client_cert=self.cert, tls_client_key=self.key, tls_server_name="a.b")
        web = config.balancers["web"]
        self.assertEqual(
            (web.tlsClientCert, web.tlsClientKey, web.tlsServerName), (self.cert, self.key, "a.b")
        )

    def test_missingCertificate(self):
        message = self.assertBadAt("tls_client_cert", tls_client_cert="/nonexistent/c.pem")
        self.assertIn("cannot read", message)

    def test_keyWithoutCertificate(self):
        self.assertBadAt("tls_client_key", tls_client_key=self.key)

    def test_noKey(self):
        message = self.assertBadAt("tls_client_cert", tls_client_cert=self.cert)
        self.assertIn("no PEM private key", message)

    def test_notACertificate(self):
        message = self.assertBadAt(
            "tls_client_cert", tls_client_cert=self.key, tls_client_key=self.key
        )
        self.assertIn("no PEM certificate", message)

    def test_keyOfAnotherCertificate(self):
        otherKey, _ = self.ca.issue("other", ("x",), client=True)
        message = self.assertBadAt(
            "tls_client_key", tls_client_cert=self.cert, tls_client_key=otherKey
        )
        self.assertIn("is not the key of the certificate", message)

    def test_encryptedKey(self):
        from cryptography.hazmat.primitives import serialization

        with open(self.key, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        locked = os.path.join(self.directory, "locked.pem")
        with open(locked, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(b"secret"),
                )
            )
        message = self.assertBadAt(
            "tls_client_key", tls_client_cert=self.cert, tls_client_key=locked
        )
        self.assertIn("encrypted", message)

    def test_badServerName(self):
        for bad in ("", "no spaces.example", "-a.example", "a..b", 3):
            self.assertBadAt("tls_server_name", tls_server_name=bad)

    def test_serverNameMayBeAnAddress(self):
        config = _config(tls_server_name="::1")
        self.assertEqual(config.balancers["web"].tlsServerName, "::1")


class DefaultsTests(SynchronousTestCase):
    def test_tls12AtLeast(self):
        """
        TLS 1.0 and 1.1 are never offered to members.
        """
        options = MemberTLS().context().set_options(0)
        self.assertTrue(options & SSL.OP_NO_TLSv1)
        self.assertTrue(options & SSL.OP_NO_TLSv1_1)
        self.assertFalse(options & SSL.OP_NO_TLSv1_2)

    def test_verifiedByDefault(self):
        creator = MemberTLS().creatorFor("example.com")
        self.assertTrue(creator.verify)
        self.assertEqual(creator.serverName, b"example.com")

    def test_serverNameForEveryMember(self):
        tls = MemberTLS(serverName="app.internal")
        self.assertEqual(tls.creatorFor("127.0.0.1").serverName, b"app.internal")
        self.assertEqual(tls.creatorForNetloc(b"10.0.0.1", 443).name, "app.internal")


class DescribeTests(SynchronousTestCase):
    """
    The words for TLS failures that are not certificate checks.
    """

    def test_openSSLError(self):
        error = SSL.Error([("SSL routines", "", "tlsv13 alert certificate required")])
        self.assertEqual(describe(Failure(error)), "TLS: tlsv13 alert certificate required")

    def test_handshakeTimeout(self):
        self.assertEqual(describe(Failure(HandshakeTimeout())), "TLS handshake timeout")


class LoggedOncePerCauseTests(SynchronousTestCase):
    """
    A member down for one cause is logged once, however often it fails for
    it, and again when the cause changes (in memory, on a fake clock).
    """

    def test_logged(self):
        from twisted.internet.task import Clock

        from playbalancer.balancer import Balancer, Member
        from playbalancer.schedulers import RoundRobinScheduler

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        clock = Clock()
        balancer = Balancer("web", RoundRobinScheduler(), [Member("app1", "https://a:1")], clock)
        member = balancer.member("app1")
        expired = "TLS: certificate verify failed: certificate has expired"
        for _ in range(3):
            balancer.memberFailed(member, expired)
            clock.advance(1)
        balancer.checkResult(member, False, expired, 0.01, 2, 3)
        balancer.memberFailed(member, "connection refused")
        balancer.checkResult(member, False, "connection refused", 0.01, 2, 3)
        logged = [
            (e["playbalancer_event"], e["reason"])
            for e in events
            if e.get("playbalancer_event", "").startswith("member.down")
        ]
        self.assertEqual(
            logged,
            [("member.down", expired), ("member.down.reason", "connection refused")],
        )
