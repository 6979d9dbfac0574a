"""
Tests for L{playbalancer.config}.
"""

from __future__ import annotations

import copy
import os

from twisted.trial.unittest import SynchronousTestCase

from playbalancer.config import (
    BalancerConfig,
    Config,
    ConfigError,
    HealthConfig,
    ListenConfig,
    ManagerConfig,
    MemberConfig,
    RouteConfig,
    configFromArguments,
    loadConfig,
    memberURL,
    parseConfig,
)

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

EXAMPLE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "etc",
    "playbalancer.toml",
)

#: Stand-ins for the scheduler factories: only the names matter here.
SCHEDULERS = {"standby": object(), "round-robin": object(), "least-conn": object()}


def good():
    """
    A fresh decoded config that checks out.
    """
    return {
        "listen": [{"endpoint": "tcp:8080", "balancer": "mycluster"}],
        "balancer": {
            "mycluster": {
                "scheduler": "standby",
                "member": [
                    {"name": "app1", "url": "http://127.0.0.1:9999"},
                    {"name": "app2", "url": "http://127.0.0.1:9998", "standby": True},
                ],
            }
        },
    }


class GoodConfigTests(SynchronousTestCase):
    def test_example(self):
        """
        The shipped example loads into the expected objects.
        """
        config = loadConfig(EXAMPLE, SCHEDULERS)
        self.assertEqual(
            config,
            Config(
                listeners=[
                    ListenConfig(
                        endpoint="tcp:8080:interface=127.0.0.1",
                        balancer="mycluster",
                        preserveHost=True,
                        maxBody=0,
                        managerPath="/balancer-manager",
                        routes=[
                            RouteConfig("manager", path="/balancer-manager", manager=True),
                            RouteConfig("default", balancer="mycluster"),
                        ],
                    )
                ],
                balancers={
                    "mycluster": BalancerConfig(
                        name="mycluster",
                        members=[
                            MemberConfig("app1", "http://127.0.0.1:9999", False, 1),
                            MemberConfig("app2", "http://127.0.0.1:9998", True, 1),
                        ],
                        scheduler="standby",
                        schedulerOptions={},
                        retry=60.0,
                        timeout=60.0,
                        connectTimeout=5.0,
                        keepalive=256,
                        health=HealthConfig(),
                    )
                },
                manager=ManagerConfig(
                    endpoint="tcp:8081:interface=127.0.0.1",
                    allow=["127.0.0.0/8", "::1"],
                ),
            ),
        )
        self.assertIsInstance(config.balancers["mycluster"].retry, float)

    def test_exampleWithoutSchedulerCheck(self):
        config = loadConfig(EXAMPLE)
        self.assertEqual(config.balancers["mycluster"].scheduler, "standby")

    def test_defaults(self):
        data = good()
        del data["balancer"]["mycluster"]["scheduler"]
        config = parseConfig(data, SCHEDULERS)
        balancer = config.balancers["mycluster"]
        self.assertEqual(balancer.scheduler, "round-robin")
        self.assertEqual(
            (balancer.retry, balancer.timeout, balancer.connectTimeout),
            (60.0, 60.0, 5.0),
        )
        self.assertEqual(balancer.keepalive, 256)
        self.assertEqual(balancer.schedulerOptions, {})
        self.assertEqual(config.listeners[0].preserveHost, True)
        self.assertEqual(config.listeners[0].maxBody, 0)

    def test_everything(self):
        data = good()
        data["listen"][0].update(preserve_host=False, max_body=1024)
        data["listen"].append({"endpoint": "tcp6:8081", "balancer": "other"})
        table = data["balancer"]["mycluster"]
        table.update(
            scheduler="least-conn",
            scheduler_options={"k": 3},
            retry=0,
            timeout=1.5,
            connect_timeout=2,
            keepalive=0,
        )
        table["member"][0]["weight"] = 0
        table["member"][1]["weight"] = 7
        data["balancer"]["other"] = {
            "member": [{"name": "x.y_z-1", "url": "https://[::1]:8443/base/"}]
        }
        config = parseConfig(data, SCHEDULERS)
        self.assertEqual(
            config.listeners,
            [
                ListenConfig(
                    "tcp:8080",
                    "mycluster",
                    False,
                    1024,
                    routes=[RouteConfig("default", balancer="mycluster")],
                ),
                ListenConfig(
                    "tcp6:8081", "other", True, 0, routes=[RouteConfig("default", balancer="other")]
                ),
            ],
        )
        b = config.balancers["mycluster"]
        self.assertEqual(b.scheduler, "least-conn")
        self.assertEqual(b.schedulerOptions, {"k": 3})
        self.assertEqual((b.retry, b.timeout, b.connectTimeout), (0.0, 1.5, 2.0))
        self.assertEqual(b.keepalive, 0)
        self.assertEqual([m.weight for m in b.members], [0, 7])
        self.assertEqual(
            config.balancers["other"].members,
            [MemberConfig("x.y_z-1", "https://[::1]:8443/base/", False, 1)],
        )

    def test_unknownSchedulerUnchecked(self):
        """
        Without C{schedulers} any scheduler name passes.
        """
        data = good()
        data["balancer"]["mycluster"]["scheduler"] = "p2c"
        self.assertEqual(parseConfig(data).balancers["mycluster"].scheduler, "p2c")

    def test_inputUntouched(self):
        data = good()
        before = copy.deepcopy(data)
        parseConfig(data, SCHEDULERS)
        self.assertEqual(data, before)


