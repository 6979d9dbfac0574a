"""
Certificates of TLS listeners: several on one listener chosen by the
client's SNI name, TLS 1.2 as the least version, re-read on reload
without dropping a connection (and refused when they would not do), and
their expiry in C{/api/status}, on the page and in the metrics.  Over
real sockets on 127.0.0.1, plus the config checks and the name lookup in
memory.
"""

from __future__ import annotations

import datetime
import json
import os

import treq
from OpenSSL import SSL
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IOpenSSLContextFactory,
)
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from playbalancer.config.tls import readCertificate
from playbalancer.testing import writeSelfSigned
from playbalancer.testing.twistd import TwistdTestCase
from tests.routeharness import RoutedTestCase, members

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def certificateFiles(directory, name, hosts, combined=False, **validity):
    """
    A self-signed certificate whose common name is C{name}, for C{hosts},
    in C{directory}: C{name.pem} and C{name.key} (or one C{name.pem} file
    holding both).

    @return: C{(keyPath, certPath)}.
    """
    return writeSelfSigned(
        directory,
        hosts,
        keyName=f"{name}.pem" if combined else f"{name}.key",
        certName=f"{name}.pem",
        commonName=name,
        **validity,
    )


def subjectOf(certificate):
    from cryptography.x509.oid import NameOID

    return certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


@implementer(IOpenSSLClientConnectionCreator)
class ClientTLS:
    """
    A client's TLS that trusts anything (the tests look at what it got):
    SNI C{serverName} if any, ALPN C{protocols} if any, and only TLS
    C{version} if one is given.
    """

    def __init__(self, serverName=None, protocols=None, version=None):
        self.serverName = serverName
        self.protocols = protocols
        self.version = version

    def clientConnectionForTLS(self, tlsProtocol):
        context = SSL.Context(SSL.TLS_METHOD)
        if self.version is not None:
            context.set_min_proto_version(self.version)
            context.set_max_proto_version(self.version)
            # (OpenSSL's default security level refuses TLS < 1.2 itself.)
            context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        if self.protocols:
            context.set_alpn_protos(self.protocols)
        connection = SSL.Connection(context, None)
        if self.serverName is not None:
            connection.set_tlsext_host_name(self.serverName.encode("ascii"))
        connection.set_app_data(tlsProtocol)
        connection.set_connect_state()
        return connection


@implementer(IHandshakeListener)
class Probe(Protocol):
    """
    A TLS client connection: keeps the certificate and protocol its
    handshake got, and sends HTTP requests one at a time.
    """

    def __init__(self):
        self.handshake = defer.Deferred()
        self.lost = defer.Deferred()
        self.received = b""
        self.waiting = None

    def handshakeCompleted(self):
        self.certificate = self.transport.getPeerCertificate().to_cryptography()
        self.protocol = self.transport.negotiatedProtocol
        self.handshake.callback(self)

    def request(self, path="/"):
        """
        Send one request; fires with the response's status line.
        """
        self.waiting = defer.Deferred()
        self.transport.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        return self.waiting

    def dataReceived(self, data):
        self.received += data
        head, separator, body = self.received.partition(b"\r\n\r\n")
        if not separator or self.waiting is None:
            return
        length = [
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ]
        if length and len(body) >= length[0]:
            self.received = body[length[0]:]
            waiting, self.waiting = self.waiting, None
            waiting.callback(head.split(b"\r\n")[0])

    def connectionLost(self, reason):
        if not self.handshake.called:
            self.handshake.errback(reason)
        self.lost.callback(reason.value)


async def handshake(port, serverName=None, protocols=None, version=None):
    """
    A TLS connection to C{port} once its handshake is done (a L{Probe}).
    """
    endpoint = wrapClientTLS(
        ClientTLS(serverName, protocols, version), TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    )
    probe = Probe()
    await connectProtocol(endpoint, probe)
    return await probe.handshake


