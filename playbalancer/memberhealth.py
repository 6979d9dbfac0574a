"""
The health of a balancer's members, from the evidence: how each attempt
on a member ended (passive health, and the member's counters) and what
its active health checks say.  A member that fails rests for the
balancer's C{retry} seconds, or with active checks until they pass.

Each L{playbalancer.balancer.Balancer} owns one L{MemberHealth} and hands
it every attempt's L{playbalancer.outcome.Outcome}.  The settings are the
balancer's (C{retry}, C{activeChecks}, C{slowStart}, C{failOnStatus}),
read each time they matter, so a change to them counts at once.
"""

from __future__ import annotations

import math

from twisted.logger import Logger

from playbalancer import outcome as _outcome

#: Malformed responses in a row (no good one between) that mark a member
#: down; fewer are answered with 502 and counted only.
BAD_RESPONSES_DOWN = 3

#: Members going down and coming up are the balancer's news: logged in its
#: namespace.
_log = Logger(namespace="playbalancer.balancer")


class MemberHealth:
    """
    Takes a balancer's members out of rotation when they fail and brings
    them back, keeping their failure counters.

    @param balancer: the L{playbalancer.balancer.Balancer} whose members
        and settings these are.
    @param clock: an L{twisted.internet.interfaces.IReactorTime}; the
        down state is kept in its seconds.
    """

    def __init__(self, balancer, clock):
        self._balancer = balancer
        self._clock = clock

    def responded(self, member, status=None):
        """
        C{member} answered: a response head with C{status} came, or (TCP
        mode, C{status} L{None}) it accepted a connection.  Its passive
        health is judged now, not when the attempt ends, so that a long
        response or connection brings a member back at once, and a status
        in C{fail_on_status} counts even if the client leaves before the
        response ends.
        """
        if status in self._balancer.failOnStatus:
            self.memberFailed(member, f"answered {status}")
        elif member.downSince is None:
            member.badResponses = 0  # (the usual case, kept cheap)
        else:
            self.memberSucceeded(member)

    def record(self, member, outcome):
        """
        Count how an attempt on C{member} ended, and let a failure tell the
        member's passive health (an answer told it already: L{responded}).
        (Ending the attempt itself is the balancer's job.)

        @param outcome: an L{playbalancer.outcome.Outcome}.
        """
        kind = outcome.kind
        stats = member.stats
        status = outcome.status
        if status:
            stats.answered(status)
        if outcome.firstByte is not None:
            stats.firstByte.observe(outcome.firstByte)
        if outcome.total is not None:
            stats.total.observe(outcome.total)
        if outcome.retried:
            stats.retries += 1
        if kind != _outcome.ANSWERED and kind != _outcome.REFUSED and kind != _outcome.CANCELLED:
            stats.failures[kind] += 1
            if kind == _outcome.CONNECT:
                self.memberFailed(member, outcome.reason)
            elif kind == _outcome.BAD_RESPONSE:
                self.badResponse(member, f"bad response: {outcome.reason}")
            elif kind == _outcome.RESET:
                if status:
                    self.countFailure(member)  # broke off a response under way
                elif outcome.answeredPart or not outcome.reused:
                    self.memberFailed(member, outcome.reason)
            elif kind == _outcome.TIMEOUT:
                self.countFailure(member)

    def checkResult(self, member, ok, detail, duration, rise, fall):
        """
        An active health check of C{member} passed or failed: C{fall}
        failures in a row take it out, C{rise} passes in a row bring it back.
        """
        now = self._clock.seconds()
        member.lastCheck = (ok, detail, now, duration)
        if ok:
            member.checkPasses += 1
            member.checkFailures = 0
            if member.downSince is not None and member.checkPasses >= rise:
                self._markUp(
                    member, now, f"{rise} checks passed", ": {rise} health checks passed", rise=rise
                )
        else:
            member.checkFailures += 1
            member.checkPasses = 0
            if member.downSince is None:
                if member.checkFailures >= fall:
                    self.markDown(member, f"health check: {detail}", now)
            else:
                # Down already (not checked yet, or failed live traffic):
                # the latest check says why it stays down.
                self._stillDown(member, f"health check: {detail}")

    def countFailure(self, member):
        """
        A request on C{member} failed in a way that says nothing about its
        health (a timeout, a response broken off): count it only.
        """
        member.failures += 1

    def badResponse(self, member, reason):
        """
        C{member} sent a response we could not pass on.  One odd response
        from a member that serves everything else does not take it out of
        rotation; L{BAD_RESPONSES_DOWN} in a row do (as if it had failed).
        """
        member.badResponses += 1
        if member.badResponses >= BAD_RESPONSES_DOWN:
            self.memberFailed(member, reason)
        else:
            self.countFailure(member)

    def memberFailed(self, member, reason):
        """
        C{member} could not be reached or broke off: count it, and it rests
        (see L{markDown}).
        """
        now = self._clock.seconds()
        member.failures += 1
        self.markDown(member, reason, now)

    def markDown(self, member, reason, now):
        """
        Take C{member} out of rotation at C{now} (clock seconds) for
        C{reason}: for the balancer's C{retry} seconds, or with active
        checks until they pass.  Only the first time down is logged.
        """
        balancer = self._balancer
        if member.downSince is not None:
            self._stillDown(member, reason)
        member.downReason = reason
        member.downUntil = math.inf if balancer.activeChecks else now + balancer.retry
        member.checkPasses = 0
        if member.downSince is None:
            member.downSince = now
            member.stats.note(now, f"down: {reason}")
            _log.warn(
                "member {balancer}/{member} down: {reason}; back {when}",
                balancer=balancer.name,
                member=member.name,
                playbalancer_event="member.down",
                reason=reason,
                when="when its health checks pass"
                if balancer.activeChecks
                else f"in {balancer.retry:g}s",
            )

    def _stillDown(self, member, reason):
        """
        C{member}, down already, stays down for C{reason}: logged when the
        cause changed (not for each failure, nor for a check that finds
        what live traffic found).
        """
        old, member.downReason = member.downReason, reason
        if _cause(old) != _cause(reason):
            member.stats.note(self._clock.seconds(), f"still down: {reason}")
            _log.warn(
                "member {balancer}/{member} still down: {reason}",
                balancer=self._balancer.name,
                member=member.name,
                playbalancer_event="member.down.reason",
                reason=reason,
            )

    def memberSucceeded(self, member):
        """
        C{member} answered: it is healthy again (unless active checks decide
        that).
        """
        member.badResponses = 0
        if member.downSince is not None and not self._balancer.activeChecks:
            self._markUp(member, self._clock.seconds(), "answered")

    def _markUp(self, member, now, why, logged="", **fields):
        """
        Bring C{member} back into rotation at C{now} (ramping up if the
        balancer has a slow start), noted with C{why} and logged.
        """
        member.downSince = member.downUntil = member.downReason = None
        member.slowStart(self._clock, self._balancer.slowStart)
        _log.info(
            "member {balancer}/{member} up" + logged,
            balancer=self._balancer.name,
            member=member.name,
            playbalancer_event="member.up",
            **fields,
        )
        member.stats.note(now, f"up: {why}")


def _cause(reason):
    """
    What a down reason says went wrong, whoever found it.
    """
    if reason is not None and reason.startswith("health check: "):
        return reason[len("health check: ") :]
    return reason