class BadConfigTests(SynchronousTestCase):
    """
    Every problem is one line that names the key path.
    """

    def assertBad(self, data, expected, schedulers=SCHEDULERS):
        error = self.assertRaises(ConfigError, parseConfig, data, schedulers)
        text = str(error)
        self.assertEqual(text, expected)
        self.assertEqual(len(text.splitlines()), 1, repr(text))
        return error

    def assertBadAt(self, data, path, schedulers=SCHEDULERS):
        """
        Bad, with the message free to say why, but one line starting with
        C{path}.
        """
        error = self.assertRaises(ConfigError, parseConfig, data, schedulers)
        text = str(error)
        self.assertEqual(error.path, path)
        self.assertTrue(text.startswith(path + ": "), text)
        self.assertEqual(len(text.splitlines()), 1, repr(text))
        return error

    def mutated(self, change):
        data = good()
        change(data)
        return data

    def member(self, data, index=0):
        return data["balancer"]["mycluster"]["member"][index]

    # Unknown keys

    def test_unknownTopLevel(self):
        data = self.mutated(lambda d: d.update(bogus=1))
        error = self.assertBad(data, "bogus: unknown key")
        self.assertEqual((error.path, error.message), ("bogus", "unknown key"))

    def test_unknownListen(self):
        data = self.mutated(lambda d: d["listen"][0].update(port=80))
        self.assertBad(data, "listen[0].port: unknown key")

    def test_unknownBalancer(self):
        data = self.mutated(lambda d: d["balancer"]["mycluster"].update(lbmethod="x"))
        self.assertBad(data, "balancer.mycluster.lbmethod: unknown key")

    def test_unknownMember(self):
        data = self.mutated(lambda d: self.member(d, 1).update(status="+H"))
        self.assertBad(data, "balancer.mycluster.member[1].status: unknown key")

    def test_bodyAndTunnelTimeouts(self):
        listener = parseConfig(good(), SCHEDULERS).listeners[0]
        self.assertEqual(
            (listener.bodyMinRate, listener.bodyDeadline, listener.tunnelIdleTimeout),
            (500.0, 0.0, 3600.0),
        )
        data = self.mutated(
            lambda d: d["listen"][0].update(body_deadline=30, tunnel_idle_timeout=0, body_min_rate=0)
        )
        listener = parseConfig(data, SCHEDULERS).listeners[0]
        self.assertEqual(
            (listener.bodyMinRate, listener.bodyDeadline, listener.tunnelIdleTimeout),
            (0.0, 30.0, 0.0),
        )
        self.assertBadAt(
            self.mutated(lambda d: d["listen"][0].update(body_deadline="x")),
            "listen[0].body_deadline",
        )

    def test_sendTimeout(self):
        data = self.mutated(lambda d: d["listen"][0].update(send_timeout=-1))
        self.assertBadAt(data, "listen[0].send_timeout")
        data = self.mutated(lambda d: d["listen"][0].update(send_timeout=5))
        self.assertEqual(parseConfig(data, SCHEDULERS).listeners[0].sendTimeout, 5.0)
        self.assertEqual(parseConfig(good(), SCHEDULERS).listeners[0].sendTimeout, 60.0)

    # TLS

    def test_caFileMissing(self):
        data = self.mutated(
            lambda d: d["balancer"]["mycluster"].update(tls_ca_file="/nonexistent/ca.pem")
        )
        error = self.assertBadAt(data, "balancer.mycluster.tls_ca_file")
        self.assertIn("cannot read /nonexistent/ca.pem", str(error))

    def test_caFileWithoutCertificate(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("not a certificate\n")
        data = self.mutated(lambda d: d["balancer"]["mycluster"].update(tls_ca_file=path))
        error = self.assertBadAt(data, "balancer.mycluster.tls_ca_file")
        self.assertIn("holds no PEM certificate", str(error))

    def test_caFileAndVerify(self):
        import os

        from playbalancer.testing import writeSelfSigned

        directory = self.mktemp()
        os.makedirs(directory)
        key, cert = writeSelfSigned(directory)
        data = self.mutated(
            lambda d: d["balancer"]["mycluster"].update(tls_ca_file=cert, tls_verify=False)
        )
        balancer = parseConfig(data, SCHEDULERS).balancers["mycluster"]
        self.assertEqual((balancer.tlsCAFile, balancer.tlsVerify), (cert, False))

    def test_proxyProtocolOnTLS(self):
        import os

        from playbalancer.testing import writeSelfSigned

        directory = self.mktemp()
        os.makedirs(directory)
        key, cert = writeSelfSigned(directory)

        def change(d):
            d["listen"][0].update(
                endpoint=f"ssl:0:privateKey={key}:certKey={cert}", accept_proxy_protocol=True
            )

        error = self.assertBadAt(self.mutated(change), "listen[0].accept_proxy_protocol")
        self.assertIn("ssl:", str(error))

    # HTTP/2

    def test_protocolsDefault(self):
        """
        HTTP/2 and HTTP/1.1 on ssl: listeners, HTTP/1.1 elsewhere.
        """
        import os

        from playbalancer.testing import writeSelfSigned

        directory = self.mktemp()
        os.makedirs(directory)
        key, cert = writeSelfSigned(directory)
        config = parseConfig(good(), SCHEDULERS)
        self.assertEqual(config.listeners[0].protocols, ("http/1.1",))
        self.assertEqual(config.listeners[0].maxConcurrentStreams, 100)
        data = self.mutated(
            lambda d: d["listen"][0].update(endpoint=f"ssl:0:privateKey={key}:certKey={cert}")
        )
        self.assertEqual(parseConfig(data, SCHEDULERS).listeners[0].protocols, ("h2", "http/1.1"))

    def test_protocolsBad(self):
        cases = [
            ([], "listen[0].protocols"),
            (["http/2"], "listen[0].protocols[0]"),
            (["http/1.1", "http/1.1"], "listen[0].protocols[1]"),
            (["h2"], "listen[0].protocols"),  # (h2 needs TLS: this one is tcp:)
        ]
        for protocols, path in cases:
            data = self.mutated(lambda d: d["listen"][0].update(protocols=protocols))
            self.assertBadAt(data, path)
        for bad in (0, 2**31):
            data = self.mutated(lambda d: d["listen"][0].update(max_concurrent_streams=bad))
            self.assertBadAt(data, "listen[0].max_concurrent_streams")

    def test_withoutTheH2Library(self):
        """
        Without the h2 library (the http2 extra), ssl: listeners default to
        HTTP/1.1 alone, and a config that names h2 or h2c is refused with
        what to install.
        """
        import os

        from playbalancer import http2
        from playbalancer.testing import writeSelfSigned

        self.assertTrue(http2.available())  # (the test extra has it)
        self.patch(http2, "available", lambda: False)
        directory = self.mktemp()
        os.makedirs(directory)
        key, cert = writeSelfSigned(directory)
        tls = f"ssl:0:privateKey={key}:certKey={cert}"
        data = self.mutated(lambda d: d["listen"][0].update(endpoint=tls))
        self.assertEqual(parseConfig(data, SCHEDULERS).listeners[0].protocols, ("http/1.1",))
        for endpoint, protocols in ((tls, ["h2", "http/1.1"]), ("tcp:0", ["http/1.1", "h2c"])):
            data = self.mutated(lambda d: d["listen"][0].update(endpoint=endpoint, protocols=protocols))
            error = self.assertBadAt(data, "listen[0].protocols")
            self.assertIn("pip install 'playbalancer[http2]'", str(error))

    def test_h2cOnTLSIsBad(self):
        import os

        from playbalancer.testing import writeSelfSigned

        directory = self.mktemp()
        os.makedirs(directory)
        key, cert = writeSelfSigned(directory)

        def change(d):
            d["listen"][0].update(
                endpoint=f"ssl:0:privateKey={key}:certKey={cert}", protocols=["h2c"]
            )

        error = self.assertBadAt(self.mutated(change), "listen[0].protocols")
        self.assertIn("h2c", str(error))

    # URLs

    def badURL(self, url, index=1):
        def change(d):
            self.member(d, index)["url"] = url

        return self.mutated(change)

    def test_ftpURL(self):
        self.assertBad(
            self.badURL("ftp://x"),
            "balancer.mycluster.member[1].url: expected an http:// URL, got 'ftp://x'",
        )

    def test_notURLs(self):
        for url in ["127.0.0.1:9999", "http://", "http:x", "x", "", "http://h:abc"]:
            self.assertBad(
                self.badURL(url, 0),
                f"balancer.mycluster.member[0].url: expected an http:// URL, got {url!r}",
            )

    def test_urlNotString(self):
        self.assertBad(
            self.badURL(80),
            "balancer.mycluster.member[1].url: expected a string, got 80",
        )

    def test_urlQuery(self):
        self.assertBad(
            self.badURL("http://h:1/?a=1"),
            "balancer.mycluster.member[1].url: expected no user, query or "
            "fragment in 'http://h:1/?a=1'",
        )

    def test_urlUserinfo(self):
        self.assertBad(
            self.badURL("http://user@h:1/"),
            "balancer.mycluster.member[1].url: expected no user, query or "
            "fragment in 'http://user@h:1/'",
        )

    def test_urlFragment(self):
        self.assertBadAt(
            self.badURL("http://h:1/#top"), "balancer.mycluster.member[1].url"
        )

    def test_urlNonASCII(self):
        self.assertBad(
            self.badURL("http://h:1/caf\xe9"),
            "balancer.mycluster.member[1].url: expected only URL characters (RFC 3986) "
            "in 'http://h:1/caf\xe9'",
        )

    def test_urlInjection(self):
        """
        CR, LF, spaces and other characters outside RFC 3986 would end up
        in the request line sent to the member.
        """
        for url in [
            "http://127.0.0.1:18999/echo HTTP/1.1\r\nX-Injected: yes\r\nX-Pad:",
            "http://127.0.0.1:1/a b",
            "http://127.0.0.1:1/a\tb",
            "http://127.0.0.1:1/a\"b",
            "http://127.0.0.1:1/a<b>",
            "http://127.0.0.1:1/%zz",
            "http://127.0.0.1:1/50%",
            "http://exa mple.com/",
            "http://exa%0d%0ample/",
            "http://-bad.example/",
            "http://a..b/",
        ]:
            self.assertBadAt(self.badURL(url), "balancer.mycluster.member[1].url")

    def test_urlHostsAccepted(self):
        for url in ["http://app_1:80", "http://[::1]:9", "http://10.0.0.1", "http://a-b.example.com.:8"]:
            self.assertEqual(
                parseConfig(self.badURL(url), SCHEDULERS).balancers["mycluster"].members[1].url, url
            )

    def test_urlEscapesAccepted(self):
        data = self.badURL("http://h:1/a%20b/~x")
        self.assertEqual(
            parseConfig(data, SCHEDULERS).balancers["mycluster"].members[1].url, "http://h:1/a%20b/~x"
        )

    def test_urlPortOutOfRange(self):
        """
        A port that no socket can use is refused when the config is read,
        not when the first request goes to the member.
        """
        self.assertBadAt(self.badURL("http://h:99999"), "balancer.mycluster.member[1].url")
        self.assertBadAt(self.badURL("http://h:0"), "balancer.mycluster.member[1].url")

    def test_memberURLGood(self):
        for url in [
            "http://h",
            "https://h:8443",
            "http://[::1]:9",
            "http://h:1/a/b/",
            "http://h:65535",
        ]:
            self.assertEqual(memberURL(url, "p"), url)

    # Names

    def test_duplicateMember(self):
        data = self.mutated(lambda d: self.member(d, 1).update(name="app1"))
        self.assertBad(
            data, "balancer.mycluster.member[1].name: duplicate member name 'app1'"
        )

    def test_badMemberNames(self):
        for name in ["a b", "<script>", "", "x" * 65, "caf\xe9", "a/b"]:
            data = self.mutated(lambda d: self.member(d, 0).update(name=name))
            self.assertBad(
                data,
                "balancer.mycluster.member[0].name: expected a name of 1-64 "
                f"letters, digits, '.', '_' or '-', got {name!r}",
            )

    def test_longestMemberName(self):
        data = self.mutated(lambda d: self.member(d, 0).update(name="x" * 64))
        self.assertEqual(
            parseConfig(data).balancers["mycluster"].members[0].name, "x" * 64
        )

    def test_badBalancerNames(self):
        for name in ["a b", "<script>", "a\tb"]:

            def change(d):
                d["balancer"][name] = d["balancer"].pop("mycluster")
                d["listen"][0]["balancer"] = "mycluster"

            error = self.assertRaises(
                ConfigError, parseConfig, self.mutated(change), SCHEDULERS
            )
            text = str(error)
            self.assertIn(f"got {name!r}", text)
            self.assertTrue(text.startswith("balancer."), text)
            self.assertEqual(len(text.splitlines()), 1, repr(text))

    def test_balancerNameWithNewline(self):
        """
        A TOML quoted key may hold a newline; the message stays one line.
        """

        def change(d):
            d["balancer"]["a\nb"] = d["balancer"].pop("mycluster")

        error = self.assertRaises(
            ConfigError, parseConfig, self.mutated(change), SCHEDULERS
        )
        self.assertEqual(len(str(error).splitlines()), 1, repr(str(error)))

    def test_unknownKeyWithNewline(self):
        data = self.mutated(lambda d: d["listen"][0].update({"x\ny": 1}))
        error = self.assertRaises(ConfigError, parseConfig, data, SCHEDULERS)
        self.assertEqual(len(str(error).splitlines()), 1, repr(str(error)))

    def test_listenerBadBalancerName(self):
        data = self.mutated(lambda d: d["listen"][0].update(balancer="<b>"))
        self.assertBad(
            data,
            "listen[0].balancer: expected a name of 1-64 letters, digits, '.', "
            "'_' or '-', got '<b>'",
        )

    # Schedulers and cross references

    def test_unknownScheduler(self):
        data = self.mutated(
            lambda d: d["balancer"]["mycluster"].update(scheduler="byrequests")
        )
        self.assertBad(
            data,
            "balancer.mycluster.scheduler: unknown scheduler 'byrequests' "
            "(known: least-conn, round-robin, standby)",
        )

    def test_unknownSchedulerOtherMapping(self):
        data = good()
        self.assertBad(
            data,
            "balancer.mycluster.scheduler: unknown scheduler 'standby' (known: p2c)",
            schedulers={"p2c": object()},
        )

    def test_schedulerOptionsNotTable(self):
        data = self.mutated(
            lambda d: d["balancer"]["mycluster"].update(scheduler_options=3)
        )
        self.assertBad(
            data, "balancer.mycluster.scheduler_options: expected a table, got 3"
        )

    def test_unusedBalancer(self):
        data = self.mutated(
            lambda d: d["balancer"].update(
                spare={"member": [{"name": "a", "url": "http://h:1"}]}
            )
        )
        self.assertBad(data, "balancer.spare: no listener uses this balancer")

    def test_listenerNoSuchBalancer(self):
        def change(d):
            d["listen"].append({"endpoint": "tcp:8081", "balancer": "other"})

        self.assertBad(
            self.mutated(change), "listen[1].balancer: no balancer named 'other'"
        )

    def test_noBalancers(self):
        data = self.mutated(lambda d: d.update(balancer={}))
        self.assertBad(data, "listen[0].balancer: no balancer named 'mycluster'")

    # Types

    def test_stringForBool(self):
        data = self.mutated(lambda d: d["listen"][0].update(preserve_host="yes"))
        self.assertBad(
            data, "listen[0].preserve_host: expected true or false, got 'yes'"
        )
        data = self.mutated(lambda d: self.member(d, 1).update(standby="true"))
        self.assertBad(
            data,
            "balancer.mycluster.member[1].standby: expected true or false, got 'true'",
        )

    def test_intForBool(self):
        data = self.mutated(lambda d: self.member(d, 1).update(standby=1))
        self.assertBadAt(data, "balancer.mycluster.member[1].standby")

    def test_stringForInt(self):
        data = self.mutated(lambda d: self.member(d, 0).update(weight="2"))
        self.assertBad(
            data,
            "balancer.mycluster.member[0].weight: expected a whole number >= 0, "
            "got '2'",
        )

    def test_boolForInt(self):
        data = self.mutated(lambda d: self.member(d, 0).update(weight=True))
        self.assertBadAt(data, "balancer.mycluster.member[0].weight")
        data = self.mutated(lambda d: d["listen"][0].update(max_body=False))
        self.assertBadAt(data, "listen[0].max_body")

    def test_bodyMinRate(self):
        """
        C{body_min_rate} takes bytes per second, 0 or more (off); 500 by
        default.
        """
        self.assertEqual(parseConfig(good(), SCHEDULERS).listeners[0].bodyMinRate, 500.0)
        data = self.mutated(lambda d: d["listen"][0].update(body_min_rate=0))
        self.assertEqual(parseConfig(data, SCHEDULERS).listeners[0].bodyMinRate, 0.0)
        for bad in (-1, "fast", True):
            data = self.mutated(lambda d: d["listen"][0].update(body_min_rate=bad))
            self.assertBadAt(data, "listen[0].body_min_rate")

    def test_floatForInt(self):
        data = self.mutated(lambda d: d["balancer"]["mycluster"].update(keepalive=1.5))
        self.assertBadAt(data, "balancer.mycluster.keepalive")

    def test_negativeWeight(self):
        data = self.mutated(lambda d: self.member(d, 0).update(weight=-1))
        self.assertBad(
            data,
            "balancer.mycluster.member[0].weight: expected a whole number >= 0, "
            "got -1",
        )

    def test_badSeconds(self):
        for key, value in [
            ("retry", -1),
            ("retry", "60"),
            ("retry", True),
            ("timeout", 0),
            ("timeout", -2.5),
            ("connect_timeout", 0.0),
            ("connect_timeout", "5s"),
        ]:
            data = self.mutated(
                lambda d: d["balancer"]["mycluster"].update({key: value})
            )
            self.assertBadAt(data, f"balancer.mycluster.{key}")

    def test_nanSeconds(self):
        """
        NaN is not a number of seconds.
        """
        for key in ["retry", "timeout", "connect_timeout"]:
            data = self.mutated(
                lambda d: d["balancer"]["mycluster"].update({key: float("nan")})
            )
            self.assertBadAt(data, f"balancer.mycluster.{key}")

    def test_endpointNotString(self):
        data = self.mutated(lambda d: d["listen"][0].update(endpoint=8080))
        self.assertBad(data, "listen[0].endpoint: expected a string, got 8080")

    def test_listenNotArray(self):
        data = self.mutated(
            lambda d: d.update(listen={"endpoint": "tcp:1", "balancer": "mycluster"})
        )
        self.assertBad(data, "listen: expected an array of tables, got a table")

    def test_listenItemNotTable(self):
        data = self.mutated(lambda d: d.update(listen=["tcp:8080"]))
        self.assertBad(data, "listen[0]: expected a table, got 'tcp:8080'")

    def test_balancerNotTable(self):
        data = self.mutated(lambda d: d.update(balancer=[1]))
        self.assertBad(data, "balancer: expected a table, got an array")

    def test_memberNotArray(self):
        data = self.mutated(
            lambda d: d["balancer"]["mycluster"].update(
                member={"name": "a", "url": "http://h:1"}
            )
        )
        self.assertBad(
            data, "balancer.mycluster.member: expected an array of tables, got a table"
        )

    def test_memberItemNotTable(self):
        data = self.mutated(
            lambda d: d["balancer"]["mycluster"].update(member=["http://h:1"])
        )
        self.assertBad(
            data, "balancer.mycluster.member[0]: expected a table, got 'http://h:1'"
        )

    # Missing and empty

    def test_missingListen(self):
        data = self.mutated(lambda d: d.pop("listen"))
        self.assertBad(data, "listen: missing")

    def test_emptyListen(self):
        data = self.mutated(lambda d: d.update(listen=[]))
        self.assertBad(data, "listen: at least one [[listen]] is needed")

    def test_missingBalancer(self):
        data = self.mutated(lambda d: d.pop("balancer"))
        self.assertBad(data, "balancer: missing")

    def test_missingEndpoint(self):
        data = self.mutated(lambda d: d["listen"][0].pop("endpoint"))
        self.assertBad(data, "listen[0].endpoint: missing")

    def test_missingListenBalancer(self):
        data = self.mutated(lambda d: d["listen"][0].pop("balancer"))
        self.assertBad(
            data, "listen[0].balancer: missing (or give the listener [[listen.route]] tables)"
        )

    def test_missingMemberURL(self):
        data = self.mutated(lambda d: self.member(d, 1).pop("url"))
        self.assertBad(data, "balancer.mycluster.member[1].url: missing")

    def test_missingMemberName(self):
        data = self.mutated(lambda d: self.member(d, 0).pop("name"))
        self.assertBad(data, "balancer.mycluster.member[0].name: missing")

    def test_missingMembers(self):
        data = self.mutated(lambda d: d["balancer"]["mycluster"].pop("member"))
        self.assertBad(data, "balancer.mycluster.member: missing")

    def test_emptyMembers(self):
        data = self.mutated(lambda d: d["balancer"]["mycluster"].update(member=[]))
        self.assertBad(
            data, "balancer.mycluster.member: a balancer needs at least one member"
        )

    # Endpoints

    def test_badEndpoint(self):
        data = self.mutated(lambda d: d["listen"][0].update(endpoint="nonsense:xyz"))
        self.assertBad(
            data,
            "listen[0].endpoint: bad endpoint 'nonsense:xyz': "
            "Unknown endpoint type: 'nonsense'",
        )

    def test_badEndpointPort(self):
        data = self.mutated(lambda d: d["listen"][0].update(endpoint="tcp:http"))
        self.assertBadAt(data, "listen[0].endpoint")

    def test_emptyEndpoint(self):
        data = self.mutated(lambda d: d["listen"][0].update(endpoint=""))
        self.assertBadAt(data, "listen[0].endpoint")


class ConfigErrorTests(SynchronousTestCase):
    def test_str(self):
        self.assertEqual(str(ConfigError("a.b", "oops")), "a.b: oops")
        self.assertEqual(str(ConfigError("", "oops")), "oops")
        error = ConfigError("a", "b")
        self.assertEqual((error.path, error.message), ("a", "b"))


class LoadConfigTests(SynchronousTestCase):
    def write(self, text):
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_missingFile(self):
        path = self.mktemp()
        error = self.assertRaises(ConfigError, loadConfig, path, SCHEDULERS)
        self.assertEqual(
            str(error), f"{path}: cannot read: No such file or directory"
        )
        self.assertEqual(error.path, "")

    def test_directory(self):
        path = self.mktemp()
        os.mkdir(path)
        error = self.assertRaises(ConfigError, loadConfig, path)
        self.assertTrue(str(error).startswith(f"{path}: cannot read: "), str(error))
        self.assertEqual(len(str(error).splitlines()), 1)

    def test_invalidTOML(self):
        path = self.write('[[listen]]\nendpoint = "tcp:80\n')
        error = self.assertRaises(ConfigError, loadConfig, path, SCHEDULERS)
        text = str(error)
        self.assertTrue(text.startswith(f"{path}: not valid TOML: "), text)
        self.assertIn("line 2", text)
        self.assertEqual(len(text.splitlines()), 1, repr(text))

    def test_notUTF8(self):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b'x = "\xff"\n')
        error = self.assertRaises(ConfigError, loadConfig, path)
        self.assertEqual(len(str(error).splitlines()), 1, repr(str(error)))
        self.assertIn(path, str(error))

    def test_checked(self):
        """
        A file that is TOML but not a good config gives the key path.
        """
        path = self.write(
            '[[listen]]\nendpoint = "tcp:8080"\nbalancer = "b"\n'
            "[balancer.b]\n"
            '[[balancer.b.member]]\nname = "a"\nurl = "ftp://x"\n'
        )
        error = self.assertRaises(ConfigError, loadConfig, path, SCHEDULERS)
        self.assertEqual(
            str(error), "balancer.b.member[0].url: expected an http:// URL, got 'ftp://x'"
        )

    def test_tomlNewlineKey(self):
        """
        A quoted TOML key with a newline still gives a one-line message.
        """
        path = self.write(
            '[[listen]]\nendpoint = "tcp:8080"\nbalancer = "b"\n"a\\nb" = 1\n'
            '[balancer.b]\n[[balancer.b.member]]\nname = "a"\nurl = "http://x"\n'
        )
        with open(path, "rb") as f:
            self.assertIn("a\nb", tomllib.load(f)["listen"][0])
        error = self.assertRaises(ConfigError, loadConfig, path, SCHEDULERS)
        self.assertEqual(len(str(error).splitlines()), 1, repr(str(error)))

    def test_good(self):
        with open(EXAMPLE, encoding="utf-8") as f:
            path = self.write(f.read())
        self.assertEqual(loadConfig(path, SCHEDULERS), loadConfig(EXAMPLE, SCHEDULERS))


