"""
README promises about running the program: the command-line quick start,
listener kinds, the PROXY protocol, the metrics endpoint, the access log
and structured logs, and backpressure, through real C{twistd} (or C{twist})
children or the service C{makeService} builds (see the audit of
README.rst; the row numbers are its own).
"""

from __future__ import annotations

import json
import os
import struct
import time

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
    connectProtocol,
)
from twisted.trial.unittest import TestCase

from playbalancer.testing import MemberServer, freePorts, waitUntil
from playbalancer.testing.client import _RawClient
from playbalancer.testing.twistd import TwistdProcess, childrenOf

from tests.promiseharness import ServiceTestCase
from tests.proxyharness import headerValues
from tests.test_bigbodies import memoryOf

MiB = 2**20


class Child(TwistdProcess):
    """
    A C{twistd -n playbalancer ARGS} (or C{twist ... playbalancer ARGS})
    child process under this interpreter; its output in C{output()}.
    """

    def __init__(self, case, args, command=None):
        TwistdProcess.__init__(self, logPath=case.mktemp(), args=args, command=command)
        case.addCleanup(self.stop, 15.0)


def raw(endpoint, data, timeout=15.0):
    """
    Send C{data} over a connection from C{endpoint}; everything that comes
    back until the server closes.
    """
    done = defer.Deferred()
    protocol = _RawClient(data, done)
    connectProtocol(endpoint, protocol).addErrback(done.errback)
    timer = reactor.callLater(timeout, lambda: protocol.transport.abortConnection())
    return done.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])


def tcp(port, host="127.0.0.1", **kwargs):
    return TCP4ClientEndpoint(reactor, host, port, **kwargs)


def parse(response):
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def get(path, host=b"x", extra=b""):
    return b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n" + extra + b"\r\n"


