"""
The scheduler simulator (L{playbalancer.testing.simulator}): runs are
reproducible, the real balancer's rules (weights, standby, resting members)
show in what schedulers are given, the remap measure counts what it
should, and a report's numbers agree with each other.
"""

from __future__ import annotations

import json
import random
from collections import Counter

from zope.interface import implementer

from twisted.trial.unittest import SynchronousTestCase

from playbalancer.interfaces import IResponseTimeObserver, IScheduler
from playbalancer.schedulers import leastConn, roundRobin, standby
from playbalancer.testing import (
    Keys,
    RequestStream,
    SimulatedMember,
    Simulation,
    addMember,
    down,
    drainMember,
    enableMember,
    exponential,
    fixed,
    lognormal,
    phase,
    refusing,
    removeMember,
    setWeight,
    simulate,
    uniform,
)
from playbalancer.testing.simreport import percentile


@implementer(IScheduler)
class ModuloScheduler:
    """
    Key C{n} (from C{X-User: key-<n>}) to candidate C{n % len(candidates)}:
    a placement easy to work out by hand; requests without a key to the
    first candidate.
    """

    def pick(self, candidates, request):
        value = request.header(b"X-User")
        if value is None:
            return candidates[0]
        return candidates[int(value.split(b"-")[1]) % len(candidates)]


@implementer(IScheduler)
@implementer(IResponseTimeObserver)
class ListeningScheduler:
    """
    Round robin that keeps what it is told as an L{IResponseTimeObserver}.
    """

    def __init__(self):
        self.times = []
        self.failures = []
        self.clock = None
        self._next = roundRobin.makeScheduler({})

    def pick(self, candidates, request):
        return self._next.pick(candidates, request)

    def setClock(self, clock):
        self.clock = clock

    def responseTime(self, member, seconds):
        self.times.append((member.name, seconds))

    def failed(self, member):
        self.failures.append(member.name)


def members(*names, **weights):
    return [SimulatedMember(name, weights.get(name, 1), latency=fixed(0.01)) for name in names]


class ReproducibleTests(SynchronousTestCase):
    def run_(self, seed):
        report = simulate(
            leastConn.makeScheduler({}),
            [SimulatedMember("a", latency=exponential(0.02)), SimulatedMember("b", latency=lognormal(0.02, 1))],
            RequestStream(count=2000, rate=300, keys=Keys(200, zipf=1.1)),
            [removeMember(3, "b"), addMember(4, SimulatedMember("c", latency=uniform(0.01, 0.05)))],
            seed=seed,
        )
        data = report.asDict()
        del data["pickMicroseconds"]  # wall-clock time
        return data

    def test_sameSeedSameRun(self):
        self.assertEqual(self.run_(7), self.run_(7))
        self.assertNotEqual(self.run_(7), self.run_(8))

    def test_runsOnce(self):
        simulation = Simulation(standby.makeScheduler({}), members("a"), RequestStream(count=1, rate=1))
        simulation.run()
        self.assertRaises(RuntimeError, simulation.run)


