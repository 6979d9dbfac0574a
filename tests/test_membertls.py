"""
TLS to C{https://} members, over real sockets on 127.0.0.1, through the
service C{twistd playbalancer} builds from a config: the name sent by SNI
(and C{tls_server_name}), client certificates, and the reason in words
when a member's certificate does not pass the check -- in C{/api/status},
on the manager page and in the log -- for live traffic and for health
checks, until it is fixed.
"""

from __future__ import annotations

import json
import os

import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from playbalancer.testing import MemberServer, writeSelfSigned
from playbalancer.testing.authority import TestAuthority, memberTLSOptions

FRONT = "tcp:0:interface=127.0.0.1"


def configText(url, tls=(), health=False, retry=0.05, connectTimeout=None):
    """
    A listener and a manager on free ports, and balancer C{web} with one
    member, C{app1} at C{url}; C{tls} holds C{(key, value)} settings.
    """
    lines = [
        "[[listen]]",
        f'endpoint = "{FRONT}"',
        'balancer = "web"',
        "[manager]",
        'endpoint = "tcp:0:interface=127.0.0.1"',
        "[balancer.web]",
        f"retry = {retry}",
    ]
    if connectTimeout is not None:
        lines.append(f"connect_timeout = {connectTimeout}")
    lines += [f"{key} = {json.dumps(value)}" for key, value in tls]
    if health:
        lines += ["[balancer.web.health]", "interval = 0.05", "timeout = 2", "rise = 1", "fall = 1"]
    lines += ["[[balancer.web.member]]", 'name = "app1"', f'url = "{url}"']
    return "\n".join(lines) + "\n"


class MemberTLSCase(TestCase):
    """
    A test CA, TLS members it certifies, and the balancer service.
    """

    timeout = 60

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        self.ca = TestAuthority(os.path.join(self.directory, "ca"))
        self.other = TestAuthority(os.path.join(self.directory, "other"), name="another CA")
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.http = HTTPClient(Agent(reactor, pool=pool))
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def startMember(self, label, hosts=("localhost", "127.0.0.1"), authority=None, port=0,
                    expired=False, clientAuthority=None, selfSigned=False):
        """
        A TLS member with a certificate from C{authority} (by default the
        test CA); C{self.serverNames} gets the SNI names it sees.
        """
        if selfSigned:
            directory = os.path.join(self.directory, label)
            os.makedirs(directory, exist_ok=True)
            key, cert = writeSelfSigned(directory, hosts)
        else:
            key, cert = (authority or self.ca).issue(label, hosts, expired=expired)
        options, self.serverNames = memberTLSOptions(key, cert, clientAuthority)
        member = MemberServer(label, reactor, port=port, tls=options).start()
        self.addCleanup(member.stop)
        return member

    def clientFiles(self, authority=None, label="client"):
        return (authority or self.ca).issue(label, ("playbalancer",), client=True)

    async def startWith(self, text):
        from playbalancer.tap import Options, makeService

        self.configPath = os.path.join(self.directory, "playbalancer.toml")
        self.write(text)
        options = Options()
        options.parseOptions(["--config", self.configPath])
        service = makeService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        self.service = service
        ports = [await c._waitingForPort for c in service if hasattr(c, "_waitingForPort")]
        self.base = f"http://127.0.0.1:{ports[0].getHost().port}"
        self.manager = f"http://127.0.0.1:{ports[1].getHost().port}"

    def write(self, text):
        with open(self.configPath, "w") as f:
            f.write(text)

    def reload(self, text):
        self.write(text)
        return self.successResultOf(self.service.reloader.reload("test"))

    async def get(self, path="/", method="GET"):
        body = b"x" if method == "POST" else None
        response = await self.http.request(method, self.base + path, data=body)
        return response.code, await treq.content(response)

    async def status(self):
        response = await self.http.get(self.manager + "/api/status")
        return json.loads(await treq.content(response))["balancers"]["web"]["members"]["app1"]

    async def page(self):
        response = await self.http.get(self.manager + "/")
        return (await treq.content(response)).decode("utf-8")

    def downEvents(self):
        return [
            e["reason"]
            for e in self.events
            if e.get("playbalancer_event") in ("member.down", "member.down.reason")
        ]

    async def waitForStatus(self, test):
        """
        Poll C{/api/status} until C{test(app1)} is true; the last status.
        """
        for _ in range(400):
            app1 = await self.status()
            if test(app1):
                return app1
            await pause(0.025)
        self.fail(f"status never changed as expected: {app1}")