class TLSServiceCase(RoutedTestCase):
    """
    A balancer started by C{makeService} with an C{ssl:} listener whose
    certificate files a test writes, renews and reloads.
    """

    timeout = 60

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        self.sites = os.path.join(self.directory, "sites")
        os.makedirs(self.sites)
        self.files = {}
        self.write("default", ("default.example",))
        self.write("a", ("a.example",))
        self.endpoint = (
            "ssl:0:interface=127.0.0.1"
            f":privateKey={self.files['default'][0]}:certKey={self.files['default'][1]}"
        )

    def write(self, name, hosts, inSites=False, **validity):
        directory = self.sites if inSites else self.directory
        self.files[name] = certificateFiles(directory, name, hosts, combined=inSites, **validity)

    def configText(self, member, listenerKeys="", tables=None):
        if tables is None:
            key, cert = self.files["a"]
            tables = f'[[listen.certificate]]\ncert = "{cert}"\nkey = "{key}"\n'
        return (
            f'[[listen]]\nendpoint = "{self.endpoint}"\nbalancer = "web"\n{listenerKeys}\n'
            f"{tables}\n{members(member)}\n"
            '[manager]\nendpoint = "tcp:0:interface=127.0.0.1"\n'
        )

    async def startWith(self, text):
        from playbalancer.tap import Options, makeService

        self.configPath = os.path.join(self.directory, "playbalancer.toml")
        with open(self.configPath, "w") as f:
            f.write(text)
        options = Options()
        options.parseOptions(["--config", self.configPath])
        self.service = makeService(options, reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        runtime = self.service.runtime
        port = await runtime.served[self.endpoint].service._waitingForPort
        self.tlsPort = port.getHost().port
        manager = await runtime.others["tcp:0:interface=127.0.0.1"]._waitingForPort
        self.managerBase = f"http://127.0.0.1:{manager.getHost().port}"

    async def connect(self, serverName=None, protocols=None):
        probe = await handshake(self.tlsPort, serverName, protocols)
        self.addCleanup(probe.transport.abortConnection)
        return probe

    def reload(self):
        return self.successResultOf(self.service.reloader.reload("test"))


class SNITests(TLSServiceCase):
    """
    One listener, several certificates: the client's SNI name picks one.
    """

    async def test_namePicksTheCertificate(self):
        """
        The endpoint's certificate is the default; a table's and a
        directory's answer for their own names; an exact name wins over a
        wildcard, which matches one label only.
        """
        self.write("b", ("b.example",), inSites=True)
        self.write("wild", ("*.wild.example",), inSites=True)
        self.write("exact", ("exact.wild.example",), inSites=True)
        (member,) = self.startMembers("app1")
        await self.startWith(self.configText(member, f'certificates = "{self.sites}"'))
        for serverName, expected in [
            ("a.example", "a"),
            ("B.Example", "b"),
            (None, "default"),
            ("unknown.example", "default"),
            ("default.example", "default"),
            ("x.wild.example", "wild"),
            ("exact.wild.example", "exact"),
            ("wild.example", "default"),
            ("y.x.wild.example", "default"),
        ]:
            probe = await self.connect(serverName)
            self.assertEqual(subjectOf(probe.certificate), expected, serverName)
            status = await probe.request()
            self.assertEqual(status, b"HTTP/1.1 200 OK", serverName)

    async def test_alpnOnTheChosenContext(self):
        """
        A connection moved to another certificate's context by its SNI
        name still negotiates the listener's ALPN protocols.
        """
        (member,) = self.startMembers("app1")
        await self.startWith(self.configText(member))
        for serverName in ("a.example", None):
            probe = await self.connect(serverName, [b"h2-not-ours", b"http/1.1"])
            self.assertEqual(probe.protocol, b"http/1.1")
            self.assertEqual(await probe.request(), b"HTTP/1.1 200 OK")

    async def test_namesOverride(self):
        """
        A table's C{names} replace the names in its certificate.
        """
        (member,) = self.startMembers("app1")
        key, cert = self.files["a"]
        tables = (
            f'[[listen.certificate]]\ncert = "{cert}"\nkey = "{key}"\n'
            'names = ["other.example"]\n'
        )
        await self.startWith(self.configText(member, tables=tables))
        self.assertEqual(subjectOf((await self.connect("other.example")).certificate), "a")
        self.assertEqual(subjectOf((await self.connect("a.example")).certificate), "default")


class _Accept(Protocol):
    def connectionMade(self):
        self.transport.write(b"hello")


@implementer(IOpenSSLContextFactory)
class _LowMinimum:
    """
    A server's TLS that accepts TLS 1.1: the check that the client below
    can speak it.
    """

    def __init__(self, keyPath, certPath):
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        self.context = SSL.Context(SSL.TLS_METHOD)
        self.context.set_min_proto_version(SSL.TLS1_1_VERSION)
        with open(certPath, "rb") as f:
            self.context.use_certificate(x509.load_pem_x509_certificate(f.read()))
        with open(keyPath, "rb") as f:
            self.context.use_privatekey(serialization.load_pem_private_key(f.read(), None))
        self.context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")

    def getContext(self):
        return self.context


class VersionTests(TLSServiceCase):
    """
    TLS 1.2 and 1.3 are offered, nothing older.
    """

    async def test_tls11Refused(self):
        (member,) = self.startMembers("app1")
        await self.startWith(self.configText(member))
        for serverName in ("a.example", None):
            with self.assertRaises(SSL.Error) as caught:
                await handshake(self.tlsPort, serverName, version=SSL.TLS1_1_VERSION)
            self.assertIn("protocol", str(caught.exception))
        for version in (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION):
            probe = await handshake(self.tlsPort, "a.example", version=version)
            self.addCleanup(probe.transport.abortConnection)
            self.assertEqual(await probe.request(), b"HTTP/1.1 200 OK")
        # The same client gets through to a server that accepts TLS 1.1.
        port = reactor.listenSSL(
            0, Factory.forProtocol(_Accept), _LowMinimum(*self.files["a"]), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        probe = await handshake(port.getHost().port, "a.example", version=SSL.TLS1_1_VERSION)
        self.addCleanup(probe.transport.abortConnection)
        self.assertEqual(probe.transport.getHandle().get_protocol_version_name(), "TLSv1.1")


class ReloadTests(TLSServiceCase):
    """
    Certificates are read again on every reload: new handshakes get the
    new ones, open connections go on, and files that would not do refuse
    the reload.
    """

    async def test_renewedFilesServedToNewConnections(self):
        """
        Renewed files under the same paths (the endpoint's default and a
        table's): a connection opened before the reload keeps working; a
        new one gets the new certificate.
        """
        (member,) = self.startMembers("app1")
        await self.startWith(self.configText(member))
        before = {name: await self.connect(name) for name in ("a.example", None)}
        self.write("a", ("a.example",))
        self.write("default", ("default.example",))
        result = self.reload()
        self.assertTrue(result.ok, result.error)
        self.assertIn("listeners changed", result.changes)
        for name, old in before.items():
            self.assertEqual(await old.request(), b"HTTP/1.1 200 OK")
            new = await self.connect(name)
            self.assertNotEqual(new.certificate.serial_number, old.certificate.serial_number)
            self.assertEqual(subjectOf(new.certificate), subjectOf(old.certificate))
            self.assertEqual(await new.request(), b"HTTP/1.1 200 OK")
        # Nothing renewed: the same contexts serve on.
        contexts = self.service.runtime.served[self.endpoint].service.tls.current
        self.assertEqual(self.reload().changes, "no changes")
        self.assertIs(self.service.runtime.served[self.endpoint].service.tls.current, contexts)

    async def refused(self, key):
        """
        The reload (of files just written) is refused with one line naming
        C{key}; the old certificate of C{a.example} keeps serving.
        """
        result = self.reload()
        self.assertFalse(result.ok)
        self.assertTrue(result.error.startswith(key + ": "), result.error)
        self.assertEqual(len(result.error.splitlines()), 1)
        probe = await self.connect("a.example")
        self.assertEqual(probe.certificate.serial_number, self.serial)
        self.assertEqual(await probe.request(), b"HTTP/1.1 200 OK")
        return result.error

    async def startForRefusals(self):
        (member,) = self.startMembers("app1")
        await self.startWith(self.configText(member))
        self.serial = (await self.connect("a.example")).certificate.serial_number

    async def test_expiredRefused(self):
        await self.startForRefusals()
        self.write("a", ("a.example",), notAfter=NOW - DAY)
        error = await self.refused("listen[0].certificate[0]")
        self.assertIn("expired", error)

    async def test_unreadableRefused(self):
        await self.startForRefusals()
        os.remove(self.files["a"][1])
        error = await self.refused("listen[0].certificate[0]")
        self.assertIn("cannot read", error)

    async def test_keyOfAnotherRefused(self):
        await self.startForRefusals()
        other = certificateFiles(self.sites, "other", ("a.example",))
        os.replace(other[0], self.files["a"][0])
        error = await self.refused("listen[0].certificate[0]")
        self.assertIn("not the key", error)

    async def test_expiredDefaultRefused(self):
        await self.startForRefusals()
        self.write("default", ("default.example",), notAfter=NOW - DAY)
        await self.refused("listen[0].endpoint")


class ExpiryTests(TLSServiceCase):
    """
    Each certificate's names and expiry in C{/api/status}, as a metric,
    and on the page (marked when under 14 days).
    """

    async def get(self, path):
        pool = self.client(persistent=False)
        response = await pool.get(self.managerBase + path)
        return await treq.content(response)

    async def test_statusMetricAndPage(self):
        self.write("a", ("a.example", "*.a.example"), notAfter=NOW + 3 * DAY)
        self.write("default", ("default.example",), notAfter=NOW + 30 * DAY)
        (member,) = self.startMembers("app1")
        await self.startWith(self.configText(member))
        expires = {
            name: readCertificate(cert, key, "-").notAfter.timestamp()
            for name, (key, cert) in self.files.items()
        }
        status = json.loads(await self.get("/api/status"))
        listed = {tuple(c["names"]): c for c in status["certificates"]}
        self.assertEqual(sorted(listed), [("a.example", "*.a.example"), ("default.example",)])
        a = listed[("a.example", "*.a.example")]
        self.assertEqual(
            (a["listener"], a["default"], a["file"]), ("ssl:0", False, self.files["a"][1])
        )
        self.assertEqual(a["expires"], expires["a"])
        self.assertTrue(2.9 < a["days_left"] <= 3.0, a)
        self.assertTrue(listed[("default.example",)]["default"])

        metrics = (await self.get("/metrics")).decode()
        name = "playbalancer_certificate_expiry_timestamp_seconds"
        found = {
            line.split("{")[1].split("}")[0]: float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith(name + "{")
        }
        self.assertEqual(
            found,
            {
                'listener="ssl:0",names="a.example,*.a.example"': expires["a"],
                'listener="ssl:0",names="default.example"': expires["default"],
            },
        )

        page = (await self.get("/")).decode()
        self.assertIn("<h2>certificates</h2>", page)
        rows = [
            row
            for row in page.split("<tr")
            if self.files["a"][1] in row or self.files["default"][1] in row
        ]
        self.assertEqual(len(rows), 2)
        for row in rows:
            self.assertEqual('class="expiring"' in row, self.files["a"][1] in row, row)

        # A reload with a renewed certificate shows its new expiry.
        self.write("a", ("a.example",), notAfter=NOW + 90 * DAY)
        self.assertTrue(self.reload().ok)
        status = json.loads(await self.get("/api/status"))
        listed = {tuple(c["names"]): c for c in status["certificates"]}
        self.assertTrue(89 < listed[("a.example",)]["days_left"] <= 90)


class WorkersTests(TwistdTestCase):
    """
    With C{workers = 2}: each worker does TLS with the certificates it
    read, and a reload's new generation of workers reads them again.
    """

    timeout = 180

    async def reloadCommand(self):
        import io

        from playbalancer.ctl.cli import run

        out, err = io.StringIO(), io.StringIO()
        code = await run(reactor, ["--manager", self.manager, "reload"], out, err, environ={})
        return code, out.getvalue(), err.getvalue()

    async def serials(self, count=6):
        """
        The serial numbers of the C{a.example} certificates C{count} new
        connections got, each of which got an answer.
        """
        found = set()
        for _ in range(count):
            probe = await handshake(self.front, "a.example")
            self.assertEqual(subjectOf(probe.certificate), "a")
            self.assertEqual(await probe.request(), b"HTTP/1.1 200 OK")
            probe.transport.loseConnection()
            found.add(probe.certificate.serial_number)
        return found

    async def test_workersReadTheCertificates(self):
        from twisted.internet import task

        from playbalancer.testing import freePorts
        from playbalancer.testing.members import MemberServer
        from playbalancer.testing.twistd import childrenOf

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        defaultKey, defaultCert = certificateFiles(directory, "default", ("default.example",))
        key, cert = certificateFiles(directory, "a", ("a.example",))
        member = MemberServer("app1", reactor).start()
        self.addCleanup(member.stop)
        self.front, manager = freePorts(2)
        self.manager = f"http://127.0.0.1:{manager}"
        self.startTwistd(
            f"""
workers = 2

[[listen]]
endpoint = "ssl:{self.front}:interface=127.0.0.1:privateKey={defaultKey}:certKey={defaultCert}"
balancer = "web"
[[listen.certificate]]
cert = "{cert}"
key = "{key}"

{members(member)}
[manager]
endpoint = "tcp:{manager}:interface=127.0.0.1"
"""
        )
        await self.waitFor(lambda: len(childrenOf(self.child.pid)) == 2, timeout=60)
        for _ in range(400):
            try:
                probe = await handshake(self.front)
                probe.transport.loseConnection()
                break
            except Exception:
                await task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(subjectOf(probe.certificate), "default")
        (first,) = await self.serials()

        certificateFiles(directory, "a", ("a.example",))
        code, out, err = await self.reloadCommand()
        self.assertEqual((code, err), (0, ""))
        self.assertIn("listeners changed", out)
        (renewed,) = await self.serials()
        self.assertNotEqual(renewed, first)

        certificateFiles(directory, "a", ("a.example",), notAfter=NOW - DAY)
        code, out, err = await self.reloadCommand()
        self.assertEqual(code, 1)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIn("listen[0].certificate[0]: ", err)
        self.assertIn("expired", err)
        self.assertEqual(await self.serials(), {renewed})
