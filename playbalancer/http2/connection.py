"""
One HTTP/2 client connection (RFC 9113): the C{h2} library's state
machine over the transport, a L{playbalancer.http2.stream.H2Stream} per
request, the listener's routes, and the limits that keep one client from
costing the balancer more than its share.

The C{h2} library parses and checks the frames (a frame that breaks the
protocol ends the connection with GOAWAY, as the library decides); this
module adds what a server in front of others must do besides: budgets for
the floods HTTP/2 makes cheap (L{playbalancer.http2.budget}), refusals of
malformed requests per stream, a graceful GOAWAY, and timeouts.
"""

from __future__ import annotations

from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import DenialOfServiceError, ProtocolError
from h2.settings import SettingCodes, Settings
from h2 import events as ev
from hpack.exceptions import HPACKError
from hyperframe.frame import GoAwayFrame

from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from playbalancer.flow import SendDeadline, keepsUp
from playbalancer.http2.budget import Budget
from playbalancer.http2.requests import StreamRequests

_log = Logger()

# The connection's states (see its docstring).
OPEN = "open"
GOING_AWAY = "going away"
DRAINING = "draining"
CLOSED = "closed"

#: The highest stream id: a first GOAWAY that refuses nothing yet.
_ANY_STREAM = 2**31 - 1
#: Seconds to wait for the answer to the PING sent with the first GOAWAY
#: before the second, which refuses the streams that come after it.
GOAWAY_PING_WAIT = 1.0
_GOAWAY_PING = b"pb-bye!!"
#: The initial window of a stream (the protocol's default), and the
#: largest window there is.
_STREAM_WINDOW = 65535
_MAX_WINDOW = 2**31 - 1
#: A WINDOW_UPDATE that opens less than this counts against the budget of
#: frames that do no work.
_TINY_WINDOW_UPDATE = 1024


def _goAway(lastStreamId, code=ErrorCodes.NO_ERROR):
    frame = GoAwayFrame(0)
    frame.last_stream_id = lastStreamId
    frame.error_code = code
    return frame.serialize()


def _undecodable(error):
    """
    Whether the library's C{error} is a header block that did not decode.
    """
    if isinstance(error, DenialOfServiceError):
        return False  # (an HPACK bomb: ENHANCE_YOUR_CALM, as the library says)
    cause = error.__cause__
    return isinstance(cause, (HPACKError, IndexError, TypeError, UnicodeDecodeError))


def _withGoAwayCode(data, code):
    """
    C{data}, framed by the library, with the error code of the GOAWAY that
    ends it replaced by C{code}.
    """
    if len(data) >= 17 and data[-14] == 0x7:
        start = len(data) - 4
        data = data[:start] + int(code).to_bytes(4, "big")
    return data


