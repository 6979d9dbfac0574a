"""
The C{peak-ewma} scheduler (L{playbalancer.schedulers.ewma}): its averages
and choices on a L{Clock} with stand-in members, its options, what the
balancer tells it (L{playbalancer.responsetimes}), and over real sockets,
a member much slower than the others losing its share.
"""

from __future__ import annotations

import math
from collections import Counter

from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.plugin import IPlugin
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import resource, server

from playbalancer import outcome
from playbalancer.assembly import buildBalancers
from playbalancer.balancer import Balancer, Member
from playbalancer.config import ConfigError, loadConfig
from playbalancer.interfaces import (
    IResponseTimeObserver,
    IScheduler,
    ISchedulerFactory,
)
from playbalancer.outcome import Outcome
from playbalancer.responsetimes import report
from playbalancer.schedulers import RoundRobinScheduler, availableSchedulers
from playbalancer.schedulers.ewma import (
    DEFAULT_DECAY,
    DEFAULT_FAILURE_PENALTY,
    PeakEwmaScheduler,
    peakEwma,
)
from playbalancer.testing import candidateMember
from playbalancer.testing.waiting import closeAll
from tests.test_reload import ConfigServiceCase, configText


class SchedulerCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)

    def scheduler(self, **kwargs):
        return PeakEwmaScheduler(clock=self.clock, **kwargs)

    def average(self, scheduler, member, floor=0.0):
        return scheduler.average(member, self.clock.seconds(), floor)


class AverageTests(SchedulerCase):
    """
    The peak-sensitive moving average of one member.
    """

    def test_firstSample(self):
        s = self.scheduler()
        a = candidateMember("a")
        s.responseTime(a, 0.02)
        self.assertEqual(self.average(s, a), 0.02)

    def test_peakAtOnce(self):
        """
        A sample above the average replaces it, however recent the last.
        """
        s = self.scheduler()
        a = candidateMember("a")
        for _ in range(100):
            s.responseTime(a, 0.01)
            self.clock.advance(0.1)
        s.responseTime(a, 0.5)
        self.assertEqual(self.average(s, a), 0.5)

    def test_decayTowardLowerSample(self):
        """
        A lower sample pulls the average down with the weight
        C{exp(-elapsed / decay)} for the old average.
        """
        s = self.scheduler(decay=10.0)
        a = candidateMember("a")
        s.responseTime(a, 0.5)
        self.clock.advance(10.0)
        s.responseTime(a, 0.01)
        self.assertAlmostEqual(self.average(s, a), 0.01 + 0.49 * math.exp(-1))

    def test_decayByTimeNotCount(self):
        """
        A member that became fast is followed over C{decay} seconds, however
        many requests it gets: a hundred samples over 10 s move the average
        as one sample after 10 s does, and samples at one instant not at
        all.
        """
        one, many = self.scheduler(decay=10.0), self.scheduler(decay=10.0)
        a = candidateMember("a")
        one.responseTime(a, 0.5)
        many.responseTime(a, 0.5)
        for _ in range(5):
            many.responseTime(a, 0.01)
        self.assertEqual(self.average(many, a), 0.5)
        for _ in range(100):
            self.clock.advance(0.1)
            many.responseTime(a, 0.01)
        one.responseTime(a, 0.01)
        self.assertAlmostEqual(self.average(many, a), self.average(one, a))
        self.assertAlmostEqual(self.average(one, a), 0.01 + 0.49 * math.exp(-1))

    def test_decayConstant(self):
        """
        A shorter C{decay} follows faster.
        """
        slow, quick = self.scheduler(decay=10.0), self.scheduler(decay=1.0)
        a = candidateMember("a")
        for s in (slow, quick):
            s.responseTime(a, 0.5)
        self.clock.advance(2.0)
        for s in (slow, quick):
            s.responseTime(a, 0.01)
        self.assertLess(self.average(quick, a), 0.01 + 0.49 * math.exp(-2) + 1e-9)
        self.assertGreater(self.average(slow, a), 0.4)

    def test_noNewsDecaysTowardFloor(self):
        """
        Without samples the average decays, with the same time constant,
        toward the floor it is given, never below it; one below the floor
        stays as it is.
        """
        s = self.scheduler(decay=10.0)
        a, b = candidateMember("a"), candidateMember("b")
        s.responseTime(a, 0.2)
        s.responseTime(b, 0.001)
        self.clock.advance(10.0)
        self.assertAlmostEqual(self.average(s, a, 0.005), 0.005 + 0.195 * math.exp(-1))
        self.clock.advance(1000.0)
        self.assertAlmostEqual(self.average(s, a, 0.005), 0.005)
        self.assertEqual(self.average(s, b, 0.005), 0.001)

    def test_failurePenalty(self):
        """
        A failure counts as a sample of C{failurePenalty} seconds: a member
        that fails fast does not look fast.
        """
        s = self.scheduler(failurePenalty=2.0)
        a = candidateMember("a")
        s.responseTime(a, 0.001)
        s.failed(a)
        self.assertEqual(self.average(s, a), 2.0)

    def test_failureBelowAverage(self):
        """
        A failure on a member slower than the penalty pulls its average
        toward the penalty, as any lower sample.
        """
        s = self.scheduler(failurePenalty=1.0, decay=10.0)
        a = candidateMember("a")
        s.responseTime(a, 5.0)
        self.clock.advance(10.0)
        s.failed(a)
        self.assertAlmostEqual(self.average(s, a), 1.0 + 4.0 * math.exp(-1))

    def test_zeroResponseTime(self):
        """
        A response in no measurable time still counts as a little, so that
        requests in flight weigh.
        """
        s = self.scheduler()
        a, b = candidateMember("a", active=3), candidateMember("b", active=0)
        s.responseTime(a, 0.0)
        s.responseTime(b, 0.0)
        self.assertGreater(self.average(s, a), 0)
        self.assertIs(s.pick([a, b], None), b)


