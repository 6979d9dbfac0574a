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
import time

from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase

from playbalancer.testing import freePort, freePorts
from playbalancer.testing import ports


class FreePortsTests(TestCase):
    def setUp(self):
        self.patch(ports, "reservationDirectory", lambda: self.directory)
        self.directory = os.path.abspath(self.mktemp())

    def test_outsideEphemeralRange(self):
        """
        Every port lies below the ephemeral range the kernel uses for
        outgoing connections and port 0.
        """
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
        Many calls in a row never repeat a port.
        """
        seen = []
        for _ in range(100):
            seen.extend(freePorts(3))
        self.assertEqual(len(seen), len(set(seen)))

    def test_otherProcessGetsOthers(self):
        """
        Another process using the same reservations gets other ports, and
        removes its reservations when it exits.
        """
        mine = set(freePorts(50))
        code = (
            "import sys\n"
            "from playbalancer.testing import ports\n"
            "ports.reservationDirectory = lambda: sys.argv[1]\n"
            "print(' '.join(map(str, ports.freePorts(50))))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, self.directory],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        theirs = {int(p) for p in out.split()}
        self.assertEqual(len(theirs), 50)
        self.assertEqual(mine & theirs, set())
        # The other process removed its reservations when it exited.
        self.assertEqual({int(name) for name in os.listdir(self.directory)}, mine)

    def test_staleReservationsReused(self):
        """
        A reservation older than L{ports.RESERVED_FOR} no longer holds its
        port, and its file is removed.
        """
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        self.patch(ports, "candidateRange", lambda: (port, port + 1))
        self.assertEqual(freePorts(1), [port])
        self.assertRaises(ports.NoFreePort, freePorts, 1)
        old = time.time() - ports.RESERVED_FOR - 1
        for name in os.listdir(self.directory):
            os.utime(os.path.join(self.directory, name), (old, old))
        self.assertEqual(freePorts(1), [port])
        self.assertEqual(os.listdir(self.directory), [str(port)])

    def test_noRangeFallsBackToKernel(self):
        """
        With no usable range below the ephemeral one, the kernel picks
        (port 0), as before.
        """
        self.patch(ports, "candidateRange", lambda: None)
        port = freePort()
        self.assertTrue(0 < port < 65536)


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
        started = time.monotonic()
        failure = await self.assertFailure(
            ensureDeferred(case.waitServing(1)), case.failureException
        )
        self.assertIn("exited", str(failure))
        self.assertIn("address already in use", str(failure).lower())
        self.assertLess(time.monotonic() - started, 30)
