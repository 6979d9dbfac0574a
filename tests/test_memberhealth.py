"""
Tests for L{playbalancer.memberhealth}: what each kind of attempt outcome
does to a member's health and counters, on a fake clock.  Failing,
resting and coming back through the balancer are in L{tests.test_balancer},
active checks in L{tests.test_health}.
"""

from __future__ import annotations

import math

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from playbalancer import outcome
from playbalancer.balancer import Balancer, Member
from playbalancer.memberhealth import BAD_RESPONSES_DOWN, MemberHealth
from playbalancer.outcome import Outcome
from playbalancer.schedulers import RoundRobinScheduler


class MemberHealthTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(100)
        self.a = Member("a", "http://127.0.0.1:9001")
        self.balancer = Balancer("web", RoundRobinScheduler(), [self.a], self.clock, retry=30)
        self.health = self.balancer.memberHealth

    def record(self, kind, **fields):
        self.health.record(self.a, Outcome(kind, **fields))

    def test_owned(self):
        self.assertIsInstance(self.health, MemberHealth)

    def test_answeredCounted(self):
        """
        An answer counts its status class, its timings and a retry, and
        says nothing against the member.
        """
        self.record(outcome.ANSWERED, status=204, firstByte=0.002, total=0.01, retried=True)
        stats = self.a.stats
        self.assertEqual(stats.statusClasses["2xx"], 1)
        self.assertEqual((stats.firstByte.count, stats.total.count, stats.retries), (1, 1, 1))
        self.assertEqual((self.a.failures, self.a.healthy), (0, True))

    def test_failingStatus(self):
        """
        An answer with a status in C{failOnStatus} (read from the balancer
        when it comes) takes the member out when it comes; the attempt's
        end (answered or refused) does not count it again.
        """
        health = self.balancer.memberHealth
        health.responded(self.a, 503)
        self.assertIs(self.a.healthy, True)
        self.balancer.failOnStatus = frozenset([503])
        health.responded(self.a, 503)
        self.assertEqual((self.a.downReason, self.a.downUntil), ("answered 503", 130))
        self.record(outcome.REFUSED, status=503)
        self.record(outcome.ANSWERED, status=503)
        self.assertEqual((self.a.downReason, self.a.failures), ("answered 503", 1))

    def test_answerBringsBack(self):
        """
        Any other answer (a head, or a TCP connection: no status) brings a
        member back without active checks, and clears its run of bad
        responses; with active checks only they bring it back.
        """
        health = self.balancer.memberHealth
        for status in (200, None):
            self.balancer.memberFailed(self.a, "refused")
            self.a.badResponses = 2
            health.responded(self.a, status)
            self.assertEqual((self.a.healthy, self.a.badResponses), (True, 0))
        self.balancer.activeChecks = True
        self.balancer.memberFailed(self.a, "refused")
        health.responded(self.a, 200)
        self.assertIs(self.a.healthy, False)

    def test_failuresByKind(self):
        """
        Each kind of failure is counted by kind; only a failed connection
        or a connection lost before any answer on a new one take the member
        out.  A cancelled attempt counts nothing.
        """
        cases = [
            (Outcome(outcome.CANCELLED), False, 0),
            (Outcome(outcome.TIMEOUT), False, 1),
            (Outcome(outcome.RESET, status=200), False, 1),
            (Outcome(outcome.RESET, reused=True), False, 0),
            (Outcome(outcome.RESET, reused=True, answeredPart=True, reason="x"), True, 1),
            (Outcome(outcome.RESET, reason="closed"), True, 1),
            (Outcome(outcome.CONNECT, reason="refused"), True, 1),
            (Outcome(outcome.BAD_RESPONSE, reason="junk"), False, 1),
        ]
        for ended, down, failures in cases:
            member = Member("m", "http://127.0.0.1:9002")
            self.health.record(member, ended)
            self.assertEqual(
                (not member.healthy, member.failures), (down, failures), ended
            )
            if ended.kind != outcome.CANCELLED:
                self.assertEqual(member.stats.failures[ended.kind], 1, ended)
            else:
                self.assertEqual(sum(member.stats.failures.values()), 0)

    def test_badResponsesInARow(self):
        """
        L{BAD_RESPONSES_DOWN} bad responses in a row take the member out; a
        good answer between starts the count again.
        """
        for _ in range(BAD_RESPONSES_DOWN - 1):
            self.record(outcome.BAD_RESPONSE, reason="junk")
        self.balancer.memberHealth.responded(self.a, 200)
        for _ in range(BAD_RESPONSES_DOWN - 1):
            self.record(outcome.BAD_RESPONSE, reason="junk")
        self.assertIs(self.a.healthy, True)
        self.record(outcome.BAD_RESPONSE, reason="junk")
        self.assertEqual(self.a.downReason, "bad response: junk")
        self.assertEqual(self.a.failures, 2 * BAD_RESPONSES_DOWN - 1)

    def test_recordLeavesTheAttemptOpen(self):
        """
        Recording an outcome does not end the attempt; the balancer's
        C{attemptEnded} does both.
        """
        self.balancer.begin(self.a)
        self.record(outcome.ANSWERED, status=200, total=0.5)
        self.assertEqual(self.a.active, 1)
        self.balancer.attemptEnded(
            self.a, Outcome(outcome.ANSWERED, status=200, total=0.5, bytesIn=7, bytesOut=3)
        )
        self.assertEqual((self.a.active, self.a.bytesIn, self.a.bytesOut), (0, 7, 3))
        self.assertEqual(self.a.stats.total.count, 2)
        self.assertEqual(self.a.latency(self.clock.seconds()), (0.5, 0.5))

    def test_markDownWithActiveChecks(self):
        """
        With active checks a member marked down stays down until they pass,
        whatever C{retry} says, and its checks' pass count starts again.
        """
        self.balancer.activeChecks = True
        self.a.checkPasses = 1
        self.health.markDown(self.a, "not checked yet", 100)
        self.assertEqual(
            (self.a.downSince, self.a.downUntil, self.a.downReason, self.a.checkPasses),
            (100, math.inf, "not checked yet", 0),
        )
        self.record(outcome.ANSWERED, status=200)
        self.assertIs(self.a.healthy, False)

    def test_loggedAsTheBalancer(self):
        """
        Going down and coming up are logged in the balancer's namespace.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.health.memberFailed(self.a, "refused")
        self.health.memberSucceeded(self.a)
        mine = [e for e in events if e.get("member") == "a"]
        self.assertEqual(
            [(e["playbalancer_event"], e["log_namespace"]) for e in mine],
            [("member.down", "playbalancer.balancer"), ("member.up", "playbalancer.balancer")],
        )