class SharesTests(SynchronousTestCase):
    def test_roundRobinFollowsWeights(self):
        """
        Round robin's picks follow the weights exactly, whatever the
        latencies; the report gives the shares of the weight beside them.
        """
        report = simulate(
            roundRobin.makeScheduler({}),
            [SimulatedMember("a", 3, latency=exponential(0.05)), SimulatedMember("b", 1, latency=0.2)],
            RequestStream(count=10000, rate=1000),
            seed=3,
        )
        self.assertEqual((report.member("a").served, report.member("b").served), (7500, 2500))
        self.assertEqual(report.member("a").share, 0.75)
        (start,) = report.phases
        self.assertEqual(start.weightShares, {"a": 0.75, "b": 0.25})
        self.assertEqual(start.shares, {"a": 0.75, "b": 0.25})

    def test_standby(self):
        """
        The standby member gets nothing while the primary is up, everything
        while it is down, and traffic returns to the primary once its rest
        (C{retry}) is over.
        """
        primary = SimulatedMember("primary", latency=0.01, faults=[down(10, 20)])
        backup = SimulatedMember("backup", standby=True, latency=0.01)
        for scheduler in (standby, roundRobin, leastConn):
            report = simulate(
                scheduler.makeScheduler({}),
                [primary, backup],
                RequestStream(count=3000, rate=100, arrivals="even"),
                [phase(10, "primary down"), phase(20, "primary back")],
                retry=1.0,
            )
            up, down_, back = [p.served for p in report.phases]
            self.assertEqual(dict(up), {"primary": 1000}, scheduler)
            self.assertEqual(dict(down_), {"backup": 1000}, scheduler)
            # Tried again each time its rest was over (10 s, 11 s, ...
            # 19 s), it failed until 20 s: it is back at once.
            self.assertEqual(dict(back), {"primary": 1000}, scheduler)
            self.assertEqual(report.statuses, {200: 3000})
            self.assertEqual(report.member("primary").failed, 10, scheduler)

    def test_everyoneDown(self):
        """
        With no member reachable, requests get the balancer's own 503.
        """
        report = simulate(
            roundRobin.makeScheduler({}),
            [SimulatedMember("a", faults=[down(0, 5)]), SimulatedMember("b", faults=[down(0, 5)])],
            RequestStream(count=100, rate=10, arrivals="even"),
            retry=100,
        )
        self.assertEqual(report.unanswered, {503: 50})
        self.assertEqual(report.statuses, {503: 50, 200: 50})


class RemapTests(SynchronousTestCase):
    def test_removal(self):
        """
        The keys counted as moved by a removal are those whose member
        changed, worked out by hand for a modulo scheduler; the ideal is
        the removed member's share.
        """
        report = simulate(
            ModuloScheduler(),
            members("a", "b", "c", "d"),
            RequestStream(count=10000, rate=1000, keys=Keys(100)),
            [removeMember(5, "d")],
        )
        (remap,) = report.remaps
        expected = sum(1 for n in range(100) if "abcd"[n % 4] != "abc"[n % 3])
        self.assertEqual((remap.keys, remap.moved), (100, expected))
        self.assertEqual(remap.share, expected / 100)
        self.assertEqual(
            remap.movedFrom,
            dict(Counter("abcd"[n % 4] for n in range(100) if "abcd"[n % 4] != "abc"[n % 3])),
        )
        self.assertEqual(sum(remap.movedTo.values()), expected)
        self.assertAlmostEqual(remap.ideal, 0.25)
        self.assertEqual((remap.before, remap.after), ("start", "remove d"))

    def test_ideal(self):
        """
        The ideal follows the weights: adding a member of weight 2 to two of
        weight 1 takes half of everything; a drain moves the drained
        member's share, and enabling it again moves it back.
        """
        report = simulate(
            ModuloScheduler(),
            members("a", "b"),
            RequestStream(count=4000, rate=1000, keys=Keys(50)),
            [addMember(1, SimulatedMember("c", 2)), drainMember(2, "a"), enableMember(3, "a")],
        )
        for remap, ideal in zip(report.remaps, [0.5, 0.25, 0.25]):
            self.assertAlmostEqual(remap.ideal, ideal)
        self.assertEqual([p.label for p in report.phases], ["start", "add c", "drain a", "enable a"])
        self.assertEqual(report.phases[2].weightShares, {"b": 1 / 3, "c": 2 / 3})
        self.assertNotIn("a", report.phases[2].served)

    def test_sameTimeEventsOnePhase(self):
        report = simulate(
            ModuloScheduler(),
            members("a", "b", "c"),
            RequestStream(count=2000, rate=1000),
            [removeMember(1, "a"), setWeight(1, "b", 3)],
        )
        self.assertEqual([p.label for p in report.phases], ["start", "remove a, weight b=3"])
        self.assertEqual(report.phases[1].weightShares, {"b": 0.75, "c": 0.25})