async def poll(condition, child, timeout=20.0, interval=0.05):
    """
    Wait until the async C{condition()} is true; fail if C{child} exits or
    after C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        if not child.running():
            raise AssertionError(f"the child exited: {child.output()[-3000:]!r}")
        try:
            if await condition():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"condition never came true; output: {child.output()[-3000:]!r}")
        await task.deferLater(reactor, interval, lambda: None)


class QuickStartTests(TestCase):
    timeout = 90

    async def test_commandLineQuickStart(self):
        """
        #15: C{twistd -n playbalancer --listen tcp:PORT --member A --standby
        B --scheduler standby --retry 1}: requests go to A; with A stopped
        they go to B without a failed request; with A started again they
        return to it once its second of rest is over.
        """
        a = MemberServer("app1", reactor).start()
        b = MemberServer("app2", reactor).start()
        self.addCleanup(a.stop)
        self.addCleanup(b.stop)
        (port,) = freePorts(1)
        child = Child(self, [
            "--listen", f"tcp:{port}:interface=127.0.0.1",
            "--member", a.url, "--standby", b.url,
            "--scheduler", "standby", "--retry", "1",
        ])

        async def servedByNow():
            status, headers, _ = parse(await raw(tcp(port), get(b"/")))
            self.assertEqual(status, 200)
            return headers[b"x-served-by"].decode()

        await poll(lambda: _ok(raw(tcp(port), get(b"/"))), child)
        for _ in range(5):
            self.assertEqual(await servedByNow(), "app1")
        self.assertEqual(b.seen, [])
        aPort = a.port
        await a.stop()
        for _ in range(5):
            self.assertEqual(await servedByNow(), "app2")
        a = MemberServer("app1", reactor, port=aPort).start()
        self.addCleanup(a.stop)

        async def backOnA():
            return await servedByNow() == "app1"

        await poll(backOnA, child, timeout=15.0, interval=0.2)
        self.assertEqual(await servedByNow(), "app1")


async def _ok(response):
    return (await response).startswith(b"HTTP/1.1 200")


class WorkersOptionTests(TestCase):
    timeout = 90

    async def test_workersOptionStartsThatMany(self):
        """
        #19: C{twistd playbalancer --workers 2} with a file that has no
        C{workers} key serves with two worker processes.
        """
        member = MemberServer("app1", reactor).start()
        self.addCleanup(member.stop)
        (port,) = freePorts(1)
        config = self.mktemp()
        with open(config, "w") as f:
            f.write(
                f'[[listen]]\nendpoint = "tcp:{port}:interface=127.0.0.1"\nbalancer = "web"\n'
                f'[[balancer.web.member]]\nname = "app1"\nurl = "{member.url}"\n'
            )
        child = Child(self, ["--config", config, "--workers", "2"])
        await poll(lambda: _ok(raw(tcp(port), get(b"/"))), child)
        await poll(lambda: defer.succeed(len(childrenOf(child.pid)) == 2), child)
        await task.deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(len(childrenOf(child.pid)), 2)


class ListenerKindTests(ServiceTestCase):
    async def test_tcp6AndUnixListeners(self):
        """
        #28: a C{tcp6:} listener on C{::1} and a C{unix:} listener each
        carry a request to a member and back; the service logs
        C{config.loaded} (#120).
        """
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        member = MemberServer("app1", reactor).start()
        self.addCleanup(member.stop)
        import shutil
        import tempfile

        directory = tempfile.mkdtemp(prefix="pb")  # AF_UNIX paths are short
        self.addCleanup(shutil.rmtree, directory)
        socketPath = os.path.join(directory, "pb.sock")
        service, (six, unix) = await self.startService(
            f"""
[[listen]]
endpoint = "tcp6:0:interface=\\\\:\\\\:1"
balancer = "web"

[[listen]]
endpoint = "unix:{socketPath}"
balancer = "web"

[[balancer.web.member]]
name = "app1"
url = "{member.url}"
"""
        )
        (loaded,) = [e for e in events if e.get("playbalancer_event") == "config.loaded"]
        self.assertEqual((loaded["listeners"], loaded["balancers"], loaded["workers"]), (2, "web", 1))
        self.assertEqual(six.getHost().host, "::1")
        status, headers, body = parse(
            await raw(TCP6ClientEndpoint(reactor, "::1", six.getHost().port), get(b"/echo"))
        )
        self.assertEqual((status, headers.get(b"x-served-by")), (200, b"app1"), (headers, body))
        self.assertEqual(headerValues(json.loads(body), "x-forwarded-for"), ["::1"])
        status, headers, body = parse(await raw(UNIXClientEndpoint(reactor, socketPath), get(b"/?via=unix")))
        self.assertEqual((status, headers[b"x-served-by"]), (200, b"app1"))
        self.assertEqual(member.paths, [b"/echo", b"/?via=unix"])


class ProxyProtocolTests(ServiceTestCase):
    async def test_proxyV2OnAnHTTPListener(self):
        """
        #40: an HTTP listener with C{accept_proxy_protocol = true}, built
        from TOML: a PROXY v2 header (and a v1 line) gives the client
        address the member sees in C{X-Forwarded-For}; a request without
        one reaches no member.
        """
        member = MemberServer("app1", reactor).start()
        self.addCleanup(member.stop)
        service, (front,) = await self.startService(
            f"""
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
balancer = "web"
accept_proxy_protocol = true

[[balancer.web.member]]
name = "app1"
url = "{member.url}"
"""
        )
        port = front.getHost().port
        v2 = (
            b"\r\n\r\n\x00\r\nQUIT\n\x21\x11"
            + struct.pack("!H", 12)
            + bytes([198, 51, 100, 9, 127, 0, 0, 1])
            + struct.pack("!HH", 50001, 80)
        )
        status, _, body = parse(await raw(tcp(port), v2 + get(b"/echo")))
        self.assertEqual(status, 200, body)
        self.assertEqual(headerValues(json.loads(body), "x-forwarded-for"), ["198.51.100.9"])
        v1 = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 80\r\n"
        status, _, body = parse(await raw(tcp(port), v1 + get(b"/echo")))
        self.assertEqual(status, 200, body)
        self.assertEqual(headerValues(json.loads(body), "x-forwarded-for"), ["192.0.2.7"])
        self.assertEqual(len(member.seen), 2)
        await raw(tcp(port), get(b"/echo"))
        self.assertEqual(len(member.seen), 2)


class MetricsEndpointTests(ServiceTestCase):
    async def test_metricsEndpoint(self):
        """
        #73: C{metrics_endpoint} serves C{/metrics} (and nothing else:
        C{/api/status} is 404 there), behind the same allow-list (403 from
        an address outside it) and token (401 without it).
        """
        member = MemberServer("app1", reactor).start()
        self.addCleanup(member.stop)
        tokenPath = os.path.abspath(self.mktemp())
        with open(tokenPath, "w") as f:
            f.write("s3cret\n")
        os.chmod(tokenPath, 0o600)
        service, (front, manager, metrics) = await self.startService(
            f"""
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
balancer = "web"