class SNITests(MemberTLSCase):
    """
    The name a member is asked for: the host of its URL, or
    C{tls_server_name}; never an IP address.
    """

    async def test_hostNameSentBySNI(self):
        member = self.startMember("secure")
        await self.startWith(
            configText(f"https://localhost:{member.port}", [("tls_ca_file", self.ca.certPath)])
        )
        self.assertEqual((await self.get("/"))[0], 200)
        self.assertEqual(set(self.serverNames), {"localhost"})

    async def test_noSNIForAnIPAddress(self):
        """
        RFC 6066: an IP address is not sent as a server name; the
        certificate is checked for the address.
        """
        member = self.startMember("secure", hosts=("127.0.0.1",))
        await self.startWith(configText(member.url, [("tls_ca_file", self.ca.certPath)]))
        self.assertEqual((await self.get("/"))[0], 200)
        self.assertEqual(set(self.serverNames), {None})

    async def test_serverNameSentAndChecked(self):
        """
        A member reached by address whose certificate names a host:
        C{tls_server_name} sends that name and checks it, for requests and
        health checks alike.
        """
        member = self.startMember("secure", hosts=("app.internal",))
        settings = [("tls_ca_file", self.ca.certPath), ("tls_server_name", "app.internal")]
        await self.startWith(configText(member.url, settings, health=True))
        await self.waitForStatus(lambda m: m["check"] is not None and m["check"]["ok"])
        self.assertEqual((await self.get("/"))[0], 200)
        self.assertIn(b"/", member.paths)
        self.assertEqual(set(self.serverNames), {"app.internal"})
        self.assertIn(b"/health", member.paths)

    async def test_serverNameMustMatch(self):
        member = self.startMember("secure", hosts=("localhost",))
        settings = [("tls_ca_file", self.ca.certPath), ("tls_server_name", "app.internal")]
        await self.startWith(configText(member.url, settings))
        self.assertIn((await self.get("/"))[0], (502, 503))
        app1 = await self.status()
        self.assertEqual(
            app1["down_reason"],
            "TLS: certificate verify failed: not valid for app.internal (it is for localhost)",
        )
        self.assertEqual(member.seen, [])


