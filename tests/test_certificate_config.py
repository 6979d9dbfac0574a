"""
The certificate keys of C{[[listen]]} (C{certificates},
C{[[listen.certificate]]}, the C{ssl:} endpoint's files), checked when the
config is read, and how an SNI name picks a certificate's context; in
memory (the same over real sockets: L{tests.test_certificates}).
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from playbalancer._net.sni import ContextSet
from playbalancer.config import ConfigError, parseConfig
from playbalancer.config.tls import ListenerCertificates, readCertificate
from tests.test_certificates import DAY, NOW, certificateFiles


def _listen(text):
    from playbalancer.config import tomllib

    balancer = '\n[balancer.web]\n[[balancer.web.member]]\nname = "m"\nurl = "http://127.0.0.1:9"\n'
    return parseConfig(tomllib.loads(text + balancer))


class ConfigTests(SynchronousTestCase):
    """
    The certificate keys, checked when the config is read.
    """

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.key, self.cert = certificateFiles(self.directory, "default", ("default.example",))
        self.endpoint = f"ssl:0:privateKey={self.key}:certKey={self.cert}"

    def refused(self, text):
        with self.assertRaises(ConfigError) as caught:
            _listen(text)
        return str(caught.exception)

    def listener(self, keys=""):
        return f'[[listen]]\nendpoint = "{self.endpoint}"\nbalancer = "web"\n{keys}\n'

    def test_endpointAlone(self):
        certificates = _listen(self.listener()).listeners[0].certificates
        self.assertEqual(certificates.others, ())
        self.assertEqual(certificates.default.names, ("default.example",))
        self.assertEqual(certificates.default.path, self.cert)

    def test_plainListener(self):
        config = _listen('[[listen]]\nendpoint = "tcp:0"\nbalancer = "web"\n')
        self.assertIsNone(config.listeners[0].certificates)
        error = self.refused(
            f'[[listen]]\nendpoint = "tcp:0"\nbalancer = "web"\ncertificates = "{self.directory}"\n'
        )
        self.assertEqual(error, "listen[0].certificates: only on ssl: listeners")

    def test_directory(self):
        """
        Each C{.pem} file of the directory holds a key and its
        certificate, read in order of name; other files are left alone.
        """
        sites = os.path.join(self.directory, "sites")
        os.makedirs(sites)
        certificateFiles(sites, "b", ("b.example",), combined=True)
        certificateFiles(sites, "a", ("a.example", "*.a.example"), combined=True)
        with open(os.path.join(sites, "README"), "w") as f:
            f.write("not a certificate")
        certificates = _listen(self.listener(f'certificates = "{sites}"')).listeners[0].certificates
        self.assertEqual(
            [c.names for c in certificates.others], [("a.example", "*.a.example"), ("b.example",)]
        )
        self.assertEqual(
            self.refused(self.listener('certificates = "/no/such"')),
            "listen[0].certificates: /no/such: cannot read (No such file or directory)",
        )
        empty = os.path.join(self.directory, "empty")
        os.makedirs(empty)
        self.assertIn("no .pem files", self.refused(self.listener(f'certificates = "{empty}"')))
        # A certificate alone (no key in its file) is refused.
        certificateFiles(empty, "c", ("c.example",))
        error = self.refused(self.listener(f'certificates = "{empty}"'))
        self.assertIn("no PEM private key", error)

    def test_tableChecks(self):
        key, cert = certificateFiles(self.directory, "a", ("a.example",))
        table = f'[[listen.certificate]]\ncert = "{cert}"\nkey = "{key}"\n'
        error = self.refused(self.listener(table + 'names = ["bad name"]'))
        self.assertTrue(error.startswith("listen[0].certificate[0].names[0]: "), error)
        self.assertEqual(
            self.refused(self.listener(table + "colour = 1")),
            "listen[0].certificate[0].colour: unknown key",
        )
        wrongKey = f'[[listen.certificate]]\ncert = "{cert}"\nkey = "{self.key}"\n'
        error = self.refused(self.listener(wrongKey))
        self.assertEqual(
            error,
            f"listen[0].certificate[0]: {self.key}: this key is not the key of the certificate"
            f" in {cert}",
        )
        error = self.refused(self.listener("[[listen.certificate]]\n"))
        self.assertIn("listen[0].certificate[0].cert: missing", error)

    def test_expiredAtStart(self):
        certificateFiles(self.directory, "default", ("default.example",), notAfter=NOW - DAY)
        error = self.refused(self.listener())
        expected = f"listen[0].endpoint: {self.cert}: the certificate expired on "
        self.assertTrue(error.startswith(expected), error)

    def test_commonNameWithoutAltNames(self):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Old.Example")])
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW - DAY).not_valid_after(NOW + DAY)
            .sign(key, hashes.SHA256())
        )
        path = os.path.join(self.directory, "old.pem")
        with open(path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        self.assertEqual(readCertificate(path, path, "-").names, ("old.example",))

    def test_oldMethodRefused(self):
        self.endpoint += ":sslmethod=TLSv1_METHOD"
        self.assertIn("sslmethod=TLSv1_METHOD is not available", self.refused(self.listener()))


class NameLookupTests(SynchronousTestCase):
    """
    How an SNI name picks a certificate's context (in memory).
    """

    def test_lookup(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)

        def read(name, hosts):
            key, cert = certificateFiles(directory, name, hosts)
            return readCertificate(cert, key, "-")

        first = read("first", ("shared.example", "*.wild.example"))
        second = read("second", ("shared.example", "exact.wild.example", "*.wild.example"))
        default = read("default", ("default.example",))
        contexts = ContextSet(ListenerCertificates(default, (first, second)), [b"http/1.1"])
        toDefault = (
            None, b"", b"wild.example", b"a.b.wild.example", b"default.example", b"\xff.example"
        )
        named = (b"shared.example", b"SHARED.example.", b"exact.wild.example", b"x.wild.example")
        byName = {name: contexts.contextForName(name) for name in toDefault + named}
        firstContext = byName[b"shared.example"]
        self.assertIsNot(firstContext, contexts.default)
        self.assertIs(byName[b"SHARED.example."], firstContext)  # the first listed wins
        self.assertIs(byName[b"x.wild.example"], firstContext)
        exact = byName[b"exact.wild.example"]
        self.assertNotIn(exact, (firstContext, contexts.default))
        for name in toDefault:
            self.assertIs(byName[name], contexts.default, name)
