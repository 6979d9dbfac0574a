"""
The promises every scheduler keeps, as tests any scheduler plugin's test
case can inherit: L{SchedulerConformanceMixin}.
"""

from __future__ import annotations

import random

from zope.interface.verify import verifyObject

from twisted.internet.task import Clock
from twisted.plugin import IPlugin

from playbalancer.interfaces import IResponseTimeObserver, IScheduler, ISchedulerFactory
from playbalancer.testing.views import candidateMembers, requestView, tcpView

__all__ = ["SchedulerConformanceMixin", "awkwardViews"]


def awkwardViews():
    """
    Requests a scheduler must place without raising: TCP-mode views (only a
    client address, or none at all, as from a UNIX socket), HTTP requests
    without headers, cookies or client address, and HTTP requests with odd
    bytes where a hashing scheduler looks (non-UTF-8, empty, long, NUL,
    repeated headers, IPv6 clients).

    @rtype: L{list} of L{playbalancer.interfaces.IRequestView}
    """
    odd = b"\xff\xfe\x00\x80 \t;=\"\\%00\xc3("
    names = [b"X-User", b"X-Session", b"X-Api-Key", b"Authorization", b"X-Forwarded-For"]
    cookieNames = [b"session", b"sessionid", b"JSESSIONID", b"user", b"id"]
    return [
        tcpView(None),
        tcpView("198.51.100.7"),
        tcpView("2001:db8::7", secure=True),
        requestView(clientAddress=None, host=None),
        requestView(path=b"*", method=b"OPTIONS"),
        requestView(path=b"/" + odd, query=odd, host=odd, clientAddress="2001:db8::1", secure=True),
        requestView(headers=[(name, odd) for name in names], cookies=[(name, odd) for name in cookieNames]),
        requestView(headers=[(name, b"") for name in names], cookies=[(name, b"") for name in cookieNames]),
        requestView(headers=[(name, b"x" * 8000) for name in names], path=b"/" + b"a" * 8000),
        requestView(headers=[(b"X-User", b"one"), (b"x-user", b"two"), (b"Cookie", b"=;;session;==")]),
        requestView(headers=[(b"Cookie", odd)]),
    ]


def _views(rng, count):
    """
    C{count} ordinary requests with keys from a few hundred, in headers,
    cookies, paths and client addresses.
    """
    views = []
    for _ in range(count):
        n = rng.randrange(300)
        views.append(
            requestView(
                path=b"/items/%d" % (n,),
                clientAddress=f"203.0.113.{n % 250}",
                headers=[(b"X-User", b"user-%d" % (n,))],
                cookies=[(b"session", b"s%d" % (n,))],
            )
        )
    return views