class PickTests(SchedulerCase):
    """
    Which member C{pick} chooses.
    """

    def test_provides(self):
        s = self.scheduler()
        self.assertTrue(verifyObject(IScheduler, s))
        self.assertTrue(verifyObject(IResponseTimeObserver, s))

    def test_oneCandidate(self):
        s = self.scheduler()
        a = candidateMember("a", active=50)
        self.assertIs(s.pick([a], None), a)
        s.failed(a)
        self.assertIs(s.pick([a], None), a)

    def test_fastestWins(self):
        s = self.scheduler()
        a, b, c = candidateMember("a"), candidateMember("b"), candidateMember("c")
        s.responseTime(a, 0.03)
        s.responseTime(b, 0.01)
        s.responseTime(c, 0.02)
        self.assertEqual({s.pick([a, b, c], None).name for _ in range(20)}, {"b"})

    def test_inFlightCounts(self):
        """
        The cost is the average times the requests in flight plus one.
        """
        s = self.scheduler()
        a, b = candidateMember("a"), candidateMember("b")
        s.responseTime(a, 0.01)
        s.responseTime(b, 0.03)
        a.active = 1  # 0.02 against 0.03
        self.assertIs(s.pick([a, b], None), a)
        a.active = 3  # 0.04 against 0.03
        self.assertIs(s.pick([a, b], None), b)
        b.active = 1  # 0.04 against 0.06
        self.assertIs(s.pick([a, b], None), a)

    def test_weights(self):
        """
        The cost is divided by the weight (also a ramping, fractional one).
        """
        s = self.scheduler()
        a, b = candidateMember("a", weight=4), candidateMember("b", weight=1)
        s.responseTime(a, 0.5)
        s.responseTime(b, 0.25)
        self.assertIs(s.pick([a, b], None), a)  # 0.125 against 0.25
        a.weight = 1.5  # 0.33
        self.assertIs(s.pick([a, b], None), b)
        a.weight, a.active = 4, 1  # 0.25: a tie, taken in turn
        self.assertEqual({s.pick([a, b], None).name for _ in range(4)}, {"a", "b"})

    def test_zeroWeight(self):
        """
        A member with no weight (which a balancer never offers) is chosen
        only if no other can be.
        """
        s = self.scheduler()
        a, b = candidateMember("a", weight=0), candidateMember("b", active=100)
        s.responseTime(b, 5.0)
        self.assertIs(s.pick([a, b], None), b)

    def test_noSamplesLeastConn(self):
        """
        With no sample at all it is least-conn: fewest in flight relative to
        weight, ties in turn.
        """
        s = self.scheduler()
        a, b, c = candidateMember("a", active=2), candidateMember("b", active=1), candidateMember("c", active=1)
        self.assertEqual(Counter(s.pick([a, b, c], None).name for _ in range(10)),
                         {"b": 5, "c": 5})
        a.weight = 4  # 3/4 against 2/1
        self.assertIs(s.pick([a, b, c], None), a)

    def test_unheardMemberProbed(self):
        """
        A member not heard of yet counts at half the best average: it gets
        the next request, and more only as its requests in flight weigh.
        """
        s = self.scheduler()
        a, new = candidateMember("a"), candidateMember("new")
        s.responseTime(a, 0.01)
        self.assertIs(s.pick([a, new], None), new)
        new.active = 1  # 0.01 against 0.01: in turn
        self.assertEqual({s.pick([a, new], None).name for _ in range(4)}, {"a", "new"})
        new.active = 2  # 0.015 against 0.01
        self.assertIs(s.pick([a, new], None), a)
        a.active = 1  # 0.015 against 0.02
        self.assertIs(s.pick([a, new], None), new)

    def test_unheardAmongUnheard(self):
        """
        Among candidates not heard of (a retry after the only member heard
        of failed, say), it is least-conn again.
        """
        s = self.scheduler()
        a, b, c = candidateMember("a"), candidateMember("b", active=1), candidateMember("c")
        s.responseTime(a, 0.01)
        self.assertEqual({s.pick([b, c], None).name for _ in range(3)}, {"c"})

    def test_failedMemberAvoided(self):
        """
        A member that failed loses to one in use, until its penalty decays.
        """
        s = self.scheduler(failurePenalty=1.0, decay=10.0)
        a, b = candidateMember("a"), candidateMember("b")
        s.responseTime(a, 0.05)
        s.responseTime(b, 0.001)
        s.failed(b)
        a.active = 10  # 0.55 against 1.0
        self.assertIs(s.pick([a, b], None), a)

    def test_slowMemberSharesTraffic(self):
        """
        Under steady load (members answer one at a time, a pick every 10 ms)
        a member ten times slower gets far less than its third.
        """
        s = self.scheduler()
        members = [candidateMember("a"), candidateMember("b"), candidateMember("slow")]
        times = {"a": 0.01, "b": 0.01, "slow": 0.1}
        picked = Counter(self.simulate(s, members, times, 2000))
        self.assertLess(picked["slow"], 2000 * 0.05)
        self.assertGreater(picked["a"], 2000 * 0.4)
        self.assertGreater(picked["b"], 2000 * 0.4)

    def simulate(self, scheduler, members, times, count, every=0.01):
        """
        C{count} requests, one every C{every} seconds, each taking
        C{times[member.name]}; which member took each.
        """
        ending = []
        picked = []
        for _ in range(count):
            now = self.clock.seconds()
            while ending and ending[0][0] <= now:
                _, member, took = ending.pop(0)
                member.active -= 1
                scheduler.responseTime(member, took)
            member = scheduler.pick(members, None)
            member.active += 1
            took = times[member.name]
            ending.append((now + took, member, took))
            ending.sort(key=lambda e: e[0])
            picked.append(member.name)
            self.clock.advance(every)
        return picked

    def test_slowMemberRecovers(self):
        """
        A slow member is tried again after C{decay * ln(2 * its average /
        best - 1)} seconds; if it is still slow it drops out again at once,
        and once it is fast it regains its share.
        """
        s = self.scheduler(decay=10.0)
        a, b = candidateMember("a"), candidateMember("b")
        s.responseTime(a, 0.01)
        s.responseTime(b, 0.2)
        # Requests one at a time, a taking 10 ms: b's average decays toward
        # 5 ms, and it wins when below a's 10 ms: after 10 * ln(39) = 36.6 s.
        times = {"a": 0.01, "b": 0.2}
        picks = self.simulate(s, [a, b], times, 4000)
        first = picks.index("b") * 0.01
        self.assertTrue(36 < first < 38, first)
        # Still slow: one probe, then back to waiting.
        self.assertEqual(picks.count("b"), 1)
        # Fast again: the next probe shows it, and it shares the traffic.
        times["b"] = 0.01
        picks = self.simulate(s, [a, b], times, 6000)
        first = picks.index("b") * 0.01
        self.assertLess(first, 40)
        after = Counter(picks[picks.index("b"):])
        self.assertGreater(after["b"], 0.4 * sum(after.values()))

    def test_forgetsMembersThatLeft(self):
        s = self.scheduler()
        for i in range(100):
            gone = candidateMember(f"gone{i}")
            s.responseTime(gone, 0.01)
        a, b = candidateMember("a"), candidateMember("b")
        s.responseTime(a, 0.01)
        s.pick([a, b], None)
        self.assertEqual(list(s._averages), [a])

    def test_setClock(self):
        """
        The clock a balancer sets is the one its averages decay by.
        """
        s = PeakEwmaScheduler(decay=10.0)
        other = Clock()
        s.setClock(other)
        a = candidateMember("a")
        s.responseTime(a, 0.5)
        other.advance(10.0)
        s.responseTime(a, 0.01)
        self.assertAlmostEqual(s.average(a, other.seconds(), 0), 0.01 + 0.49 * math.exp(-1))