class H2FrontConnection(Protocol):
    """
    One HTTP/2 client connection.  Its C{state} is one of:
      - C{open}: streams come and go;
      - C{going away}: we are closing gracefully: a GOAWAY that refuses no
        stream yet went out with a PING; streams still start;
      - C{draining}: the final GOAWAY went out (the PING came back, or
        L{GOAWAY_PING_WAIT} passed, or the client sent its own GOAWAY):
        later streams are refused, and the connection closes when its last
        stream ends;
      - C{closed}: closing or closed.

    @param factory: the listener's
        L{playbalancer.http.front.HTTPFrontFactory}.
    """

    def __init__(self, factory):
        self.factory = factory
        self.settings = factory.settings
        self.state = OPEN
        self.h2 = None
        self.streams = {}
        #: Streams with response bytes waiting for a window, in order.
        self.waiting = {}
        self.lastStreamId = 0
        self.client = None
        self.secure = False
        self.transportPaused = False
        self.deadline = None
        self.fresh = True
        self.closing = False
        self._sendDeadline = None
        self._goAwayCall = None
        self._stalledStreams = 0

    # The connection

    def connectionMade(self):
        factory = self.factory
        settings = self.settings
        transport = self.transport
        self.secure = ISSLTransport.providedBy(transport)
        h2 = self.h2 = H2Connection(
            H2Configuration(
                client_side=False,
                header_encoding=None,
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        limits = settings.limits
        # A header list up to twice our limits is decoded, and refused by
        # the request-head rules (431); beyond that it is an HPACK bomb,
        # and the connection ends.
        h2.decoder.max_header_list_size = 2 * (limits.maxHeaderBytes + 32 * limits.maxHeaders)
        h2.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: settings.maxConcurrentStreams,
                SettingCodes.ENABLE_PUSH: 0,
            },
        )
        h2.initiate_connection()
        # The connection's window, shared by every stream, big enough for
        # each stream's own: a stream whose member is slow holds its own
        # window shut, not the others' (RFC 9113 section 5.2).
        h2.increment_flow_control_window(
            min(settings.maxConcurrentStreams * _STREAM_WINDOW, _MAX_WINDOW - _STREAM_WINDOW)
        )
        clock = factory.sweeper.clock
        floods = settings.floods
        self._resets = Budget(*floods.resets, clock)
        self._settingsBudget = Budget(*floods.settings, clock)
        self._pings = Budget(*floods.pings, clock)
        self._idle = Budget(*floods.idle, clock)
        self.requests = StreamRequests(self)
        transport.registerProducer(self, True)
        if settings.sendTimeout:
            self._sendDeadline = SendDeadline(transport, factory.sweeper, settings.sendTimeout)
        factory.connections.add(self)
        factory.accepted += 1
        factory.sweeper.watch(self)
        self.deadline = factory.sweeper.now + settings.headerTimeout
        self.flush()

    @property
    def ended(self):
        """
        Whether the connection is closing or closed.
        """
        return self.state == CLOSED

    def now(self):
        return self.factory.sweeper.clock.seconds()

    def dataReceived(self, data):
        if self.state == CLOSED:
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as e:
            # The library queued a GOAWAY naming the error.
            _log.debug("HTTP/2 client broke the protocol: {error}", error=e)
            self.factory.refused += 1
            if _undecodable(e):
                # RFC 7541 / RFC 9113 section 4.3 name this error
                # COMPRESSION_ERROR; the library says PROTOCOL_ERROR.
                self.transport.write(
                    _withGoAwayCode(self.h2.data_to_send(), ErrorCodes.COMPRESSION_ERROR)
                )
            self._end()
            return
        if events:
            self._handle(events)
        self.flush()

    def _handle(self, events):
        # Streams opened and reset in the same read are never started;
        # the priority a request's HEADERS carry is no PRIORITY frame.
        resetAtOnce = None
        inRequests = None
        for event in events:
            kind = type(event)
            if kind is ev.StreamReset:
                if resetAtOnce is None:
                    resetAtOnce = set()
                resetAtOnce.add(event.stream_id)
            elif kind is ev.RequestReceived and event.priority_updated is not None:
                if inRequests is None:
                    inRequests = set()
                inRequests.add(id(event.priority_updated))
        for event in events:
            if self.state == CLOSED:
                return
            kind = type(event)
            if kind is ev.RequestReceived:
                if resetAtOnce is not None and event.stream_id in resetAtOnce:
                    self.lastStreamId = max(self.lastStreamId, event.stream_id)
                    continue
                self._request(event)
            elif kind is ev.DataReceived:
                stream = self.streams.get(event.stream_id)
                if not event.data and not event.stream_ended and not self._spend(self._idle):
                    return
                if stream is not None:
                    stream.bodyData(event.data, event.flow_controlled_length)
                else:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif kind is ev.StreamEnded:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.bodyEnd()
            elif kind is ev.StreamReset:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.clientReset()
                if not self._spend(self._resets):
                    return
            elif kind is ev.WindowUpdated:
                # Tiny increments would have us send tiny frames, each
                # costing more than it carries ("data dribble").
                if event.delta < _TINY_WINDOW_UPDATE and not self._spend(self._idle):
                    return
                self._sendAllWaiting()
            elif kind is ev.RemoteSettingsChanged:
                if not self._spend(self._settingsBudget):
                    return
                self._sendAllWaiting()
            elif kind is ev.PingReceived:
                if not self._spend(self._pings):
                    return
            elif kind is ev.PingAckReceived:
                if event.ping_data == _GOAWAY_PING and self.state == GOING_AWAY:
                    self._finalGoAway()
            elif kind is ev.TrailersReceived:
                # (Not passed on; but a pseudo-header field there is
                # malformed: RFC 9113 section 8.1.)
                stream = self.streams.get(event.stream_id)
                if stream is not None and any(n[:1] == b":" for n, _ in event.headers):
                    if not self.streamFault(stream, ErrorCodes.PROTOCOL_ERROR):
                        return
            elif kind is ev.ConnectionTerminated:
                self._clientGoingAway()
            elif kind is ev.PriorityUpdated or kind is ev.UnknownFrameReceived:
                if inRequests is not None and id(event) in inRequests:
                    continue
                if not self._spend(self._idle):
                    return

    def _spend(self, budget):
        """
        Take one from C{budget}; when it is empty, end the connection with
        C{ENHANCE_YOUR_CALM}.

        @return: whether the connection goes on.
        """
        if budget.spend():
            return True
        _log.info(
            "HTTP/2 client {client} sent too many frames of a kind: connection closed",
            client=self.client or self._peer(),
        )
        self.factory.refused += 1
        self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM)
        self._end()
        return False

    # Requests

    def _peer(self):
        return getattr(self.transport.getPeer(), "host", None) or ""

    def _request(self, event):
        streamId = event.stream_id
        self.lastStreamId = max(self.lastStreamId, streamId)
        if self.state == DRAINING:
            self.h2.reset_stream(streamId, ErrorCodes.REFUSED_STREAM)
            return
        self.fresh = False
        self.deadline = None
        if self.client is None:
            self.client = self._peer()
        self.requests.start(streamId, event.headers, event.stream_ended)

    def streamFault(self, stream, code):
        """
        The client made us reset C{stream} (malformed, stalled): reset it
        with error C{code}, and count it as a stream the client reset.

        @return: whether the connection goes on.
        """
        stream.reset(code)
        return self._spend(self._resets)

    def spendOnRefusal(self):
        """
        A stream refused costs us an answer: a flood of them counts as
        streams reset would.

        @return: whether the connection goes on.
        """
        return self._spend(self._resets)

    # Sending

    def sendWaiting(self, stream):
        """
        C{stream} has response bytes: send what the windows allow, and
        remember it if some must wait.
        """
        if self.transportPaused:
            self.waiting[stream] = None
            return
        if stream.sendSome():
            self.waiting[stream] = None
        else:
            self.waiting.pop(stream, None)
        self.flush()

    def _sendAllWaiting(self):
        if self.transportPaused or not self.waiting:
            return
        waiting = self.waiting
        for stream in list(waiting):
            # Each stream served goes to the back, so that when the
            # connection's window runs out, the next round starts with the
            # streams this one did not reach.
            del waiting[stream]
            if stream.sendSome():
                waiting[stream] = None
            # Written stream by stream: once the transport's buffer is
            # full (it pauses us), the rest wait in their streams.
            self.flush()
            if self.transportPaused or self.h2.outbound_flow_control_window <= 0:
                break

    def flush(self):
        """
        Write what the library has framed.
        """
        data = self.h2.data_to_send()
        if data:
            self.transport.write(data)

    def keepsUp(self):
        return not self.transportPaused and keepsUp(self.transport)

    # The transport's producer: it pauses us while its buffer is full.

    def pauseProducing(self):
        self.transportPaused = True
        if self._sendDeadline is not None:
            self._sendDeadline.blocked()

    def resumeProducing(self):
        self.transportPaused = False
        if self._sendDeadline is not None:
            self._sendDeadline.flowing()
        if self.state != CLOSED:
            self._sendAllWaiting()
            self.flush()

    def stopProducing(self):
        pass

    # Streams, for L{H2Stream}

    def streamOver(self, stream):
        """
        Our side of C{stream} is over: forget it.
        """
        if self.streams.get(stream.streamId) is stream:
            del self.streams[stream.streamId]
        self.waiting.pop(stream, None)
        if not self.streams and self.state != CLOSED:
            if self.state == DRAINING:
                self.flush()
                self._close()
            else:
                self.deadline = self.factory.sweeper.now + self.settings.idleTimeout

    def watchStream(self, stream, watched):
        sweeper = self.factory.sweeper
        if watched:
            sweeper.watch(stream)
        else:
            sweeper.unwatch(stream)

    # Timeouts

    def expired(self):
        """
        No stream for the listener's C{idle_timeout} (or no preface within
        its C{header_timeout}): close, telling the client.
        """
        self.deadline = None
        if self.state == CLOSED:
            return
        if not self.streams:
            self.h2.close_connection(ErrorCodes.NO_ERROR)
            self._end()

    # Closing

    def closeGracefully(self, lingerIdle=False):
        """
        Close without cutting off a stream: a GOAWAY that refuses nothing
        yet, with a PING; once the PING comes back (a round trip: the
        client has seen the GOAWAY), a second that refuses the streams
        opened after it; then close when the last stream ends.  HTTP/2
        says which streams a GOAWAY refused, so the client can retry them
        elsewhere: no idle connection needs to linger (C{lingerIdle}).
        """
        self.closing = True
        if self.state != OPEN:
            return
        self.state = GOING_AWAY
        self.flush()
        self.transport.write(_goAway(_ANY_STREAM))
        self.h2.ping(_GOAWAY_PING)
        self.flush()
        clock = self.factory.sweeper.clock
        self._goAwayCall = clock.callLater(GOAWAY_PING_WAIT, self._finalGoAway)

    def _finalGoAway(self):
        if self._goAwayCall is not None and self._goAwayCall.active():
            self._goAwayCall.cancel()
        self._goAwayCall = None
        if self.state != GOING_AWAY:
            return
        self.state = DRAINING
        self.flush()
        self.transport.write(_goAway(self.lastStreamId))
        if not self.streams:
            self._close()

    def _clientGoingAway(self):
        """
        The client sent GOAWAY: it opens no more streams; those under way
        finish.
        """
        if self.state in (OPEN, GOING_AWAY):
            if self._goAwayCall is not None and self._goAwayCall.active():
                self._goAwayCall.cancel()
            self._goAwayCall = None
            self.state = DRAINING
        if not self.streams:
            self._end()
            return
        # The library takes a GOAWAY received as the end of everything and
        # would refuse to send the responses of the streams under way,
        # which RFC 9113 section 6.8 lets us finish.
        self.h2.state_machine.state = ConnectionState.SERVER_OPEN

    def _end(self):
        """
        End the connection now (what was framed, a GOAWAY with it, goes
        out first): every stream still under way is stopped.
        """
        for stream in list(self.streams.values()):
            stream.clientReset()
        self.flush()
        self._close()

    def _close(self):
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.deadline = None
        # (A transport with a producer registered does not close.)
        self.transport.unregisterProducer()
        self.transport.loseConnection()
        if self._sendDeadline is not None:
            self._sendDeadline.closing()

    def connectionLost(self, reason):
        factory = self.factory
        factory.connections.discard(self)
        factory.sweeper.unwatch(self)
        self.state = CLOSED
        if self._goAwayCall is not None and self._goAwayCall.active():
            self._goAwayCall.cancel()
        if self._sendDeadline is not None:
            self._sendDeadline.stop()
        for stream in list(self.streams.values()):
            stream.clientReset()
        self.streams.clear()
        self.waiting.clear()

