"""
C{workers = 2}: a real C{twistd playbalancer} whose listeners are served
by two worker processes, while the parent runs the manager.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import treq
from treq.client import HTTPClient
from twisted.internet import reactor, task
from twisted.trial.unittest import SynchronousTestCase
from twisted.internet.endpoints import TCP6ClientEndpoint
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from playbalancer.testing import MemberServer, freePorts
from playbalancer.testing.twistd import TwistdTestCase, childrenOf
from playbalancer.workers import DEFAULT_BACKLOG, endpointAddress, share

from tests.proxyharness import servedBy


class WorkerTests(TwistdTestCase):
    async def setUp(self):
        await self.startTwoMembers(
            routes='[[listen.route]]\nname = "gone"\npath = "/gone"\nstatus = 410\n'
        )

    async def test_routesSummed(self):
        """
        Routes work in every worker, and the manager shows each route's
        requests summed over the workers.
        """
        for _ in range(10):
            self.assertEqual((await self.get("/gone/x")).code, 410)

        async def gone():
            (listener,) = (await self.status())["listeners"]
            return {r["name"]: r for r in listener["routes"]}["gone"]

        deadline = time.monotonic() + 10
        while (await gone())["hits"] < 10 and time.monotonic() < deadline:
            await task.deferLater(reactor, 0.2, lambda: None)
        route = await gone()
        self.assertEqual((route["hits"], route["responses"]), (10, {"4xx": 10}))

    async def test_servesAndAppliesDrain(self):
        """
        Both members are served; a drain sent to the parent's manager
        reaches every worker within a fraction of a second.
        """
        served = {servedBy(await self.get("/")) for _ in range(20)}
        self.assertEqual(served, {"app1", "app2"})
        response = await self.client.post(
            self.manager + "/api/balancers/web/members/app1",
            data=json.dumps({"admin": "drain"}).encode(),
            headers={b"Content-Type": [b"application/json"]},
        )
        self.assertEqual(response.code, 200, await treq.content(response))
        await task.deferLater(reactor, 0.5, lambda: None)
        served = [servedBy(await self.get("/")) for _ in range(20)]
        self.assertEqual(set(served), {"app2"})

    async def test_deadWorkerRestarted(self):
        before = childrenOf(self.child.pid)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        await self.waitFor(lambda: len(childrenOf(self.child.pid) - {victim}) == 2)
        self.assertNotIn(victim, childrenOf(self.child.pid))
        for _ in range(20):
            self.assertEqual((await self.get("/")).code, 200)

    async def test_countersSummed(self):
        """
        The manager's metrics sum the workers' counters.
        """
        async def total():
            values = [
                await self.metric("playbalancer_member_responses_total", balancer="web", member=m, code="2xx")
                for m in ("app1", "app2")
            ]
            return sum(v or 0 for v in values)

        await task.deferLater(reactor, 1.2, lambda: None)  # reports of set-up requests
        start = await total()
        for _ in range(30):
            await self.get("/")
        deadline = time.monotonic() + 10
        while await total() < start + 30 and time.monotonic() < deadline:
            await task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(await total(), start + 30)

    async def test_latencyShown(self):
        """
        The manager shows the latency of requests served by the workers.
        """
        for _ in range(10):
            await self.get("/")
        latencies = {}

        async def shown():
            members = (await self.status())["balancers"]["web"]["members"]
            for name in ("app1", "app2"):
                latencies[name] = (
                    members[name]["latency_mean_ms"],
                    members[name]["latency_p95_ms"],
                )
            return all(None not in pair for pair in latencies.values())

        deadline = time.monotonic() + 10
        while not await shown() and time.monotonic() < deadline:
            await task.deferLater(reactor, 0.2, lambda: None)
        for mean, p95 in latencies.values():
            self.assertIsNotNone(mean)
            self.assertGreater(mean, 0)
            self.assertGreaterEqual(p95, 0)

    async def test_drainWaitWithWorkers(self):
        """
        C{playbalancer drain --wait} with two workers: it does not say
        "drained" while a request is in flight in a worker, nor before
        every worker has applied the drain; it does once the request ends.
        """
        import io

        from twisted.internet import defer

        from playbalancer.ctl.cli import run

        # The request goes to either member (each worker has its own
        # round robin): drain the one that holds it.
        arrivals = [m.hold.arrival() for m in self.members]
        held = defer.ensureDeferred(self.get("/hold"))
        _, index = await defer.DeferredList(arrivals, fireOnOneCallback=True)
        holding = self.members[index]
        out, err = io.StringIO(), io.StringIO()
        drained = defer.ensureDeferred(
            run(reactor, ["--manager", self.manager, "drain", f"web/{holding.name}", "--wait",
                          "--timeout", "30"], stdout=out, stderr=err, environ={})
        )
        await task.deferLater(reactor, 1.5, lambda: None)
        self.assertFalse(drained.called, out.getvalue() + err.getvalue())
        holding.hold.release()
        self.assertEqual(await drained, 0, err.getvalue())
        self.assertIn("drained", out.getvalue())
        response = await held
        self.assertEqual(response.code, 200)

    async def test_drainedAtOnceOnlyWhenEveryWorkerApplied(self):
        """
        An idle member: the first status after the drain may not show it
        drained before both workers reported the new state.
        """
        response = await self.client.post(
            self.manager + "/api/balancers/web/members/app1",
            data=json.dumps({"admin": "drain"}).encode(),
            headers={b"Content-Type": [b"application/json"]},
        )
        answer = json.loads(await treq.content(response))
        tier = answer["tier"]
        self.assertEqual(tier["inflight"], 0)
        self.assertEqual(len(tier["behind"]), 2)  # nobody reported it yet
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            response = await self.client.get(self.manager + "/api/status")
            status = json.loads(await treq.content(response))
            if status["balancers"]["web"]["members"]["app1"]["tier"]["idle"]:
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        self.assertTrue(status["balancers"]["web"]["members"]["app1"]["tier"]["idle"])

    async def test_inFlightSummedForDrain(self):
        """
        A request held in a worker shows as in flight on the parent's
        manager (what C{drain --wait} waits on), and is gone once it ends.
        """
        from twisted.internet import defer

        response = await self.client.post(
            self.manager + "/api/balancers/web/members/app2",
            data=json.dumps({"admin": "drain"}).encode(),
            headers={b"Content-Type": [b"application/json"]},
        )
        await treq.content(response)
        await task.deferLater(reactor, 0.5, lambda: None)
        app1 = self.members[0]
        arrived = app1.hold.arrival()
        held = defer.ensureDeferred(self.get("/hold"))
        await arrived
        inFlight = []

        async def flight():
            values = [
                await self.metric("playbalancer_member_in_flight", balancer="web", member=m)
                for m in ("app1", "app2")
            ]
            inFlight[:] = values
            return values

        deadline = time.monotonic() + 5
        while (await flight())[0] != 1 and time.monotonic() < deadline:
            await task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(inFlight[0], 1)
        app1.hold.release()
        await held
        deadline = time.monotonic() + 5
        while (await flight()) != [0, 0] and time.monotonic() < deadline:
            await task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(inFlight, [0, 0])


class ManyMembersTests(TwistdTestCase):
    """
    1,000 members (two real ones, the rest standbys never used) with two
    workers: their reports and state snapshots are far over AMP's 64 KiB
    value limit.
    """

    async def setUp(self):
        standbys = "".join(
            f"""
