"""
Listeners get a listen backlog of 1,024 unless their endpoint names one:
Twisted's default of 50 left a burst of 100 new connections waiting a
second each for the kernel to send a SYN again.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.running import withBacklog
from playbalancer.workers.listening import DEFAULT_BACKLOG


class BacklogTests(SynchronousTestCase):
    def test_defaulted(self):
        for description in ("tcp:0:interface=127.0.0.1", "tcp6:0", "unix:/tmp/pb.sock:mode=600"):
            endpoint = serverFromString(reactor, withBacklog(description))
            self.assertEqual(endpoint._backlog, DEFAULT_BACKLOG, description)
        self.assertEqual(DEFAULT_BACKLOG, 1024)

    def test_named(self):
        self.assertEqual(withBacklog("tcp:80:backlog=5"), "tcp:80:backlog=5")
        self.assertEqual(serverFromString(reactor, withBacklog("tcp:80:backlog=5"))._backlog, 5)

    def test_otherKinds(self):
        self.assertEqual(withBacklog("systemd:domain=INET:index=0"), "systemd:domain=INET:index=0")