class FactoryTests(SynchronousTestCase):
    def test_plugin(self):
        self.assertTrue(verifyObject(IPlugin, peakEwma))
        self.assertTrue(verifyObject(ISchedulerFactory, peakEwma))
        self.assertEqual(peakEwma.name, "peak-ewma")
        self.assertTrue(peakEwma.description)
        self.assertIs(availableSchedulers().get("peak-ewma"), peakEwma)

    def test_defaults(self):
        s = peakEwma.makeScheduler({})
        self.assertIsInstance(s, PeakEwmaScheduler)
        self.assertEqual((s.decay, s.failurePenalty), (10.0, 1.0))
        self.assertEqual((DEFAULT_DECAY, DEFAULT_FAILURE_PENALTY), (10.0, 1.0))
        self.assertIsNot(peakEwma.makeScheduler({}), s)

    def test_options(self):
        s = peakEwma.makeScheduler({"decay": 2, "failure_penalty": 0.25})
        self.assertEqual((s.decay, s.failurePenalty), (2.0, 0.25))
        self.assertIsInstance(s.decay, float)

    def test_unknownOption(self):
        error = self.assertRaises(ValueError, peakEwma.makeScheduler, {"decay": 1, "tau": 1})
        self.assertEqual(
            str(error),
            "scheduler 'peak-ewma': unknown option(s) tau (known: decay, failure_penalty)",
        )

    def test_badValues(self):
        for option in ("decay", "failure_penalty"):
            for value in (0, -1, 0.0, float("inf"), float("nan"), True, "10s", None, [1]):
                error = self.assertRaises(
                    ValueError, peakEwma.makeScheduler, {option: value}
                )
                self.assertIn(f"option {option} must be a number of seconds", str(error))
                self.assertIn(repr(value), str(error))

    def test_configLoader(self):
        """
        A bad option in a config file names the table and the option; a
        good one makes the balancer's scheduler.
        """
        schedulers = availableSchedulers()
        path = self.mktemp()
        text = configText(
            [("a", "http://127.0.0.1:1")],
            extra='scheduler = "peak-ewma"\n[balancer.web.scheduler_options]\ndecay = {}\n',
        )
        with open(path, "w") as f:
            f.write(text.format(-1))
        config = loadConfig(path, schedulers)
        error = self.assertRaises(ConfigError, buildBalancers, config, schedulers, Clock())
        self.assertEqual(error.path, "balancer.web.scheduler_options")
        self.assertIn("option decay must be a number of seconds > 0, got -1", str(error))
        with open(path, "w") as f:
            f.write(text.format(2.5))
        balancer = buildBalancers(loadConfig(path, schedulers), schedulers, Clock())["web"]
        self.assertIsInstance(balancer.scheduler, PeakEwmaScheduler)
        self.assertEqual(balancer.scheduler.decay, 2.5)
        self.assertEqual(balancer.schedulerName, "peak-ewma")