[[balancer.web.member]]
name = "standby-with-a-long-name-{i:04d}"
url = "http://127.0.0.1:9/some/long/path/to/standby/{i:04d}"
standby = true
"""
            for i in range(998)
        )
        await self.startTwoMembers(members=standbys)

    async def inFlight(self, member):
        return await self.metric("playbalancer_member_in_flight", balancer="web", member=member)

    async def test_drainReachesEveryWorker(self):
        """
        A drain reaches both workers: after it, every request (over 40 new
        connections, spread over both workers) goes to the other member.
        """
        await self.change("app2", {"admin": "drain"})
        deadline = time.monotonic() + 15
        while True:
            served = {servedBy(await self.get("/")) for _ in range(40)}
            if served == {"app1"} or time.monotonic() > deadline:
                break
            await task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(served, {"app1"})

    async def test_inFlightKeepsUpdating(self):
        """
        Requests held in the workers show as in flight on the parent, and
        the count goes back to 0 when they end, twice over: the reports keep
        coming.
        """
        from twisted.internet import defer

        async def total():
            return sum([(await self.inFlight(m)) or 0 for m in ("app1", "app2")])

        async def until(wanted):
            deadline = time.monotonic() + 10
            while await total() != wanted and time.monotonic() < deadline:
                await task.deferLater(reactor, 0.1, lambda: None)
            self.assertEqual(await total(), wanted)

        for _ in range(2):
            held = [defer.ensureDeferred(self.get("/hold")) for _ in range(4)]
            await self.waitFor(lambda: sum(len(m.hold.held) for m in self.members) == 4)
            await until(4)
            for member in self.members:
                member.hold.release()
            await defer.gatherResults(held)
            await until(0)


def listeningPorts(pid, table="/proc/net/tcp6"):
    """
    The ports that process C{pid} listens on, from C{table}.
    """
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    with open(table) as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _hasIPv6Loopback():
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@implementer(IAgentEndpointFactory)
class _OverIPv6Loopback:
    """
    Connects every request to ::1, at its URL's port.
    """

    @classmethod
    def agent(cls):
        pool = HTTPConnectionPool(reactor, persistent=False)
        return Agent.usingEndpointFactory(reactor, cls(), pool=pool)

    def endpointForURI(self, uri):
        return TCP6ClientEndpoint(reactor, "::1", uri.port)


class IPv6Tests(TwistdTestCase):
    if not _hasIPv6Loopback():
        skip = "no IPv6 loopback"

    async def test_tcp6WithInterface(self):
        """
        C{tcp6:0:interface=\\:\\:1} (an escaped interface) starts with two
        workers, which serve requests over ::1.
        """
        self.members = [MemberServer(name, reactor).start() for name in ("app1", "app2")]
        for member in self.members:
            self.addCleanup(member.stop)
        (manager,) = freePorts(1)
        self.startTwistd(
            f"""