class ConfigFromArgumentsTests(SynchronousTestCase):
    def test_membersAndStandbys(self):
        config = configFromArguments(
            "tcp:8080",
            ["http://127.0.0.1:9999", "http://127.0.0.1:9997"],
            ["http://127.0.0.1:9998"],
            "standby",
            30.0,
            SCHEDULERS,
        )
        self.assertEqual(config.listeners, [ListenConfig("tcp:8080", "default", routes=[RouteConfig("default", balancer="default")])])
        self.assertEqual(list(config.balancers), ["default"])
        balancer = config.balancers["default"]
        self.assertEqual(balancer.name, "default")
        self.assertEqual(balancer.scheduler, "standby")
        self.assertEqual(balancer.retry, 30.0)
        self.assertEqual(
            balancer.members,
            [
                MemberConfig("app1", "http://127.0.0.1:9999", False, 1),
                MemberConfig("app2", "http://127.0.0.1:9997", False, 1),
                MemberConfig("app3", "http://127.0.0.1:9998", True, 1),
            ],
        )

    def test_onlyStandbys(self):
        config = configFromArguments(
            "tcp:1", [], ["http://h:2"], "round-robin", 0, SCHEDULERS
        )
        self.assertEqual(
            config.balancers["default"].members,
            [MemberConfig("app1", "http://h:2", True, 1)],
        )

    def test_noMembers(self):
        error = self.assertRaises(
            ConfigError, configFromArguments, "tcp:1", [], [], "standby", 60, SCHEDULERS
        )
        self.assertEqual(
            str(error), "balancer.default.member: a balancer needs at least one member"
        )

    def test_badURL(self):
        error = self.assertRaises(
            ConfigError,
            configFromArguments,
            "tcp:1",
            ["http://h:1", "ftp://x"],
            [],
            "standby",
            60,
            SCHEDULERS,
        )
        self.assertEqual(
            str(error),
            "balancer.default.member[1].url: expected an http:// URL, got 'ftp://x'",
        )

    def test_unknownScheduler(self):
        error = self.assertRaises(
            ConfigError,
            configFromArguments,
            "tcp:1",
            ["http://h:1"],
            [],
            "nope",
            60,
            SCHEDULERS,
        )
        self.assertEqual(
            str(error),
            "balancer.default.scheduler: unknown scheduler 'nope' "
            "(known: least-conn, round-robin, standby)",
        )

    def test_badListen(self):
        error = self.assertRaises(
            ConfigError,
            configFromArguments,
            "nonsense:xyz",
            ["http://h:1"],
            [],
            "standby",
            60,
        )
        self.assertEqual(error.path, "listen[0].endpoint")

    def test_negativeRetry(self):
        error = self.assertRaises(
            ConfigError,
            configFromArguments,
            "tcp:1",
            ["http://h:1"],
            [],
            "standby",
            -1.0,
        )
        self.assertEqual(
            str(error),
            "balancer.default.retry: expected a number of seconds >= 0, got -1.0",
        )