[[balancer.web.member]]
name = "app1"
url = "{member.url}"

[manager]
endpoint = "tcp:0:interface=127.0.0.1"
metrics_endpoint = "tcp:0"
allow = ["127.0.0.1"]
token_file = "{tokenPath}"
"""
        )
        self.assertEqual(parse(await raw(tcp(front.getHost().port), get(b"/")))[0], 200)
        port = metrics.getHost().port
        token = b"Authorization: Bearer s3cret\r\n"
        status, headers, body = parse(await raw(tcp(port), get(b"/metrics", b"127.0.0.1", token)))
        self.assertEqual(status, 200)
        self.assertIn(b'playbalancer_member_responses_total{balancer="web",code="2xx",member="app1"} 1.0', body)
        self.assertEqual(parse(await raw(tcp(port), get(b"/api/status", b"127.0.0.1", token)))[0], 404)
        self.assertEqual(parse(await raw(tcp(port), get(b"/", b"127.0.0.1", token)))[0], 404)
        self.assertEqual(parse(await raw(tcp(port), get(b"/metrics", b"127.0.0.1")))[0], 401)
        outside = tcp(port, bindAddress=("127.0.0.2", 0))
        self.assertEqual(parse(await raw(outside, get(b"/metrics", b"127.0.0.1", token)))[0], 403)
        # The manager's own endpoint has /metrics too.
        status, _, _ = parse(await raw(tcp(manager.getHost().port), get(b"/metrics", b"127.0.0.1", token)))
        self.assertEqual(status, 200)


class AccessLogChildTests(TestCase):
    timeout = 90

    async def test_standardOutputAndFlushedWithinASecond(self):
        """
        #43: C{access_log = "-"} writes each request's line to the
        standard output of a real twistd; #44: a file access log gets its
        line within about a second, with no one flushing it.
        """
        member = MemberServer("app1", reactor).start()
        self.addCleanup(member.stop)
        toStdout, toFile = freePorts(2)
        logPath = os.path.abspath(self.mktemp())
        config = self.mktemp()
        with open(config, "w") as f:
            f.write(
                f"""
[[listen]]
endpoint = "tcp:{toStdout}:interface=127.0.0.1"
balancer = "web"
access_log = "-"

[[listen]]
endpoint = "tcp:{toFile}:interface=127.0.0.1"
balancer = "web"
access_log = "{logPath}"