class InFlightTests(SynchronousTestCase):
    def test_leastConnWithSlowMember(self):
        """
        With one member ten times slower, least-conn keeps the requests in
        flight even (and sends the slow one fewer requests); round robin
        piles them up on it.
        """
        slowAndFast = [SimulatedMember("fast", latency=0.01), SimulatedMember("slow", latency=0.1)]
        stream = RequestStream(count=5000, concurrency=20)
        least = simulate(leastConn.makeScheduler({}), slowAndFast, stream)
        fast, slow = least.member("fast"), least.member("slow")
        self.assertLess(abs(fast.meanInFlight - slow.meanInFlight), 0.5)
        self.assertLessEqual(max(fast.maxInFlight, slow.maxInFlight), 11)
        self.assertGreater(fast.served, 8 * slow.served)
        robin = simulate(roundRobin.makeScheduler({}), slowAndFast, stream)
        self.assertGreater(robin.member("slow").meanInFlight, 15)
        self.assertGreaterEqual(robin.member("slow").maxInFlight, 18)
        # The clients see the difference.
        self.assertLess(least.latency["p90"], robin.latency["p90"])


class FaultAndFeedbackTests(SynchronousTestCase):
    def test_responseTimeObserver(self):
        """
        A scheduler that is an L{IResponseTimeObserver} gets the
        simulation's clock, each member's response times and its failures
        (a refused connection), as the balancer tells them in the proxy.
        """
        scheduler = ListeningScheduler()
        simulation = Simulation(
            scheduler,
            [SimulatedMember("a", latency=0.01), SimulatedMember("b", latency=0.25),
             SimulatedMember("c", faults=[down(0, 1000)])],
            RequestStream(count=100, concurrency=4),
            retry=1000,
        )
        report = simulation.run()
        self.assertIs(scheduler.clock, simulation.clock)
        self.assertEqual(Counter(scheduler.times), {("a", 0.01): 50, ("b", 0.25): 50})
        self.assertEqual(scheduler.failures, ["c"])
        self.assertEqual(report.statuses, {200: 100})

    def test_refusing(self):
        """
        A member answering 503: the client gets it, unless 503 is in
        C{failOnStatus}, when the request goes once more elsewhere and the
        member rests.
        """
        refuser = SimulatedMember("r", faults=[refusing(0, 100, 503, after=0.001)])
        stream = RequestStream(count=100, rate=100, arrivals="even")
        plain = simulate(roundRobin.makeScheduler({}), [refuser] + members("ok"), stream)
        self.assertEqual(plain.statuses, {200: 50, 503: 50})
        self.assertEqual(plain.unanswered, {})
        failing = simulate(
            roundRobin.makeScheduler({}), [refuser] + members("ok"), stream, failOnStatus=[503], retry=0.5
        )
        self.assertEqual(failing.statuses, {200: 100})
        self.assertEqual(failing.member("ok").served, 100)
        # Tried once, then every half second after its rest.
        self.assertEqual(failing.member("r").failed, 2)

    def test_notACandidate(self):
        @implementer(IScheduler)
        class Wrong:
            def pick(self, candidates, request):
                return SimulatedMember("nobody")

        self.assertRaises(
            AssertionError, simulate, Wrong(), members("a", "b"), RequestStream(count=1, rate=1)
        )


