"""
L{playbalancer._net.readsize.followReads}: small reads for small messages,
large ones for bulk data.
"""

from __future__ import annotations

from twisted.internet.tcp import Connection
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from playbalancer._net.readsize import LARGE, SMALL, followReads


class _Transport(Connection):
    """
    A socket transport (the kind whose read size may change) with no
    socket.
    """

    bufferSize = SMALL

    def __init__(self):
        pass


class FollowReadsTests(TestCase):
    def test_growsWhenAReadFillsTheBuffer(self):
        transport = _Transport()
        followReads(transport, SMALL - 1)
        self.assertEqual(transport.bufferSize, SMALL)
        followReads(transport, SMALL)
        self.assertEqual(transport.bufferSize, LARGE)

    def test_staysLargeForBulkReads(self):
        """
        Reads between the two sizes keep the large size: bulk data comes
        in pieces of every size.
        """
        transport = _Transport()
        followReads(transport, SMALL)
        for received in (LARGE, SMALL, LARGE - 1, SMALL + 1):
            followReads(transport, received)
            self.assertEqual(transport.bufferSize, LARGE)

    def test_shrinksOnASmallRead(self):
        transport = _Transport()
        followReads(transport, SMALL)
        followReads(transport, 200)
        self.assertEqual(transport.bufferSize, SMALL)

    def test_transportWithoutReadSize(self):
        """
        A transport that does not read from a socket itself is left alone.
        """
        transport = StringTransport()
        followReads(transport, LARGE)
        self.assertFalse(hasattr(transport, "bufferSize"))
