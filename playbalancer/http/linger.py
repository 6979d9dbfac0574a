"""
A lingering close (as nginx and Apache do): after a refusal, what the
client still sends is read and dropped for a while before the connection
closes, so that unread bytes do not make the kernel reset the connection
and lose the refusal on its way.
"""

from __future__ import annotations

#: How long, and how many bytes, a refused client's bytes are read and
#: dropped before the connection is aborted.
LINGER_SECONDS = 2.0
LINGER_BYTES = 262144


class LingeringClose:
    """
    Takes over a client connection whose writing side was closed: reads
    and drops up to L{LINGER_BYTES} for up to L{LINGER_SECONDS} (kept by
    C{sweeper}), then aborts the connection.
    """

    def __init__(self, transport, sweeper):
        self.transport = transport
        self.sweeper = sweeper
        self.dropped = 0
        self.deadline = sweeper.now + LINGER_SECONDS
        sweeper.watch(self)

    def dataReceived(self, data):
        self.dropped += len(data)
        if self.dropped > LINGER_BYTES:
            self.transport.abortConnection()

    def expired(self):
        self.deadline = None
        self.transport.abortConnection()

    def connectionLost(self, reason):
        self.sweeper.unwatch(self)