[[balancer.web.member]]
name = "app1"
url = "{member.url}"
"""
            )
        child = Child(self, ["--config", config])
        await poll(lambda: _ok(raw(tcp(toFile), get(b"/"))), child)
        await poll(lambda: _ok(raw(tcp(toStdout), get(b"/"))), child)
        self.assertTrue((await raw(tcp(toStdout), get(b"/?to-stdout"))).startswith(b"HTTP/1.1 200"))
        self.assertTrue((await raw(tcp(toFile), get(b"/?to-file"))).startswith(b"HTTP/1.1 200"))
        sent = time.monotonic()

        def inFile():
            with open(logPath, "rb") as f:
                return b'"GET /?to-file HTTP/1.1" 200 ' in f.read()

        await poll(lambda: defer.succeed(inFile()), child, timeout=10.0, interval=0.05)
        # Generous: the promise is one second; the child may be slow to run.
        self.assertLess(time.monotonic() - sent, 5.0)
        await poll(
            lambda: defer.succeed(b'"GET /?to-stdout HTTP/1.1" 200 ' in child.output()), child, timeout=10.0
        )
        (line,) = [l for l in child.output().splitlines() if b'"GET /?to-stdout HTTP/1.1"' in l]
        self.assertRegex(
            line, rb'^127\.0\.0\.1 - - \[[^]]+\] "GET /\?to-stdout HTTP/1\.1" 200 \d+ "-" "-" member=app1 '
        )
        with open(logPath, "rb") as f:
            self.assertNotIn(b"/?to-stdout", f.read())
        self.assertNotIn(b"/?to-file", child.output())


class JSONLogTests(TestCase):
    timeout = 90

    async def test_twistJSONLogLines(self):
        """
        #120: C{twist --log-format=json playbalancer ...} gives JSON lines
        with C{playbalancer_event}: C{config.loaded}, and C{member.down}
        with its C{reason}.
        """
        (port,) = freePorts(1)
        (deadPort,) = freePorts(1)
        child = Child(
            self,
            ["--listen", f"tcp:{port}:interface=127.0.0.1", "--member", f"http://127.0.0.1:{deadPort}"],
            command=["-m", "twisted", "--log-format=json"],
        )

        async def refused():
            return (await raw(tcp(port), get(b"/"))).startswith(b"HTTP/1.1 503")

        await poll(refused, child)

        def events():
            found = {}
            for line in child.output().splitlines():
                try:
                    event = json.loads(line.lstrip(b"\x1e"))
                except ValueError:
                    continue
                if "playbalancer_event" in event:
                    found.setdefault(event["playbalancer_event"], event)
            return found

        await poll(lambda: defer.succeed("member.down" in events()), child, timeout=10.0)
        found = events()
        self.assertEqual(found["config.loaded"]["balancers"], "default")
        self.assertEqual(found["member.down"]["member"], "app1")
        self.assertEqual(found["member.down"]["reason"], "connection refused")


class SlowClientBackpressureTests(TestCase):
    timeout = 120

    async def test_slowClientPausesTheMember(self):
        """
        #128: a client that stops reading a 128 MiB download from a real
        twistd: the balancer's resident memory grows by less than 32 MiB
        while it does not read, and once it reads again every byte comes.
        """
        from tests.test_tcp import Client

        member = MemberServer("app1", reactor).start()
        self.addCleanup(member.stop)
        (port,) = freePorts(1)
        config = self.mktemp()
        with open(config, "w") as f:
            f.write(
                f'[[listen]]\nendpoint = "tcp:{port}:interface=127.0.0.1"\nbalancer = "web"\n'
                f'[[balancer.web.member]]\nname = "app1"\nurl = "{member.url}"\n'
            )
        child = Child(self, ["--config", config])
        await poll(lambda: _ok(raw(tcp(port), get(b"/"))), child)
        for _ in range(3):  # settle the heap a little
            await raw(tcp(port), get(b"/large?size=1048576"))
        before = memoryOf(child.pid, "VmRSS")
        client = Client()
        await connectProtocol(tcp(port), client)
        self.addCleanup(lambda: client.transport.connected and client.transport.abortConnection())
        size = 128 * MiB
        client.transport.write(get(b"/large?size=%d" % size))
        await waitUntil(lambda: client.count > 0, reactor)
        client.transport.pauseProducing()
        peak = before
        for _ in range(15):
            await task.deferLater(reactor, 0.1, lambda: None)
            peak = max(peak, memoryOf(child.pid, "VmRSS"))
        self.assertLess(peak - before, 32 * MiB)
        self.assertLess(client.count, 32 * MiB)
        client.transport.resumeProducing()
        await client.closed
        self.assertGreater(client.count, size)
        self.assertTrue(client.data.startswith(b"HTTP/1.1 200"), client.data[:200])
