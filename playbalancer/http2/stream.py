"""
One HTTP/2 stream as the exchange serving its request sees it: an
L{playbalancer.interfaces.IClientSide}, with the stream's own flow
control both ways.

Towards the client, body bytes wait in the stream until the client's
flow-control window takes them; more than the listener's C{buffer_size}
waiting pauses the member (and only that member: the other streams go
on).  From the client, the request body's bytes are acknowledged (its
window opened again) only while the exchange takes them: an exchange
that pauses the client holds its window shut, so a stream never
buffers more than its window.
"""

from __future__ import annotations

from collections import deque

from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError, StreamClosedError
from zope.interface import implementer

from playbalancer.flow import Pauser
from playbalancer.http.bodyreader import BodyClock
from playbalancer.http.responses import PLAIN, plainBody
from playbalancer.http2.translate import responseFields
from playbalancer.interfaces import IClientSide


@implementer(IClientSide)
class H2Stream:
    """
    The client side of one request on an
    L{playbalancer.http2.connection.H2FrontConnection}.

    Its request body arrives through L{bodyData} and L{bodyEnd}; its
    response leaves through the C{IClientSide} methods.  Once our side of
    the stream is over (ended or reset: C{over}), the connection forgets
    it, and what else the client sends for it is dropped.

    @ivar deadline: when the sweeper should look at it (L{expired}): the
        request body has stopped (the listener's C{body_timeout}), or the
        response has waited for the client's window (C{send_timeout}).
    """

    closing = False

    def __init__(self, connection, streamId, request, accessLog, bufferSize, settings):
        self.connection = connection
        self.h2 = connection.h2
        self.streamId = streamId
        self.request = request
        self.accessLog = accessLog
        self.bufferSize = bufferSize
        self.settings = settings
        self.exchange = None
        #: The request has a body still to come.
        self.bodyExpected = request is not None and request.length != 0
        self.bodyReceived = 0
        #: The largest body the route takes (0: no limit).
        self.maxBody = 0
        #: Body bytes (and their flow-control lengths) that came before the
        #: exchange was made (while the route's allow list was checked).
        self.early = None
        self.pending = deque()
        self.pendingBytes = 0
        self.responseStarted = False
        #: END_STREAM goes once what is pending has gone.
        self.ending = False
        self.over = False
        self.paused = False
        self.unacknowledged = 0
        self._pauser = None
        self.deadline = None
        self._bodyDeadline = None
        self._sendDeadline = None
        self._heldFields = None
        #: The request body's L{BodyClock}, if it has a body.
        self._clock = BodyClock(settings, connection.now()) if self.bodyExpected else None

    def __repr__(self):
        return f"<H2Stream {self.streamId}>"

    # The request body, from the connection

    def bodyData(self, data, flowLength):
        """
        Body bytes for this stream arrived; C{flowLength} of the client's
        window they used (padding included).
        """
        if self.over:
            self.h2.acknowledge_received_data(flowLength, self.streamId)
            return
        self.bodyReceived += len(data)
        if self.maxBody and self.bodyReceived > self.maxBody:
            self.h2.acknowledge_received_data(flowLength, self.streamId)
            self._tooLarge()
            return
        if self.paused or self.exchange is None:
            self.unacknowledged += flowLength
        else:
            self.h2.acknowledge_received_data(flowLength, self.streamId)
        if self.exchange is None:
            if self.early is None:
                self.early = []
            self.early.append(data)
            return
        self._clock.read += len(data)
        self._restartBodyClock()
        if data:
            self.exchange.bodyData(data)

    def bodyEnd(self):
        """
        The client ended its side of the stream.
        """
        if not self.bodyExpected:
            return
        self.bodyExpected = False
        self._bodyDeadline = None
        self._rearm()
        if self.over:
            return
        length = self.request.length
        if length is not None and length != self.bodyReceived:
            # Ended short of its content-length (by trailers: the library
            # checks only DATA): malformed (RFC 9113 section 8.1.1), and
            # never to be passed on as complete.
            self.connection.streamFault(self, ErrorCodes.PROTOCOL_ERROR)
            return
        if self.exchange is not None:
            self.exchange.bodyEnd()
        else:
            # (The route's allow list is still being checked.)
            if self.early is None:
                self.early = []
            self.early.append(None)

    def serve(self, exchange):
        """
        Start C{exchange} (an L{playbalancer.http.exchange.Exchange} or an
        L{playbalancer.http.ownanswer.OwnAnswer}), giving it the body
        that came before it.
        """
        from twisted.python.failure import Failure

        self.exchange = exchange
        if self.maxBody and self.bodyReceived > self.maxBody:
            self._tooLarge()
            return
        try:
            exchange.start()
        except Exception:
            exchange.failed(Failure())
        early, self.early = self.early, None
        if self.unacknowledged and not self.paused:
            self.resumeProducing()
        if early is not None:
            for data in early:
                if self.over:
                    return
                if data is None:
                    self.bodyExpected = True
                    self.bodyEnd()
                elif data:
                    self._clock.read += len(data)
                    exchange.bodyData(data)
        if self.bodyExpected:
            self._restartBodyClock()

    def clientReset(self):
        """
        The client reset the stream (or the connection is gone).
        """
        self._forget()
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.clientGone()

    def _tooLarge(self):
        if not self.responseStarted and self.exchange is not None:
            exchange = self.exchange
            exchange.clientGone()
            # (bodyExpected stays: the response ends with RST_STREAM
            # NO_ERROR, which tells the client to stop sending.)
            self.respond(413, "Payload Too Large: the body is too big", False)
            self.finish()
        else:
            self.abort()

    # IClientSide

    def _sendHeaders(self, fields, end=False):
        """
        Send header fields; a stream the library has closed already (the
        client's RST_STREAM came in the same read) is reset for us.

        @return: whether they went.
        """
        try:
            self.h2.send_headers(self.streamId, fields, end_stream=end)
        except StreamClosedError:
            self.clientReset()
            return False
        return True

    def sendContinue(self):
        if not self.over:
            self._sendHeaders([(b":status", b"100")])
            self.connection.flush()

    def sendInterim(self, status, reason, headers):
        if self.over or status == 101:
            return
        self._sendHeaders(responseFields(status, headers, None, b"GET"))
        self.connection.flush()

    def startResponse(self, status, reason, headers, length, keepAlive, upgrade=None):
        if self.over:
            return
        self.responseStarted = True
        fields = responseFields(status, headers, length, self.request.method)
        if length == 0:
            # Sent with END_STREAM when the response is finished.
            self._heldFields = fields
        else:
            self._sendHeaders(fields)

    def writeBody(self, data):
        if self.over or not data:
            return
        self.pending.append(data)
        self.pendingBytes += len(data)
        self.connection.sendWaiting(self)
        if self.pendingBytes > self.bufferSize:
            pauser = self._pauser
            if pauser is not None and not pauser.paused:
                pauser.pauseProducing()

    def readEnd(self):
        self.connection.flush()

    def finish(self):
        if self.over or self.ending:
            return
        held, self._heldFields = self._heldFields, None
        if held is not None:
            if self._sendHeaders(held, end=True):
                self._ended()
        elif self.pending:
            self.ending = True
        else:
            try:
                self.h2.end_stream(self.streamId)
            except StreamClosedError:
                self.clientReset()
            else:
                self._ended()
        self.connection.flush()

    def respond(self, status, text, keepAlive=True, extra=()):
        if self.over:
            return 0
        self.responseStarted = True
        body = plainBody(text)
        fields = [
            (b":status", b"%d" % status),
            (b"content-type", PLAIN),
            (b"content-length", b"%d" % len(body)),
        ]
        fields.extend((name.lower(), value) for name, value in extra)
        if self.request is not None and self.request.method == b"HEAD":
            self._heldFields = fields
            return 0
        if not self._sendHeaders(fields):
            return 0
        self.writeBody(body)
        return len(body)

    def abort(self):
        """
        The response cannot be completed: reset the stream, so the client
        cannot take it for complete.
        """
        self.reset(ErrorCodes.INTERNAL_ERROR)

    def reset(self, code):
        """
        Reset the stream with error C{code} and stop its exchange.
        """
        if self.over:
            return
        try:
            self.h2.reset_stream(self.streamId, code)
        except StreamClosedError:
            pass
        self.clientReset()
        self.connection.flush()

    def pauseProducing(self):
        self.paused = True
        if self._clock is not None:
            self._clock.paused(self.connection.now())
        self._bodyDeadline = None
        self._rearm()

    def resumeProducing(self):
        self.paused = False
        if self.over:
            return
        if self._clock is not None:
            self._clock.resumed(self.connection.now())
        held, self.unacknowledged = self.unacknowledged, 0
        if held:
            try:
                self.h2.acknowledge_received_data(held, self.streamId)
            except StreamClosedError:
                pass
            self.connection.flush()
        if self.bodyExpected and self.exchange is not None:
            self._restartBodyClock()

    def stopProducing(self):
        pass

    def pauseWhileFull(self, producer):
        pauser = self._pauser = Pauser(producer)
        if self.pendingBytes > self.bufferSize:
            pauser.pauseProducing()
        return pauser

    def stopPausing(self, token):
        if self._pauser is token:
            self._pauser = None
        if token is not None and token.paused:
            token.resumeProducing()

    def keepsUp(self):
        return not self.pendingBytes and self.connection.keepsUp()

    def startTunnel(self, exchange):
        self.abort()  # never asked for: HTTP/2 requests carry no Upgrade

    def tunnelActive(self):
        pass

    def close(self):
        self.finish()

    # Sending, for the connection

    def sendSome(self):
        """
        Send what waits, as far as the client's windows allow.

        @return: whether bytes still wait (for a window update).
        """
        h2 = self.h2
        streamId = self.streamId
        pending = self.pending
        sent = False
        try:
            while pending:
                window = min(h2.local_flow_control_window(streamId), h2.max_outbound_frame_size)
                if window <= 0:
                    break
                piece = pending[0]
                if len(piece) <= window:
                    pending.popleft()
                else:
                    pending[0] = piece[window:]
                    piece = piece[:window]
                self.pendingBytes -= len(piece)
                last = self.ending and not pending
                h2.send_data(streamId, piece, end_stream=last)
                sent = True
        except StreamClosedError:
            # (The client's RST_STREAM is in this read: stop the exchange
            # now, not when its event comes.)
            self.clientReset()
            return False
        if sent:
            self._sendDeadline = None
        if pending:
            if self._sendDeadline is None and self.settings.sendTimeout:
                self._sendDeadline = self.connection.now() + self.settings.sendTimeout
            self._rearm()
            return True
        self._rearm()
        pauser = self._pauser
        if pauser is not None and pauser.paused:
            pauser.resumeProducing()
        if self.ending:
            self._ended()
        return False

    # Time limits

    def _restartBodyClock(self):
        """
        Nothing more of the body yet: when does it time out (the
        listener's C{body_timeout}, C{body_min_rate}, C{body_deadline},
        as on HTTP/1.1)?
        """
        clock = self._clock
        if clock is not None and self.bodyExpected and not self.paused and self.settings.bodyTimeout:
            self._bodyDeadline = clock.deadline(self.connection.now())
            self._rearm()

    def _rearm(self):
        deadlines = [d for d in (self._bodyDeadline, self._sendDeadline) if d is not None]
        deadline = min(deadlines) if deadlines and not self.over else None
        if deadline != self.deadline:
            self.deadline = deadline
            self.connection.watchStream(self, deadline is not None)

    def expired(self):
        now = self.connection.now()
        if self._sendDeadline is not None and self._sendDeadline <= now:
            # The client has not opened its window for a response that
            # waits for it: a zero-window stall.
            self.connection.streamFault(self, ErrorCodes.CANCEL)
            return
        if self._bodyDeadline is not None and self._bodyDeadline <= now:
            self._bodyDeadline = None
            exchange = self.exchange
            if exchange is not None:
                exchange.clientTimedOut()
            if not self.responseStarted:
                self.connection.streamFault(self, ErrorCodes.CANCEL)
        self._rearm()

    # The end of the stream

    def _ended(self):
        """
        Our side of the stream is complete.
        """
        self.ending = False
        if self.bodyExpected:
            # The response is complete; the client need not send the rest
            # (RFC 9113 section 8.1).
            try:
                self.h2.reset_stream(self.streamId, ErrorCodes.NO_ERROR)
            except StreamClosedError:
                pass
        self._forget()
        self.exchange = None

    def _forget(self):
        if not self.over:
            self.over = True
            held, self.unacknowledged = self.unacknowledged, 0
            if held:
                # (Else the connection's window would stay that much
                # smaller for good.)
                try:
                    self.h2.acknowledge_received_data(held, self.streamId)
                except ProtocolError:
                    pass  # (the connection is over)
            self.pending.clear()
            self.pendingBytes = 0
            self._bodyDeadline = self._sendDeadline = None
            self._rearm()
            self.connection.streamOver(self)
            pauser, self._pauser = self._pauser, None
            if pauser is not None and pauser.paused:
                pauser.resumeProducing()
