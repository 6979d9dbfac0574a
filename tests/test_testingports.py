"""
L{playbalancer.testing.freePorts}: ports handed to child processes are
outside the kernel's ephemeral range (so no outgoing connection or
port-0 listener takes one before the child binds it) and are never handed
out twice while reserved, not even to another process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import SkipTest, TestCase

from playbalancer.testing import freePort, freePorts
from playbalancer.testing import ports

#: Another process taking ports with the same lock file and range as the
#: test (argv: lock path, start, stop, count); every port counts as
#: bindable, so that the outcome depends on the reservations alone.
OTHER = """
import sys
from playbalancer.testing import ports
path, start, stop, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ports.lockPath = lambda: path
ports.candidateRange = lambda: (start, stop)
ports._bindable = lambda port: True
try:
    print(" ".join(map(str, ports.freePorts(count))))
except ports.NoFreePort:
    print("none")
"""


class FreePortsTests(TestCase):
    def setUp(self):
        self.lock = os.path.abspath(self.mktemp())
        self.patch(ports, "lockPath", lambda: self.lock)
        reservations = ports._Reservations()
        self.addCleanup(reservations.close)
        self.patch(ports, "_reservations", reservations)

    def small(self, size=100):
        """
        Hand out only C{size} ports from the real range, all treated as
        bindable; the range.
        """
        span = ports.candidateRange() or (40000, 50000)
        span = (span[0], span[0] + size)
        self.patch(ports, "candidateRange", lambda: span)
        self.patch(ports, "_bindable", lambda port: True)
        return span

    def other(self, span, count):
        out = subprocess.run(
            [sys.executable, "-c", OTHER, self.lock, str(span[0]), str(span[1]), str(count)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        return None if out == ["none"] else {int(p) for p in out}

    def test_outsideEphemeralRange(self):
        """
        Every port lies below the ephemeral range the kernel uses for
        outgoing connections and port 0.
        """
        if ports.candidateRange() is None:
            raise SkipTest("this host's ephemeral range leaves no room below it")
        low, high = ports.ephemeralRange()
        for port in freePorts(20):
            self.assertTrue(1024 <= port < low, (port, low, high))

    def test_bindable(self):
        """
        A port handed out can be listened on at once.
        """
        port = freePort()
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", port))
        listener.listen(1)

    def test_neverTwiceWhileReserved(self):
        """
        Calls in a row never repeat a port until the range runs out.
        """
        self.small(30)
        seen = []
        for _ in range(10):
            seen.extend(freePorts(3))
        self.assertEqual(len(set(seen)), 30)
        self.assertRaises(ports.NoFreePort, freePorts, 1)

    def test_otherProcessGetsTheRest(self):
        """
        Another process gets only the ports this one has not reserved, and
        its reservations end when it exits.
        """
        span = self.small(100)
        mine = set(freePorts(50))
        theirs = self.other(span, 50)
        self.assertEqual(mine | theirs, set(range(*span)))
        self.assertIsNone(self.other(span, 51))

    def test_expiry(self):
        """
        A port is free again L{ports.RESERVED_FOR} seconds after it was
        handed out, not before.
        """
        now = [1000.0]
        self.patch(ports, "_now", lambda: now[0])
        self.small(1)
        [port] = freePorts(1)
        now[0] += ports.RESERVED_FOR - 1
        self.assertRaises(ports.NoFreePort, freePorts, 1)
        now[0] += 2
        self.assertEqual(freePorts(1), [port])

    def test_shortfallReleases(self):
        """
        A call that cannot find enough keeps none of the ports it found.
        """
        self.small(3)
        self.assertRaises(ports.NoFreePort, freePorts, 4)
        self.assertEqual(len(freePorts(3)), 3)

    def test_bindRefused(self):
        """
        A range where binding is refused (EACCES) says so.
        """
        self.small(5)
        self.patch(ports, "_bindable", lambda port: None)
        error = self.assertRaises(ports.NoFreePort, freePorts, 1)
        self.assertIn("EACCES", str(error))

    def test_noRangeFallsBackToKernel(self):
        """
        With no usable range below the ephemeral one (or none known), the
        kernel picks (port 0), as before, and nothing is reserved.
        """
        ephemeral = ports.ephemeralRange()
        self.patch(ports, "ephemeralRange", lambda: None)
        self.assertIsNone(ports.candidateRange())
        port = freePort()
        if ephemeral is not None:
            self.assertTrue(ephemeral[0] <= port <= ephemeral[1], (port, ephemeral))
        self.assertEqual(ports._reservations.taken, {})


class WaitServingTests(TestCase):
    """
    L{TwistdTestCase.waitServing} says why a balancer never answered.
    """

    async def test_exitedChildFailsWithItsOutput(self):
        """
        A twistd that exits at start (here: its port is taken, bound
        but not listening, so connections are refused) fails the
        wait at once, with what it printed.
        """
        from playbalancer.testing.twistd import TwistdTestCase

        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        case = TwistdTestCase()
        case.startTwistd(
            f"""
[[listen]]
endpoint = "tcp:{port}:interface=127.0.0.1"
balancer = "web"

[balancer.web]
[[balancer.web.member]]
name = "app1"
url = "http://127.0.0.1:1"
"""
        )
        self.addCleanup(case.child.stop, 15.0)
        case.base = f"http://127.0.0.1:{port}"
        # (Were the exit not noticed, the wait would outlast this test's
        # own timeout and the test would fail.)
        failure = await self.assertFailure(
            ensureDeferred(case.waitServing(1, timeout=3600)), case.failureException
        )
        self.assertIn("exited", str(failure))
        self.assertIn("address already in use", str(failure).lower())
