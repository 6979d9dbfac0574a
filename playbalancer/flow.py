"""
Flow between two connections: backpressure (one transport pauses the
other while its write buffer is full) and the send deadline, which ends a
connection whose peer has stopped taking bytes (nginx's C{send_timeout}).

A peer that never reads would otherwise hold its connection, the member
request behind it, and everything buffered for it, for ever: closing with
C{loseConnection} waits for the buffer to drain, and it never drains.
"""

from __future__ import annotations

from zope.interface import implementer

from twisted.internet.interfaces import IPushProducer

from playbalancer._net.rawsocket import (
    forgetPause,
    holdProducerUntilDrained,
    kernelNotSent,
    kernelRoom,
    unsentBytes,
)
from playbalancer._net.readsize import LARGE

#: Bytes that may wait in this process for one peer that reads slowly
#: before the other side is paused (HAProxy's C{tune.bufsize} default).
BUFFER_SIZE = 16384


def holdIfFull(transport, limit):
    """
    After bytes were queued on C{transport}: pause what feeds it once more
    than C{limit} wait, until they have gone out.
    """
    if unsentBytes(transport) > limit:
        holdProducerUntilDrained(transport)


#: Bytes the kernel holds unsent for a socket above which its peer counts
#: as not keeping up (a peer that reads as fast as it gets keeps it low).
KERNEL_LAG = 262144


def keepsUp(transport):
    """
    Whether C{transport}'s peer takes what we send as fast as it comes:
    nothing waits for it in this process, little in the kernel, and the
    kernel has room for two large reads from the other side (the one in
    hand and the next), so that a large read never leaves more than a
    small one would in this process when the peer stops reading.
    """
    if transport is None:
        return True
    if unsentBytes(transport) or kernelNotSent(transport) >= KERNEL_LAG:
        return False
    room = kernelRoom(transport)
    return room is None or room >= 2 * LARGE


def waiting(transport):
    """
    Bytes written to C{transport} that its peer has not taken yet: ours,
    and those the kernel has not sent.
    """
    return unsentBytes(transport) + kernelNotSent(transport)


@implementer(IPushProducer)
class Pauser:
    """
    Lets one transport pause another (backpressure) without the right to
    close it: a transport that loses its connection stops its producer.
    C{transport} is anything with C{pauseProducing} and C{resumeProducing}.

    @ivar stall: a L{SendDeadline} told when the consumer's buffer fills
        and drains, or L{None}.
    """

    def __init__(self, transport, stall=None):
        self.transport = transport
        self.stall = stall
        self.paused = False

    def pauseProducing(self):
        if self.paused:
            return  # Twisted asks again on every write while full
        self.paused = True
        self.transport.pauseProducing()
        if self.stall is not None:
            self.stall.blocked()

    def resumeProducing(self):
        self.paused = False
        self.transport.resumeProducing()
        if self.stall is not None:
            self.stall.flowing()

    def stopProducing(self):
        pass


def pauses(consumer, producer, stall=None):
    """
    Let C{consumer} (a transport) pause C{producer} (another transport, or
    a front connection, which then stops reading and stops its request
    body's clock) while its write buffer is full.

    @param stall: the consumer's L{SendDeadline}, if it has one.
    @return: the L{Pauser}, for L{stopPausing}.
    """
    pauser = Pauser(producer, stall)
    consumer.registerProducer(pauser, True)
    return pauser


def stopPausing(consumer, pauser):
    """
    Undo L{pauses}, resuming the producer if it was paused.  (The pauser
    is passed back, not read from the consumer: a TLS transport registers
    a wrapper of its own underneath.)
    """
    consumer.unregisterProducer()
    forgetPause(consumer)
    if pauser is not None and pauser.paused:
        pauser.resumeProducing()


class SendDeadline:
    """
    Aborts C{transport} when its peer takes no bytes for C{timeout}
    seconds while some wait to be sent.

    Armed when the transport's buffer fills (it paused its producer) or
    when we close it with bytes unsent; disarmed when the buffer drains.
    At the deadline, fewer bytes L{waiting} than when it was armed (the
    kernel's unsent ones count: the peer reads from those first) count as
    progress and arm it again; otherwise the connection is aborted, and
    its C{connectionLost} tells whoever relied on it.  Checked by a
    L{playbalancer.sweeper.Sweeper}, which watches it only while armed.

    @ivar deadline: when to look again (the sweeper's clock), or L{None}.
    """

    def __init__(self, transport, sweeper, timeout):
        self.transport = transport
        self.sweeper = sweeper
        self.timeout = timeout
        self.deadline = None
        self.unsent = 0
        #: Whether this deadline ended the connection.
        self.fired = False
        self._gone = False

    def blocked(self):
        """
        Bytes are waiting for the peer: start the clock if it is not
        running.
        """
        if self.deadline is None and not self._gone:
            self._arm(waiting(self.transport))

    def flowing(self):
        """
        The buffer drained: the peer is reading.
        """
        if self.deadline is not None:
            self.deadline = None
            self.sweeper.unwatch(self)

    def closing(self):
        """
        We closed the connection: if bytes are still unsent, the peer has
        C{timeout} seconds between two reads to take them.
        """
        if self.deadline is None and not self._gone:
            unsent = waiting(self.transport)
            if unsent:
                self._arm(unsent)

    def stop(self):
        """
        The connection is gone: never armed again.
        """
        self._gone = True
        self.flowing()

    def _arm(self, unsent):
        self.unsent = unsent
        self.deadline = self.sweeper.now + self.timeout
        self.sweeper.watch(self)

    def expired(self):
        unsent = waiting(self.transport)
        if unsent == 0:
            self.flowing()
        elif unsent < self.unsent:
            self._arm(unsent)
        else:
            self.deadline = None
            self.sweeper.unwatch(self)
            self.fired = True
            self.transport.abortConnection()