class ManagerConfigTests(SynchronousTestCase):
    def parse(self, manager=None, managerPath=None, endpoint=None):
        data = good()
        if manager is not None:
            data["manager"] = manager
        if managerPath is not None:
            data["listen"][0]["manager_path"] = managerPath
        if endpoint is not None:
            data["listen"][0]["endpoint"] = endpoint
        return parseConfig(data, SCHEDULERS)

    def test_unixListenerNeedsToken(self):
        """
        On a unix: listener the allow-list cannot see who connects, so the
        manager mounted there needs a token.
        """
        self.assertError(
            "listen[0].manager_path: on a unix: listener the manager needs [manager] token_file",
            manager={}, managerPath="/balancer-manager", endpoint="unix:/run/pb.sock",
        )
        config = self.parse(
            manager={"token_file": "/etc/pb/token"},
            managerPath="/balancer-manager",
            endpoint="unix:/run/pb.sock",
        )
        self.assertEqual(config.listeners[0].managerPath, "/balancer-manager")

    def assertError(self, expected, **kwargs):
        with self.assertRaises(ConfigError) as caught:
            self.parse(**kwargs)
        self.assertEqual(str(caught.exception), expected)

    def test_defaults(self):
        self.assertIsNone(self.parse().manager)
        manager = self.parse(manager={}).manager
        self.assertEqual(
            manager,
            ManagerConfig("tcp:8081:interface=127.0.0.1", ["127.0.0.0/8", "::1"], None, None),
        )

    def test_values(self):
        config = self.parse(
            manager={
                "endpoint": "tcp:9000",
                "allow": ["10.0.0.0/8", "::1"],
                "token_file": "/etc/pb/token",
                "state_file": "/var/lib/pb/state.json",
            },
            managerPath="/admin/lb/",
        )
        self.assertEqual(
            config.manager,
            ManagerConfig("tcp:9000", ["10.0.0.0/8", "::1"], "/etc/pb/token", "/var/lib/pb/state.json"),
        )
        self.assertEqual(config.listeners[0].managerPath, "/admin/lb")

    def test_badValues(self):
        self.assertError("manager.allow[1]: expected an address or CIDR network, got 'nope'",
                         manager={"allow": ["127.0.0.1", "nope"]})
        self.assertError("manager.allow: expected a non-empty array of addresses, got an array",
                         manager={"allow": []})
        self.assertError("manager.colour: unknown key", manager={"colour": "red"})
        self.assertError("manager.token_file: expected a string, got 3", manager={"token_file": 3})
        self.assertError("listen[0].manager_path: needs a [manager] table (even an empty one)",
                         managerPath="/balancer-manager")
        self.assertError(
            "listen[0].manager_path: expected a path like '/balancer-manager', got 'x y'",
            manager={}, managerPath="x y",
        )
        self.assertError(
            "listen[0].manager_path: expected a path like '/balancer-manager', got '/a/<b>'",
            manager={}, managerPath="/a/<b>",
        )

    def test_fromArguments(self):
        config = configFromArguments(
            "tcp:8080", ["http://127.0.0.1:9999"], [], "standby", 60, SCHEDULERS,
            manager="tcp:8081:interface=127.0.0.1",
        )
        self.assertEqual(config.manager.endpoint, "tcp:8081:interface=127.0.0.1")

    def test_commandLineOrder(self):
        """
        C{--standby A --member B} names A C{app1} and B C{app2}, as the
        README says; the balancer is C{default}.
        """
        from playbalancer.tap import Options

        options = Options()
        options.parseOptions(
            ["--standby", "http://127.0.0.1:9998", "--member", "http://127.0.0.1:9999"]
        )
        (balancer,) = options.config.balancers.values()
        self.assertEqual(balancer.name, "default")
        self.assertEqual(
            [(m.name, m.url, m.standby) for m in balancer.members],
            [("app1", "http://127.0.0.1:9998", True), ("app2", "http://127.0.0.1:9999", False)],
        )