class ReportTests(SynchronousTestCase):
    def setUp(self):
        self.report = simulate(
            roundRobin.makeScheduler({}),
            [
                SimulatedMember("a", 2, latency=exponential(0.03), faults=[down(2, 3)]),
                SimulatedMember("b", latency=uniform(0.01, 0.02)),
                SimulatedMember("s", standby=True),
            ],
            RequestStream(count=3000, rate=500, keys=Keys(300, "cookie:session", zipf=1.0, missing=0.1)),
            [removeMember(4, "b"), addMember(4.5, SimulatedMember("d", 3)), setWeight(50, "a", 5)],
            seed=11,
            retry=0.5,
        )

    def test_consistent(self):
        r = self.report
        self.assertEqual(sum(r.statuses.values()), r.requests)
        self.assertEqual(r.answered, r.requests - sum(r.unanswered.values()))
        self.assertEqual(sum(m.served for m in r.members), r.answered)
        self.assertEqual(sum(sum(p.served.values()) for p in r.phases), r.answered)
        self.assertEqual(sum(m.picks for m in r.members), r.pickMicroseconds["picks"])
        for m in r.members:
            self.assertEqual(m.picks, m.served + m.failed, m)
        self.assertAlmostEqual(sum(m.share for m in r.members), 1.0)
        for p in r.phases:
            if p.served:
                self.assertAlmostEqual(sum(p.shares.values()), 1.0)
                self.assertAlmostEqual(sum(p.weightShares.values()), 1.0)
        latency = r.latency
        self.assertTrue(0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"])
        self.assertLessEqual(r.latency["max"], r.duration)
        self.assertGreater(r.pickMicroseconds["median"], 0)
        self.assertEqual([m.name for m in r.members], ["a", "b", "s", "d"])
        self.assertEqual(r.member("s").served, 0)
        self.assertGreater(r.member("a").failed, 0)
        self.assertEqual(len(r.remaps), len(r.phases) - 1)
        for remap in r.remaps:
            self.assertLessEqual(remap.moved, remap.keys)

    def test_eventAfterTheEnd(self):
        self.assertEqual([p.label for p in self.report.phases], ["start", "remove b", "add d"])
        (note,) = self.report.notes
        self.assertIn("weight a=5", note)

    def test_plainData(self):
        data = json.loads(json.dumps(self.report.asDict()))
        self.assertEqual(data["requests"], 3000)
        self.assertEqual([m["name"] for m in data["members"]], ["a", "b", "s", "d"])

    def test_summary(self):
        text = self.report.summary()
        for expected in [
            "3000 requests, 500/s (poisson), 300 keys in cookie:session, zipf(1)",
            "seed 11",
            "client latency: p50",
            "time per pick: median",
            "remove b -> add d",
            "note: 'weight a=5'",
        ]:
            self.assertIn(expected, text)
        for m in self.report.members:
            self.assertIn(f"\n{m.name} ", text)


class KeysTests(SynchronousTestCase):
    def test_zipf(self):
        keys = Keys(100, zipf=1.0)
        rng = random.Random(1)
        counts = Counter(keys.draw(rng) for _ in range(20000))
        self.assertEqual(counts.most_common(1)[0][0], 0)
        # Key 0 about twice as often as key 1 (1/1 against 1/2).
        self.assertTrue(1.8 < counts[0] / counts[1] < 2.2, counts)

    def test_places(self):
        self.assertEqual(Keys(where="header:X-User").view(3).header(b"x-user"), b"key-3")
        self.assertEqual(Keys(where="cookie:sid").view(3).cookie(b"sid"), b"key-3")
        self.assertEqual(Keys(where="path").view(3).path, b"/key/3")
        self.assertEqual(Keys(where="client").view(70000).clientAddress, "10.1.17.112")
        tcp = Keys(where="tcp")
        self.assertEqual((tcp.view(3).clientAddress, tcp.view(3).path), ("10.0.0.3", None))
        self.assertIsNone(tcp.view(None).clientAddress)
        self.assertIsNone(Keys().view(None).header(b"X-User"))
        for bad in ["header", "query", "cookie:", "path:x"]:
            self.assertRaises(ValueError, Keys, where=bad)

    def test_percentile(self):
        self.assertEqual(percentile([1, 2, 3, 4], 50), 2)
        self.assertEqual(percentile([1, 2, 3, 4], 99), 4)
        self.assertIsNone(percentile([], 50))