class ClientCertificateTests(MemberTLSCase):
    """
    Members that demand a client certificate signed by the test CA.
    """

    async def test_memberGetsTheCertificate(self):
        member = self.startMember("secure", clientAuthority=self.ca.certPath)
        key, cert = self.clientFiles()
        settings = [
            ("tls_ca_file", self.ca.certPath),
            ("tls_client_cert", cert),
            ("tls_client_key", key),
        ]
        await self.startWith(configText(member.url, settings))
        for _ in range(3):
            self.assertEqual((await self.get("/"))[0], 200)
        self.assertEqual(len(member.seen), 3)

    async def test_oneFileWithCertificateAndKey(self):
        member = self.startMember("secure", clientAuthority=self.ca.certPath)
        key, cert = self.clientFiles()
        both = os.path.join(self.directory, "both.pem")
        with open(both, "wb") as out:
            for path in (cert, key):
                with open(path, "rb") as f:
                    out.write(f.read())
        settings = [("tls_ca_file", self.ca.certPath), ("tls_client_cert", both)]
        await self.startWith(configText(member.url, settings, health=True))
        await self.waitForStatus(lambda m: m["check"] is not None and m["check"]["ok"])
        self.assertEqual((await self.get("/"))[0], 200)

    async def test_withoutOneTheMemberFails(self):
        """
        No client certificate: the member refuses the handshake, and that
        is a member failure with a TLS reason (not a hang).
        """
        member = self.startMember("secure", clientAuthority=self.ca.certPath)
        await self.startWith(configText(member.url, [("tls_ca_file", self.ca.certPath)]))
        self.assertIn((await self.get("/"))[0], (502, 503))
        app1 = await self.status()
        self.assertFalse(app1["healthy"])
        self.assertTrue(app1["down_reason"].startswith("TLS: "), app1["down_reason"])
        self.assertIn("alert", app1["down_reason"])  # the member's words
        self.assertEqual(member.seen, [])

    async def test_oneFromAnotherAuthorityFails(self):
        member = self.startMember("secure", clientAuthority=self.ca.certPath)
        key, cert = self.clientFiles(self.other)
        settings = [
            ("tls_ca_file", self.ca.certPath),
            ("tls_client_cert", cert),
            ("tls_client_key", key),
        ]
        await self.startWith(configText(member.url, settings))
        self.assertIn((await self.get("/"))[0], (502, 503))
        app1 = await self.status()
        self.assertTrue(app1["down_reason"].startswith("TLS: "), app1["down_reason"])
        self.assertEqual(member.seen, [])

    async def test_renewedCertificateReadAtReload(self):
        """
        A client certificate renewed under the same file names is read by
        the next reload.
        """
        member = self.startMember("secure", clientAuthority=self.ca.certPath)
        key, cert = self.clientFiles(self.other)
        settings = [
            ("tls_ca_file", self.ca.certPath),
            ("tls_client_cert", cert),
            ("tls_client_key", key),
        ]
        text = configText(member.url, settings)
        await self.startWith(text)
        self.assertIn((await self.get("/"))[0], (502, 503))
        renewedKey, renewedCert = self.clientFiles(label="renewed")
        os.replace(renewedKey, key)
        os.replace(renewedCert, cert)
        result = self.reload(text)
        self.assertTrue(result.ok, result.error)
        self.assertIn("tlsFiles", result.changes)
        for _ in range(100):
            code, _ = await self.get("/")
            if code == 200:
                break
            await pause()
        self.assertEqual(code, 200)

    async def test_badKeyAtReloadChangesNothing(self):
        member = self.startMember("secure", clientAuthority=self.ca.certPath)
        key, cert = self.clientFiles()
        otherKey, _ = self.clientFiles(label="stranger")
        settings = [("tls_client_cert", cert), ("tls_ca_file", self.ca.certPath)]
        await self.startWith(configText(member.url, settings + [("tls_client_key", key)]))
        result = self.reload(configText(member.url, settings + [("tls_client_key", otherKey)]))
        self.assertFalse(result.ok)
        self.assertIn("balancer.web.tls_client_key", result.error)
        self.assertEqual(len(result.error.splitlines()), 1, result.error)
        self.assertEqual(result.version, 1)
        self.assertEqual((await self.get("/"))[0], 200)