class TCPModeConfigTests(SynchronousTestCase):
    def config(self, url="tcp://127.0.0.1:5432", mode="tcp", extra=None):
        data = {
            "listen": [{"endpoint": "tcp:5433", "balancer": "db", "mode": mode}],
            "balancer": {"db": {"member": [{"name": "db1", "url": url}]}},
        }
        if extra:
            data["listen"].append(extra)
        return parseConfig(data, SCHEDULERS)

    def assertError(self, expected, **kwargs):
        with self.assertRaises(ConfigError) as caught:
            self.config(**kwargs)
        self.assertEqual(str(caught.exception), expected)

    def test_good(self):
        config = self.config()
        self.assertEqual((config.listeners[0].mode, config.balancers["db"].mode), ("tcp", "tcp"))

    def test_errors(self):
        self.assertError("balancer.db.member[0].url: expected a tcp:// URL, got 'http://127.0.0.1:1'",
                         url="http://127.0.0.1:1")
        self.assertError("balancer.db.member[0].url: expected tcp://host:port, got 'tcp://h'", url="tcp://h")
        self.assertError("balancer.db.member[0].url: expected an http:// URL, got 'tcp://h:1'",
                         url="tcp://h:1", mode="http")
        self.assertError("listen[0].mode: expected \"http\" or \"tcp\", got 'udp'", mode="udp")
        self.assertError(
            "listen[1].mode: balancer 'db' is used in both http and tcp mode",
            extra={"endpoint": "tcp:8080", "balancer": "db"},
        )


class AcceptProxyProtocolConfigTests(SynchronousTestCase):
    def test_httpOnlyForNow(self):
        data = good()
        data["listen"][0]["accept_proxy_protocol"] = True
        self.assertTrue(parseConfig(data, SCHEDULERS).listeners[0].acceptProxyProtocol)
        data = {
            "listen": [{"endpoint": "tcp:1", "balancer": "db", "mode": "tcp",
                        "accept_proxy_protocol": True}],
            "balancer": {"db": {"member": [{"name": "a", "url": "tcp://h:1"}]}},
        }
        self.assertTrue(parseConfig(data, SCHEDULERS).listeners[0].acceptProxyProtocol)