@implementer(IResponseTimeObserver, IScheduler)
class Recording:
    """
    An L{IResponseTimeObserver} that records what it is told.
    """

    def __init__(self):
        self.told = []
        self.clock = None

    def setClock(self, clock):
        self.clock = clock

    def responseTime(self, member, seconds):
        self.told.append(("time", member, seconds))

    def failed(self, member):
        self.told.append(("failed", member))

    def pick(self, candidates, request):
        return candidates[0]


class ReportTests(SynchronousTestCase):
    """
    What an attempt's outcome tells a response time observer.
    """

    def told(self, result):
        observer = Recording()
        report(observer, "m", result)
        return observer.told

    def test_answered(self):
        self.assertEqual(
            self.told(Outcome(outcome.ANSWERED, 200, firstByte=0.02, total=3.0)),
            [("time", "m", 0.02)],
        )

    def test_answeredBeforeClientLeft(self):
        self.assertEqual(
            self.told(Outcome(outcome.CANCELLED, 200, firstByte=0.02)), [("time", "m", 0.02)]
        )

    def test_nothingToSay(self):
        for result in [
            Outcome(outcome.CANCELLED),
            Outcome(outcome.QUEUE_FULL, reason="full"),
            Outcome(outcome.RESET, reason="closed", reused=True),
            Outcome(outcome.ANSWERED, bytesIn=10, bytesOut=10),  # TCP mode
        ]:
            self.assertEqual(self.told(result), [], result)

    def test_failures(self):
        for result in [
            Outcome(outcome.CONNECT, reason="refused"),
            Outcome(outcome.TIMEOUT, reason="no answer in time"),
            Outcome(outcome.BAD_RESPONSE, reason="bad"),
            Outcome(outcome.REFUSED, 503, firstByte=0.001, retried=True),
            Outcome(outcome.RESET, reason="reset"),
            Outcome(outcome.RESET, 200, firstByte=0.01, reused=True, answeredPart=True),
            Outcome(outcome.RESET, reason="reset", reused=True, answeredPart=True),
        ]:
            self.assertEqual(self.told(result), [("failed", "m")], result)


