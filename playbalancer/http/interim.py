"""
Interim (1xx) responses on their way to the client: the member's, passed
on (RFC 9110 15.2: a 103 Early Hints with its Link headers, a 102), and
our own C{100 Continue} for a client that waits for one before sending its
body.
"""

from __future__ import annotations

#: Seconds to wait for a member's C{100 Continue} before sending our own.
CONTINUE_WAIT = 1.0

#: The most interim (1xx) responses passed on for one request; a member
#: that sends more is not heard beyond them.
MAX_INTERIM = 8


class Interim:
    """
    The interim responses of one request.

    @ivar continueSent: whether the client was told to go on.
    """

    __slots__ = ("client", "clock", "continueSent", "passed", "_call")

    def __init__(self, client, clock):
        self.client = client
        self.clock = clock
        self.continueSent = False
        self.passed = 0
        self._call = None

    def sendContinue(self):
        """
        Tell the client to send its body, once.
        """
        self._call = None
        if not self.continueSent:
            self.continueSent = True
            self.client.sendContinue()

    def continueSoon(self):
        """
        The request went to a member that was asked for its own C{100
        Continue}: send ours if none came within L{CONTINUE_WAIT}.
        """
        if not self.continueSent and self._call is None:
            self._call = self.clock.callLater(CONTINUE_WAIT, self.sendContinue)

    def stop(self):
        """
        No C{100 Continue} of ours is needed any more.
        """
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def fromMember(self, status, reason, headers):
        """
        Pass on an interim response from the member (at most
        L{MAX_INTERIM}; a C{100} only if we have not said it).
        """
        if status == 100:
            self.stop()
            if self.continueSent:
                return
            self.continueSent = True
        self.passed += 1
        if self.passed <= MAX_INTERIM:
            self.client.sendInterim(status, reason, headers)
