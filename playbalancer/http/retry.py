"""
When a request may go to another member after an attempt failed: the
rules alone, as pure functions of what is known, so that they can be
tested without sockets (as Envoy keeps its retry state apart from the
router).

A request is sent again at most once after a member failed it, and only
when nothing of the response reached the client, the whole body it sent
is still at hand, it is no protocol upgrade, and sending it twice is safe:
its method is idempotent, or the balancer allows it for requests that
carry an I{Idempotency-Key}.  A member that could not be connected to has
seen nothing, so any request goes on to the next member then.
"""

from __future__ import annotations

#: Methods that may be sent again after a member broke off before answering.
IDEMPOTENT = frozenset([b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"])


class RetryState:
    """
    What the retry rules need to know of one request.

    @ivar retried: whether it was sent again once already.
    @ivar responseStarted: whether the client got any of a response.
    @ivar body: the request's body on its way (anything with a
        C{replayable} attribute: whether all of it sent so far is kept,
        as L{playbalancer.http.requestbody.RequestBody} has), or L{None}
        for a request whose body need not be kept.
    """

    __slots__ = ("method", "upgrade", "idempotencyKey", "retried", "responseStarted", "body")

    def __init__(self, method, upgrade=None, idempotencyKey=False, body=None):
        self.method = method
        self.upgrade = upgrade
        #: Whether the request carries an C{Idempotency-Key} and its
        #: balancer allows a retry on that ground.
        self.idempotencyKey = idempotencyKey
        self.retried = False
        self.responseStarted = False
        self.body = body

    @property
    def replayable(self):
        """
        Whether the body sent so far could be sent again: its one source
        of truth is the body itself.
        """
        body = self.body
        return body is None or body.replayable


def stateOf(request, balancer, body):
    """
    The L{RetryState} of a new request (a L{playbalancer.http.wire.RequestHead},
    its body on its way C{body}) to C{balancer}.  A request of a method that is not idempotent may be
    sent again all the same when the balancer allows it
    (C{retry_idempotency_key}) and the client sent an C{Idempotency-Key}
    (the IETF draft), promising that the member will not act on it twice.
    """
    keyed = balancer.retryIdempotencyKey and any(
        name.lower() == b"idempotency-key" for name, _ in request.headers
    )
    return RetryState(request.method, request.upgrade, keyed, body)


def safeToRepeat(state):
    """
    Whether the request of C{state} (a L{RetryState}) may be sent to a
    second member after the first one saw it.
    """
    return (
        not state.retried
        and not state.responseStarted
        and state.replayable
        and not state.upgrade
        and (state.method in IDEMPOTENT or state.idempotencyKey)
    )


def afterConnectFailure(state):
    """
    The member could not be reached: the request goes to the next one (the
    member saw nothing of it).
    """
    return not state.responseStarted


def afterLoss(state):
    """
    The member closed the connection before its response started.
    """
    return safeToRepeat(state)


def afterFailingStatus(state, bodyDone, othersLeft):
    """
    The member answered with a status the balancer counts as a failure
    (C{fail_on_status}): the request goes elsewhere when it may be repeated,
    its whole body came already, and another member is usable.
    """
    return othersLeft and bodyDone and safeToRepeat(state)


#: What the client gets when a failed attempt is not tried again, by kind.
_ANSWERS = {
    "reset": (502, "Bad Gateway: the member closed the connection"),
    "bad_response": (502, "Bad Gateway: {reason}"),
    "timeout": (504, "Gateway Timeout: the member did not answer in time"),
    "queue_full": (503, "Service Unavailable: {reason}"),
}


def afterFailure(state, kind, reason):
    """
    An attempt failed before its response started (C{kind} as in
    L{playbalancer.outcome}): try the next member, or answer.

    @return: C{(again, status, text)}: whether to try another member, and
        otherwise the status and text of our answer.
    """
    if kind == "connect":
        again = afterConnectFailure(state)
    elif kind == "reset":
        again = afterLoss(state)
    else:
        again = False
    if again:
        return True, 0, ""
    status, text = _ANSWERS[kind]
    return False, status, text.format(reason=reason)