class SchedulerConformanceMixin:
    """
    Tests of what every scheduler must do, for a
    L{twisted.trial.unittest.SynchronousTestCase} (or a
    C{unittest.TestCase}) that names the scheduler's factory::

        class HashConformanceTests(SchedulerConformanceMixin, SynchronousTestCase):
            schedulerFactory = hashScheduler
            schedulerOptions = {"key": "header:X-User"}
            badSchedulerOptions = [{}, {"key": "query"}]

    They check that the factory provides L{ISchedulerFactory} (and
    C{IPlugin}, to be found), with a name and a one-line description; that
    C{makeScheduler} makes a new L{IScheduler} provider each time and
    rejects wrong options with L{ValueError}; and that C{pick} returns one
    of the candidates (the very object), whether there is one or many, as
    members come and go, with fractional weights (slow start) and any load,
    on requests that lack headers, cookies, a path or a client address or
    carry odd bytes, without changing the candidates it is given.

    @cvar schedulerFactory: the L{ISchedulerFactory} provider under test.
    @cvar schedulerOptions: the options to make schedulers with.
    @cvar badSchedulerOptions: option C{dict}s that C{makeScheduler} must
        refuse with L{ValueError}.
    @cvar rejectsUnknownOptions: whether an option the scheduler does not
        know is refused (as it should be: a typo would pass unseen).
    @cvar seed: seeds the requests and loads the tests draw.
    """

    schedulerFactory = None
    schedulerOptions = {}
    badSchedulerOptions = ()
    rejectsUnknownOptions = True
    seed = 0

    def makeScheduler(self):
        """
        A new scheduler from C{schedulerFactory} with C{schedulerOptions}.
        """
        return self.schedulerFactory.makeScheduler(dict(self.schedulerOptions))

    def assertPicksACandidate(self, scheduler, candidates, request):
        """
        C{scheduler.pick(candidates, request)} returns one of C{candidates}
        (the same object, not an equal one) and leaves them as they were.

        @return: the member picked.
        """
        before = list(candidates)
        loads = [(member.active, member.weight) for member in candidates]
        chosen = scheduler.pick(candidates, request)
        self.assertTrue(
            any(chosen is member for member in candidates),
            f"picked {chosen!r}, not one of {candidates!r} (request {request!r})",
        )
        self.assertEqual(list(candidates), before, "pick changed the candidates")
        self.assertTrue(all(a is b for a, b in zip(candidates, before)), "pick changed the candidates")
        self.assertEqual([(member.active, member.weight) for member in candidates], loads)
        return chosen

    # The factory

    def test_factory(self):
        """
        The factory provides L{ISchedulerFactory} and C{IPlugin}, with a
        name (the value of C{scheduler =}) and a one-line description.
        """
        factory = self.schedulerFactory
        self.assertIsNotNone(factory, "set schedulerFactory on the test case")
        verifyObject(ISchedulerFactory, factory)
        self.assertTrue(IPlugin.providedBy(factory), "the factory must provide IPlugin to be found")
        self.assertIsInstance(factory.name, str)
        self.assertTrue(factory.name and factory.name == factory.name.strip(), repr(factory.name))
        self.assertIsInstance(factory.description, str)
        self.assertTrue(factory.description.strip())
        self.assertNotIn("\n", factory.description.strip())

    def test_makeScheduler(self):
        """
        C{makeScheduler} makes an L{IScheduler} provider, a new one each
        time (one per balancer), and leaves the options as they were.
        """
        options = dict(self.schedulerOptions)
        first = self.schedulerFactory.makeScheduler(options)
        self.assertEqual(options, dict(self.schedulerOptions), "makeScheduler changed its options")
        verifyObject(IScheduler, first)
        self.assertIsNot(self.makeScheduler(), first)

    def test_badOptions(self):
        """
        Each of C{badSchedulerOptions}, and (unless
        C{rejectsUnknownOptions} is false) an option nobody knows, raises
        L{ValueError}.
        """
        bad = [dict(options) for options in self.badSchedulerOptions]
        if self.rejectsUnknownOptions:
            bad.append(dict(self.schedulerOptions, **{"surely-no-such-option": True}))
        for options in bad:
            with self.assertRaises(ValueError, msg=repr(options)):
                self.schedulerFactory.makeScheduler(options)

    # Picks

    def test_oneCandidate(self):
        """
        With one candidate, it is the one picked, for any request.
        """
        scheduler = self.makeScheduler()
        (only,) = candidateMembers("only")
        for request in awkwardViews() + [requestView()]:
            self.assertIs(self.assertPicksACandidate(scheduler, [only], request), only)

    def test_picksACandidate(self):
        """
        Over many requests and candidate lists of several sizes and
        weights, every pick is one of the candidates.
        """
        rng = random.Random(self.seed)
        scheduler = self.makeScheduler()
        everyone = candidateMembers(*"abcdefgh", b=2, c=3, d=10)
        views = _views(rng, 100)
        for size in (2, 3, 5, 8):
            candidates = everyone[:size]
            for view in views:
                self.assertPicksACandidate(scheduler, candidates, view)

    def test_awkwardRequests(self):
        """
        Requests without headers, cookies, path or client address, and
        requests with odd bytes, are placed without raising.
        """
        scheduler = self.makeScheduler()
        candidates = candidateMembers("a", "b", "c", c=2)
        for request in awkwardViews():
            for _ in range(3):
                self.assertPicksACandidate(scheduler, candidates, request)

    def test_changingCandidates(self):
        """
        Members come and go between picks (added, removed, replaced by a
        new member of the same name, all but one out): every pick is one of
        the candidates of that moment.
        """
        rng = random.Random(self.seed)
        scheduler = self.makeScheduler()
        a, b, c, d, e = candidateMembers(*"abcde", e=3)
        (newB,) = candidateMembers("b")
        views = _views(rng, 30)
        for candidates in [[a, b, c], [a, c], [a, b, c, d], [d], [e, d, c, b, a], [a, newB, c], [newB], [c, e]]:
            for view in views:
                self.assertPicksACandidate(scheduler, candidates, view)

    def test_anyLoadAndWeight(self):
        """
        Fractional weights (a member in slow start), large weights and
        any number of requests in flight are fine.
        """
        rng = random.Random(self.seed)
        scheduler = self.makeScheduler()
        candidates = candidateMembers(*"abcd")
        weights = [0.05, 0.5, 1, 2.75, 100, 10000]
        for view in _views(rng, 200):
            for member in candidates:
                member.weight = rng.choice(weights)
                member.active = rng.choice([0, 0, 1, 3, 1000])
            self.assertPicksACandidate(scheduler, candidates, view)

    def test_anySequence(self):
        """
        The candidates may come as any sequence (a tuple too): the
        interface promises a sequence, not a list.
        """
        scheduler = self.makeScheduler()
        candidates = tuple(candidateMembers("a", "b", "c"))
        for view in _views(random.Random(self.seed), 20) + awkwardViews():
            self.assertPicksACandidate(scheduler, candidates, view)

    def test_responseTimeFeedback(self):
        """
        A scheduler that is also an
        L{playbalancer.interfaces.IResponseTimeObserver} takes a clock, then
        the times and failures of candidates and of members that left, and
        still picks candidates.  (Nothing to check for one that is not.)
        """
        scheduler = self.makeScheduler()
        if not IResponseTimeObserver.providedBy(scheduler):
            return
        clock = Clock()
        scheduler.setClock(clock)
        a, b, gone = candidateMembers("a", "b", "gone")
        for member, seconds in [(a, 0.01), (b, 2.5), (gone, 0.0), (a, 0.0), (b, 30.0)]:
            scheduler.responseTime(member, seconds)
            clock.advance(0.5)
        scheduler.failed(a)
        scheduler.failed(gone)
        for view in _views(random.Random(self.seed), 50):
            self.assertPicksACandidate(scheduler, [a, b], view)