workers = 2

[[listen]]
endpoint = 'tcp6:0:interface=\\:\\:1'
balancer = "web"

[balancer.web]

[[balancer.web.member]]
name = "app1"
url = "{self.members[0].url}"

[[balancer.web.member]]
name = "app2"
url = "{self.members[1].url}"

[manager]
endpoint = "tcp:{manager}:interface=127.0.0.1"
"""
        )
        self.manager = f"http://127.0.0.1:{manager}"
        await self.waitFor(lambda: len(childrenOf(self.child.pid)) == 2)
        await self.waitFor(lambda: len(listeningPorts(self.child.pid)) == 1)
        (port,) = listeningPorts(self.child.pid)
        self.client = HTTPClient(_OverIPv6Loopback.agent())
        # The host is a name (Agent cannot take an IPv6 literal); the
        # connection goes to ::1 whatever it says.
        self.base = f"http://localhost:{port}"
        await self.waitServing(2)
        served = {servedBy(await self.get("/")) for _ in range(20)}
        self.assertEqual(served, {"app1", "app2"})


class EndpointAddressTests(SynchronousTestCase):
    """
    L{endpointAddress} reads endpoint strings with Twisted's parser.
    """

    def test_tcp6EscapedInterface(self):
        self.assertEqual(
            endpointAddress(r"tcp6:8080:interface=\:\:1"),
            (socket.AF_INET6, "::1", 8080, DEFAULT_BACKLOG),
        )

    def test_tcp6AnyInterface(self):
        self.assertEqual(endpointAddress("tcp6:0"), (socket.AF_INET6, "::", 0, DEFAULT_BACKLOG))

    def test_tcpBacklog(self):
        self.assertEqual(
            endpointAddress("tcp:port=80:backlog=7:interface=127.0.0.1"),
            (socket.AF_INET, "127.0.0.1", 80, 7),
        )

    def test_otherKinds(self):
        self.assertRaises(ValueError, endpointAddress, "unix:/tmp/x.sock")
        self.assertRaises(ValueError, endpointAddress, "tcp:notaport")


class LimitsTests(TwistdTestCase):
    """
    C{max_connections} and C{max_connections_per_member} hold for the whole
    balancer, not per worker.
    """

    async def start(self, listen, balancer):
        self.app = MemberServer("app1", reactor).start()
        self.addCleanup(self.app.stop)
        front, manager = freePorts(2)
        self.startTwistd(
            f"""
workers = 2

[[listen]]
endpoint = "tcp:{front}:interface=127.0.0.1"
balancer = "web"
{listen}

[balancer.web]
{balancer}

[[balancer.web.member]]
name = "app1"
url = "{self.app.url}"