class FailureReasonTests(MemberTLSCase):
    """
    Live traffic to a member whose certificate does not pass: it gets no
    request, is down, and says why in words (status, page, one log line)
    until it is fixed.
    """

    health = False

    async def assertReasonThenFix(self, member, settings, reason, fix):
        """
        Requests fail, the member is down for C{reason} (after C{"health
        check: "} with health checks), on the page and logged once; after
        C{fix()} it serves again and the reason is gone.
        """
        await self.startWith(configText(member.url, settings, health=self.health))
        if self.health:
            expected = f"health check: {reason}"
            app1 = await self.waitForStatus(lambda m: m["down_reason"] is not None)
            self.assertEqual(app1["check"]["detail"], reason)
        else:
            expected = reason
            self.assertIn((await self.get("/"))[0], (502, 503))
            app1 = await self.status()
        self.assertEqual(app1["down_reason"], expected)
        self.assertFalse(app1["healthy"])
        self.assertIn(expected, app1["state_text"])
        self.assertIn(f"down: {expected} (", await self.page())
        for _ in range(3):
            # (With every member down, requests still try this one: it
            # fails again for the same cause, which is not logged again.)
            await pause()
            self.assertIn((await self.get("/"))[0], (502, 503))
            self.assertTrue((await self.status())["down_reason"].endswith(reason))
        self.assertEqual(self.downEvents(), [expected])
        self.assertEqual(member.seen, [])

        member = await fix()
        if self.health:
            await self.waitForStatus(lambda m: m["healthy"])
        for _ in range(200):
            code, _ = await self.get("/")
            if code == 200:
                break
            await pause()
        self.assertEqual(code, 200)
        app1 = await self.status()
        self.assertTrue(app1["healthy"])
        self.assertIsNone(app1["down_reason"])
        self.assertNotIn(f"{reason} (", await self.page())
        self.assertTrue(member.seen)

    def fixByConfig(self, member, settings):
        async def fix():
            result = self.reload(configText(member.url, settings, health=self.health))
            self.assertTrue(result.ok, result.error)
            return member

        return fix

    def fixByNewCertificate(self, member):
        async def fix():
            await member.stop()
            return self.startMember("renewed", port=member.port)

        return fix

    async def test_wrongName(self):
        member = self.startMember("secure", hosts=("localhost",))
        trust = [("tls_ca_file", self.ca.certPath)]
        await self.assertReasonThenFix(
            member,
            trust,
            "TLS: certificate verify failed: not valid for 127.0.0.1 (it is for localhost)",
            self.fixByConfig(member, trust + [("tls_server_name", "localhost")]),
        )

    async def test_unknownAuthority(self):
        member = self.startMember("secure", authority=self.other)
        await self.assertReasonThenFix(
            member,
            [("tls_ca_file", self.ca.certPath)],
            "TLS: certificate verify failed: unable to get local issuer certificate",
            self.fixByConfig(member, [("tls_ca_file", self.other.certPath)]),
        )

    async def test_selfSigned(self):
        """
        A self-signed member checked against the system's authorities.
        """
        member = self.startMember("secure", selfSigned=True)
        await self.assertReasonThenFix(
            member,
            [],
            "TLS: certificate verify failed: self-signed certificate",
            self.fixByConfig(member, [("tls_verify", False)]),
        )

    async def test_expired(self):
        from cryptography import x509

        member = self.startMember("secure", expired=True)
        with open(os.path.join(self.ca.directory, "secure-cert.pem"), "rb") as f:
            notAfter = x509.load_pem_x509_certificate(f.read()).not_valid_after
        await self.assertReasonThenFix(
            member,
            [("tls_ca_file", self.ca.certPath)],
            "TLS: certificate verify failed: certificate has expired"
            f" (not after {notAfter:%Y-%m-%d %H:%M:%S} UTC)",
            self.fixByNewCertificate(member),
        )


class HealthCheckReasonTests(FailureReasonTests):
    """
    The same, found by the health checks before any request.
    """

    health = True


class RetryTests(MemberTLSCase):
    async def test_postGoesToAnotherMember(self):
        """
        A refused certificate is a failure to connect: the request never
        reached the member, so even a POST is tried on the next one.
        """
        bad = self.startMember("bad", authority=self.other)
        good = self.startMember("good")
        text = configText(bad.url, [("tls_ca_file", self.ca.certPath)], retry=60)
        text += f'[[balancer.web.member]]\nname = "app2"\nurl = "{good.url}"\n'
        await self.startWith(text)
        for _ in range(4):
            self.assertEqual((await self.get("/echo", method="POST"))[0], 200)
        self.assertEqual(bad.seen, [])
        self.assertEqual(len(good.seen), 4)


class _Silent(Protocol):
    """
    Accepts a connection and never says a word.
    """


class HandshakeTimeoutTests(MemberTLSCase):
    async def test_silentMemberTimesOut(self):
        """
        A member that accepts connections but never answers the TLS
        handshake fails after C{connect_timeout}, with that reason.
        """
        port = reactor.listenTCP(0, Factory.forProtocol(_Silent), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"https://127.0.0.1:{port.getHost().port}"
        await self.startWith(configText(url, connectTimeout=0.2))
        self.assertIn((await self.get("/"))[0], (502, 503))
        self.assertEqual((await self.status())["down_reason"], "TLS handshake timeout")


async def pause(seconds=0.05):
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)