class BalancerTests(SynchronousTestCase):
    """
    A balancer tells a scheduler that learns response times what it needs.
    """

    def test_clockAndReports(self):
        clock = Clock()
        scheduler = Recording()
        a = Member("a", "http://127.0.0.1:1")
        balancer = Balancer("web", scheduler, [a], clock)
        self.assertIs(scheduler.clock, clock)
        balancer.begin(a)
        balancer.attemptEnded(a, Outcome(outcome.ANSWERED, 200, firstByte=0.5, total=1.0))
        balancer.begin(a)
        balancer.attemptEnded(a, Outcome(outcome.CONNECT, reason="refused"))
        self.assertEqual(scheduler.told, [("time", a, 0.5), ("failed", a)])
        self.assertEqual(a.active, 0)

    def test_replaced(self):
        """
        A scheduler set later (as a reload does) gets the clock and the
        reports; the one it replaced gets no more.
        """
        clock = Clock()
        a = Member("a", "http://127.0.0.1:1")
        balancer = Balancer("web", RoundRobinScheduler(), [a], clock)
        balancer.begin(a)
        balancer.attemptEnded(a, Outcome(outcome.ANSWERED, 200, firstByte=0.5, total=1.0))
        first = Recording()
        balancer.scheduler = first
        self.assertIs(balancer.scheduler, first)
        self.assertIs(first.clock, clock)
        balancer.begin(a)
        balancer.attemptEnded(a, Outcome(outcome.ANSWERED, 200, firstByte=0.25, total=1.0))
        balancer.scheduler = RoundRobinScheduler()
        balancer.begin(a)
        balancer.attemptEnded(a, Outcome(outcome.ANSWERED, 200, firstByte=0.125, total=1.0))
        self.assertEqual(first.told, [("time", a, 0.25)])
        second = Recording()
        balancer.scheduler = second
        balancer.begin(a)
        balancer.attemptEnded(a, Outcome(outcome.TIMEOUT))
        self.assertEqual(second.told, [("failed", a)])

    def test_peakEwmaThroughBalancer(self):
        clock = Clock()
        a, b = Member("a", "http://127.0.0.1:1"), Member("b", "http://127.0.0.1:2")
        balancer = Balancer("web", peakEwma.makeScheduler({}), [a, b], clock)
        for member, took in ((a, 0.3), (b, 0.01)):
            balancer.begin(member)
            balancer.attemptEnded(member, Outcome(outcome.ANSWERED, 200, firstByte=took, total=took))
        self.assertEqual({balancer.pick(None).name for _ in range(5)}, {"b"})


