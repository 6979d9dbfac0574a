"""
Listening sockets shared with other processes stay non-blocking when this
one takes them (L{playbalancer._net.adopt}): PyPy's sockets made from a
descriptor would make them blocking for every process.
"""

from __future__ import annotations

import fcntl
import os
import socket

from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from playbalancer._net.adopt import adoptListening, familyOf, socketOf


def nonBlocking(fd):
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)


class AdoptTests(TestCase):
    def listening(self):
        sock = socket.socket(socket.AF_INET)
        sock.bind(("127.0.0.1", 0))
        sock.listen(5)
        sock.setblocking(False)
        self.addCleanup(sock.close)
        return sock

    def test_familyStaysNonBlocking(self):
        sock = self.listening()
        self.assertEqual(familyOf(sock.fileno()), socket.AF_INET)
        self.assertTrue(nonBlocking(sock.fileno()))

    def test_socketOfStaysNonBlocking(self):
        sock = self.listening()
        other = socketOf(os.dup(sock.fileno()))
        self.addCleanup(other.close)
        self.assertTrue(nonBlocking(sock.fileno()))

    async def test_adoptedPortStaysNonBlocking(self):
        """
        The adopted port accepts, and the socket the other process holds is
        still non-blocking.
        """
        sock = self.listening()
        fd = os.dup(sock.fileno())
        port = adoptListening(reactor, fd, Factory.forProtocol(lambda: None))
        os.close(fd)
        self.addCleanup(port.stopListening)
        self.assertTrue(nonBlocking(sock.fileno()))
        self.assertEqual(port.getHost().port, sock.getsockname()[1])

    def test_whyItMatters(self):
        """
        On PyPy a socket object made from a descriptor makes the socket
        blocking for every process that shares it (CPython leaves it
        alone).
        """
        import platform

        sock = self.listening()
        probe = socket.socket(fileno=os.dup(sock.fileno()))
        self.addCleanup(probe.close)
        self.assertEqual(
            nonBlocking(sock.fileno()), platform.python_implementation() != "PyPy"
        )
