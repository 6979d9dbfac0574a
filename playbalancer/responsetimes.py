"""
What a scheduler that learns from response times
(L{playbalancer.interfaces.IResponseTimeObserver}) is told of one attempt,
from its L{playbalancer.outcome.Outcome}.

The response time is the time to the member's response head
(C{Outcome.firstByte}): how long the member took to answer, whatever the
size of the body or the speed of the client that reads it.  Failures of
the member's own are reported as such, so that a member that fails fast
does not look fast.  Nothing is reported when the attempt says nothing
about the member: a client that left before the answer, a full
connection pool of ours, a pooled connection the member had closed while
idle (passive health does not blame the member for these either), or a
TCP relay (it has no response head).
"""

from __future__ import annotations

from playbalancer import outcome as _outcome

#: Outcomes that are the member's failure whatever else happened.
_FAILURES = frozenset([_outcome.REFUSED, _outcome.CONNECT, _outcome.BAD_RESPONSE,
                       _outcome.TIMEOUT])


def report(observer, member, outcome):
    """
    Tell C{observer} what the attempt on C{member} that ended with
    C{outcome} says of the member's speed, if anything.

    @param observer: an L{playbalancer.interfaces.IResponseTimeObserver}.
    @param outcome: an L{playbalancer.outcome.Outcome}.
    """
    kind = outcome.kind
    if kind in _FAILURES:
        observer.failed(member)
    elif kind == _outcome.RESET:
        # A pooled connection closed with no answer at all was most likely
        # closed by the member while idle.
        if outcome.status or outcome.answeredPart or not outcome.reused:
            observer.failed(member)
    elif outcome.firstByte is not None:
        # Answered, or answered before the client left.
        observer.responseTime(member, outcome.firstByte)