class _Answer(resource.Resource):
    """
    Answers every request after C{delay} seconds, counting them.
    """

    isLeaf = True

    def __init__(self, delay):
        resource.Resource.__init__(self)
        self.delay = delay
        self.hits = 0

    def render(self, request):
        self.hits += 1
        if not self.delay:
            return b"ok\n"
        call = reactor.callLater(self.delay, self._finish, request)
        request.notifyFinish().addErrback(lambda _: call.active() and call.cancel())
        return server.NOT_DONE_YET

    def _finish(self, request):
        request.write(b"ok\n")
        request.finish()


class SlowMemberTests(ConfigServiceCase):
    """
    Over real sockets: one member of three holds every answer 200 ms.
    """

    def startDelayed(self, delay):
        page = _Answer(delay)
        site = server.Site(page)
        site.log = lambda request: None
        factory = WrappingFactory(site)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(lambda: closeAll(factory, reactor))
        self.addCleanup(port.stopListening)
        return page, f"http://127.0.0.1:{port.getHost().port}"

    async def load(self, client, workers, each):
        async def worker():
            for _ in range(each):
                response, body = await self.fetch(client, "/")
                self.assertEqual((response.code, body), (200, b"ok\n"))

        await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(workers)])

    async def share(self, pages, client, workers, each):
        before = [p.hits for p in pages]
        await self.load(client, workers, each)
        return [p.hits - b for p, b in zip(pages, before)]

    async def test_slowMemberLosesShare(self):
        """
        Round robin sends the slow member its third; after a reload to
        peak-ewma and a few requests one at a time (each member answers at
        least one), four clients at once send it clearly less (a handful of
        probes at most, against a third).
        """
        fast1, url1 = self.startDelayed(0)
        fast2, url2 = self.startDelayed(0)
        slow, url3 = self.startDelayed(0.2)
        pages = [fast1, fast2, slow]
        members = [("fast1", url1), ("fast2", url2), ("slow", url3)]
        await self.startWith(configText(members, extra='scheduler = "round-robin"'))
        client = self.client()
        hits = await self.share(pages, client, 4, 15)
        self.assertEqual(sum(hits), 60)
        self.assertGreaterEqual(hits[2], 15, hits)

        result = self.reload(configText(members, extra='scheduler = "peak-ewma"'))
        self.assertTrue(result.ok, result.error)
        balancer = self.service.balancers["web"]
        self.assertIsInstance(balancer.scheduler, PeakEwmaScheduler)
        warm = await self.share(pages, client, 1, 6)
        self.assertTrue(all(warm), warm)
        hits = await self.share(pages, client, 4, 15)
        self.assertEqual(sum(hits), 60)
        self.assertLessEqual(hits[2], 6, hits)