[manager]
endpoint = "tcp:{manager}:interface=127.0.0.1"
"""
        )
        self.base = f"http://127.0.0.1:{front}"
        self.manager = f"http://127.0.0.1:{manager}"
        await self.waitServing(2)

    async def heldOf(self, count):
        """
        Send C{count} requests to C{/hold} at once; when each is either held
        at the member or answered or refused, how many are held.
        """
        from twisted.internet import defer

        ended = []

        async def one():
            try:
                await self.get("/hold")
            except Exception:
                pass
            ended.append(1)

        requests = [defer.ensureDeferred(one()) for _ in range(count)]
        await self.waitFor(lambda: len(self.app.hold.held) + len(ended) == count)
        held = len(self.app.hold.held)
        self.app.hold.release()
        await defer.gatherResults(requests)
        return held

    async def test_maxConnections(self):
        """
        C{max_connections = 2} with two workers: at most 2 connections are
        served at once.
        """
        await self.start("max_connections = 2", "")
        held = await self.heldOf(10)
        self.assertGreaterEqual(held, 1)
        self.assertLessEqual(held, 2)

    async def test_maxConnectionsPerMember(self):
        """
        C{max_connections_per_member = 2, queue = 0} with two workers: at
        most 2 requests reach the member at once.
        """
        await self.start("", "max_connections_per_member = 2\nqueue = 0")
        held = await self.heldOf(10)
        self.assertGreaterEqual(held, 1)
        self.assertLessEqual(held, 2)

    async def test_keepalivePerWorker(self):
        """
        C{keepalive} is not divided: each worker keeps its own pool, so with
        C{keepalive = 1} and requests one after another, the member sees
        one connection from each worker (as the README says: up to
        C{workers} x C{keepalive}).
        """
        # (No health checks are configured, so every member connection is
        # a worker's; waitServing's request made the first.  A worker puts
        # its connection back in its pool in the same turn of its loop as
        # it passes the small response on, so the next request, which the
        # client sends only once answered, finds it there.)
        await self.start("", "keepalive = 1")
        before = self.app.connections
        # New client connections, which the kernel spreads over the two
        # workers (40 all on one worker: a chance of 2 in 2**40).
        for _ in range(40):
            self.assertEqual((await self.get("/")).code, 200)
        self.assertEqual(self.app.connections, 2, before)


class PackageTests(SynchronousTestCase):
    def test_namesStayImportable(self):
        """
        What was importable from C{playbalancer.workers} as one module
        still is, from the package.
        """
        import playbalancer.workers as workers
        from playbalancer.workers.agent import WorkerAgent
        from playbalancer.workers.supervisor import WorkerSupervisor

        for name in ["DEFAULT_BACKLOG", "PUSH_INTERVAL", "REPORT_INTERVAL", "RESTART_DELAY", "Reopen",
                     "WorkerAgent", "WorkerSupervisor", "endpointAddress", "listeningSocket",
                     "memberCounts", "share"]:
            self.assertTrue(hasattr(workers, name), name)
        self.assertIs(workers.WorkerAgent, WorkerAgent)
        self.assertIs(workers.WorkerSupervisor, WorkerSupervisor)


class ShareTests(SynchronousTestCase):
    def test_shares(self):
        """
        A budget is divided among the workers; the first ones get what
        does not divide evenly; a limit stays a limit (at least 1 each).
        """
        self.assertEqual([share(10, i, 3) for i in range(3)], [4, 3, 3])
        self.assertEqual([share(2, i, 2) for i in range(2)], [1, 1])
        self.assertEqual([share(1, i, 2) for i in range(2)], [1, 1])
        self.assertEqual([share(0, i, 2) for i in range(2)], [0, 0])
        self.assertEqual([share(1, i, 2, least=0) for i in range(2)], [1, 0])


class SlowStartTests(TwistdTestCase):
    """
    With C{workers = 2}, a member that comes back up ramps up its share over
    C{slowstart} in every worker, as with one process (each worker once
    took its whole share at once).
    """

    async def test_returningMemberRampsUp(self):
        await self.startTwoMembers(
            balancer="[balancer.web.health]\ninterval = 0.2\nrise = 1\nfall = 1\nslowstart = 60\n"
        )
        app1 = self.members[0]

        async def members():
            return (await self.status())["balancers"]["web"]["members"]

        await app1.stop()
        deadline = time.monotonic() + 20
        while (await members())["app1"]["healthy"] and time.monotonic() < deadline:
            await task.deferLater(reactor, 0.1, lambda: None)
        app1.start()
        while not (await members())["app1"]["healthy"] and time.monotonic() < deadline + 20:
            await task.deferLater(reactor, 0.1, lambda: None)
        await task.deferLater(reactor, 0.5, lambda: None)  # the workers hear of it
        served = {"app1": 0, "app2": 0}
        for _ in range(100):
            response = await self.get("/")
            served[response.headers.getRawHeaders(b"x-served-by", [b"-"])[0].decode()] += 1
        # A few seconds into a 60 s ramp app1 has well under a tenth of its
        # weight; without the ramp it would take half.
        self.assertLess(served["app1"], 25, served)
        self.assertGreater(served["app2"], 75, served)
