"""
What happened to one attempt on one member, reported once, when it ends,
through L{playbalancer.balancer.Balancer.attemptEnded}: the member's
counters, metrics and (for failures) passive health follow from it.  An
answer tells passive health earlier, when it comes
(L{playbalancer.balancer.Balancer.memberResponded}: a response head, or a
TCP connection made), so that a long response brings a member back at once.
"""

from __future__ import annotations

#: The member answered, and the answer went on to the end (a complete
#: response, a tunnel that closed, a TCP relay that ended).
ANSWERED = "answered"
#: The member answered with a status in C{fail_on_status}, and the request
#: went to another member instead.
REFUSED = "refused"
#: No connection to the member could be made.
CONNECT = "connect"
#: The member's pool was full and its wait queue too.
QUEUE_FULL = "queue_full"
#: The member closed (or reset) the connection before the response was
#: complete.
RESET = "reset"
#: The member's response was malformed.
BAD_RESPONSE = "bad_response"
#: The member was silent for longer than the timeout.
TIMEOUT = "timeout"
#: We gave up on the attempt for a reason of the client's (it left, or
#: stopped sending its body): says nothing about the member.
CANCELLED = "cancelled"

KINDS = (ANSWERED, REFUSED, CONNECT, QUEUE_FULL, RESET, BAD_RESPONSE, TIMEOUT, CANCELLED)


class Outcome:
    """
    The end of one attempt.

    @ivar kind: one of L{KINDS}.
    @ivar status: the member's response status, or 0 if none came.
    @ivar reason: text for the log and the manager (why it failed), or
        L{None}.
    @ivar firstByte: seconds from the start of the attempt to the member's
        response head, or L{None}.
    @ivar total: seconds the whole response took, or L{None} unless it
        was complete.
    @ivar bytesIn: bytes from the member.
    @ivar bytesOut: bytes of the client's sent to the member.
    @ivar retried: whether the request went on to another member.
    @ivar answeredPart: whether some of the response had come when the
        attempt failed.
    @ivar reused: whether the attempt ran on a pooled connection (one that
        closes with no answer at all was most likely closed by the member
        while idle: not a failure of the member).
    """

    __slots__ = (
        "kind",
        "status",
        "reason",
        "firstByte",
        "total",
        "bytesIn",
        "bytesOut",
        "retried",
        "answeredPart",
        "reused",
    )

    def __init__(
        self,
        kind,
        status=0,
        reason=None,
        firstByte=None,
        total=None,
        bytesIn=0,
        bytesOut=0,
        retried=False,
        answeredPart=False,
        reused=False,
    ):
        self.kind = kind
        self.status = status
        self.reason = reason
        self.firstByte = firstByte
        self.total = total
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
        self.retried = retried
        self.answeredPart = answeredPart
        self.reused = reused

    def __repr__(self):
        return f"<Outcome {self.kind} {self.status} {self.reason!r}>"
