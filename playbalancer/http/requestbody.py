"""
A request body on its way from the client to a member: the pieces held
while no member connection is ready for them, and the pieces sent, kept
(up to L{REPLAY_LIMIT} bytes) so that the request can go again to another
member.  Pieces are kept as framed for the member (chunked or not).
"""

from __future__ import annotations

#: Request bodies up to this size are kept until the response comes, so
#: that the request can be sent again to another member.
REPLAY_LIMIT = 65536

#: Body bytes held for a member not connected yet before the client is
#: paused.
PENDING_LIMIT = 65536


class RequestBody:
    """
    @ivar complete: whether the client sent the whole body.
    @ivar received: body bytes from the client (unframed).
    @ivar replayable: whether every piece sent so far is still kept.
    """

    __slots__ = (
        "chunked",
        "complete",
        "received",
        "pending",
        "pendingBytes",
        "sent",
        "sentBytes",
        "replayable",
    )

    def __init__(self, length):
        self.chunked = length is None
        self.complete = length == 0
        self.received = 0
        self.pending = []
        self.pendingBytes = 0
        self.sent = []
        self.sentBytes = 0
        self.replayable = True

    def frame(self, data):
        """
        Count a piece of the body from the client, and frame it for the
        member (as a chunk, for a chunked body).
        """
        self.received += len(data)
        if self.chunked:
            return b"%x\r\n%s\r\n" % (len(data), data)
        return data

    def offer(self, framed, attempt, client):
        """
        Send C{framed} on C{attempt} if it takes the body now; else hold it,
        pausing C{client} when too much is held.
        """
        if attempt is not None and attempt.takesBody():
            attempt.sendBody(framed)
        elif self.hold(framed):
            client.pauseProducing()

    def hold(self, framed):
        """
        Keep C{framed} until a member connection takes it.

        @return: whether the client should pause (too much is held).
        """
        self.pending.append(framed)
        self.pendingBytes += len(framed)
        return self.pendingBytes > PENDING_LIMIT

    def takePending(self):
        """
        The pieces held, now to be sent (and no longer held).
        """
        pending, self.pending = self.pending, []
        self.pendingBytes = 0
        return pending

    def wasSent(self, framed):
        """
        C{framed} went to a member: keep it for a replay while the whole
        body fits in L{REPLAY_LIMIT}.
        """
        if self.replayable:
            self.sentBytes += len(framed)
            if self.sentBytes > REPLAY_LIMIT:
                self.replayable = False
                self.sent = []
            else:
                self.sent.append(framed)

    def rewind(self):
        """
        A new attempt: what was sent to the last member is to be sent
        again, before anything held.
        """
        if self.sent:
            self.pending[:0] = self.sent
            self.pendingBytes += self.sentBytes
            self.sent = []
            self.sentBytes = 0
