"""
Active health checks: an HTTP GET to each member every C{interval}
seconds; C{fall} failures in a row take it out, C{rise} passes in a row
bring it back.  The balancer keeps the state; this module only asks.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from playbalancer.failures import describe

_log = Logger()


def quietPool(reactor):
    """
    A pool of new connections for the checks that does not log "Starting
    factory" and "Stopping factory" for each of them (twice a check, every
    C{interval}, for every member).  It sets the pool's private
    C{_factory}, pinned by a test.
    """
    from twisted.web.client import HTTPConnectionPool, _HTTP11ClientFactory

    class QuietFactory(_HTTP11ClientFactory):
        noisy = False

    pool = HTTPConnectionPool(reactor, persistent=False)
    pool._factory = QuietFactory
    return pool


def parseExpect(text):
    """
    C{"200-399"} or C{"200,204,300-399"} as a list of C{(low, high)}.

    @raise ValueError: naming what is wrong.
    """
    ranges = []
    for part in text.split(","):
        low, sep, high = part.strip().partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            raise ValueError(f"expected statuses like '200-399' or '200,204', got {text!r}")
        low = int(low)
        high = int(high) if sep else low
        if not 100 <= low <= high <= 599:
            raise ValueError(f"expected statuses from 100 to 599, got {text!r}")
        ranges.append((low, high))
    return ranges


class HealthChecker(Service):
    """
    Checks every member of one balancer.

    @param balancer: the L{playbalancer.balancer.Balancer}; members added at
        run time are checked from the next round.
    @param settings: a L{playbalancer.config.HealthConfig}.
    @param http: a treq-like client (C{get(url, headers=...)}).
    @param connect: for TCP mode, instead of C{http}: C{member -> Deferred}
        that fires with something with a C{code} and C{content()} (see
        L{connectCheck}).
    @param clock: provides C{callLater} and C{seconds}.
    """

    def __init__(self, balancer, settings, http, clock, connect=None):
        self.balancer = balancer
        self.connect = connect
        self.settings = settings
        self.expect = parseExpect(settings.expect)
        self.http = http
        self.clock = clock
        self._loop = None
        self._pending = {}

    def startService(self):
        Service.startService(self)
        self._loop = LoopingCall(self.checkAll)
        self._loop.clock = self.clock
        self._loop.start(self.settings.interval, now=True)

    def stopService(self):
        Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for d in list(self._pending.values()):
            if d is not None:
                d.cancel()

    def checkAll(self):
        """
        Start one check of every member that has none under way.
        """
        for member in list(self.balancer.members):
            if member.removing or member in self._pending:
                continue
            self._pending[member] = None
            d = self.check(member)
            if member in self._pending:  # still under way
                self._pending[member] = d

    def check(self, member):
        """
        One check of C{member}; the result goes to the balancer.
        """
        started = self.clock.seconds()
        if self.connect is not None:
            d = self.connect(member)
        else:
            url = member.origin + member.basePath + self.settings.path.encode("ascii")
            d = self.http.get(url, headers={b"Host": [member.hostHeader]})
        expired = []

        def expire():
            expired.append(True)
            d.cancel()

        timer = self.clock.callLater(self.settings.timeout, expire)

        def answered(response):
            code = response.code
            d = response.content()  # read it all, so the connection closes cleanly
            d.addCallback(lambda _: code)
            return d

        def passed(code):
            if timer.active():
                timer.cancel()
            ok = any(low <= code <= high for low, high in self.expect)
            detail = "connected" if self.connect is not None else f"HTTP {code}"
            self._report(member, ok, detail, started)

        def failed(failure):
            if timer.active():
                timer.cancel()
            if not self.running:
                return
            detail = "timeout" if expired else describe(failure)
            self._report(member, False, detail, started)

        d.addCallback(answered)
        d.addCallbacks(passed, failed)
        d.addErrback(lambda f: _log.failure("health check of {m} failed", f, m=member.name))
        d.addBoth(lambda _: self._pending.pop(member, None))
        return d

    def _report(self, member, ok, detail, started):
        duration = self.clock.seconds() - started
        self.balancer.checkResult(
            member, ok, detail, duration, self.settings.rise, self.settings.fall
        )


class _Connected:
    code = 200
    detail = "connected"

    def content(self):
        from twisted.internet.defer import succeed

        return succeed(b"")


def connectCheck(endpointFor):
    """
    A TCP-mode check: connect to the member and close at once.  Reported
    like an HTTP check that got a 200.
    """
    from twisted.internet.protocol import Factory, Protocol

    factory = Factory.forProtocol(Protocol)
    factory.noisy = False

    def connect(member):
        d = endpointFor(member).connect(factory)

        def connected(protocol):
            protocol.transport.loseConnection()
            return _Connected()

        return d.addCallback(connected)

    return connect
