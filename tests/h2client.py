"""
An HTTP/2 client for tests, on the C{h2} library's client side over a
real connection: it sends what a test tells it (requests, resets, pings,
settings, raw frames) and records every event the server's frames make.
"""

from __future__ import annotations

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2 import events as ev
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import CertificateOptions

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Response:
    """
    What came back on one stream.
    """

    def __init__(self):
        self.status = None
        self.headers = []
        self.body = b""
        self.ended = False
        self.reset = None
        self.done = defer.Deferred()

    def header(self, name):
        for key, value in self.headers:
            if key == name:
                return value
        return None


class H2TestClient(Protocol):
    """
    @param acknowledge: whether to open the window again for the data
        received (L{False}: a client that stops taking the response).
    """

    def __init__(self, acknowledge=True, settings=None, validate=False):
        self.h2 = H2Connection(
            H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=validate,
                normalize_outbound_headers=False,
                validate_inbound_headers=False,
            )
        )
        self.acknowledge = acknowledge
        self.initialSettings = settings
        self.responses = {}
        self.events = []
        self.goAway = None
        self.lost = defer.Deferred()
        self.closed = False
        self.negotiated = None
        self._frames = b""
        self.goAwayFrames = []
        self.paced = {}
        self.sent = {}

    def connectionMade(self):
        self.h2.initiate_connection()
        if self.initialSettings:
            self.h2.update_settings(self.initialSettings)
        self.flush()

    def flush(self):
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.transport.write(data)

    def request(
        self, method, path, headers=(), body=None, authority=b"localhost", end=None, priority=False
    ):
        """
        Start a request; its L{Response} fills in as frames come.
        """
        streamId = self.h2.get_next_available_stream_id()
        fields = [
            (b":method", method),
            (b":scheme", b"https"),
            (b":path", path),
            (b":authority", authority),
        ]
        fields.extend(headers)
        response = self.responses[streamId] = Response()
        response.streamId = streamId
        extra = {"priority_weight": 16, "priority_depends_on": 0} if priority else {}
        self.h2.send_headers(
            streamId, fields, end_stream=body is None if end is None else end, **extra
        )
        if body is not None:
            self.sendBody(streamId, body, end=True if end is None else end)
        self.flush()
        return response

    def sendBody(self, streamId, body, end=True):
        h2 = self.h2
        view = memoryview(body)
        while view:
            size = min(len(view), h2.max_outbound_frame_size, h2.local_flow_control_window(streamId))
            if size <= 0:
                raise RuntimeError("no window to send in (use sendBodyPaced)")
            h2.send_data(streamId, view[:size].tobytes())
            view = view[size:]
        if end:
            h2.end_stream(streamId)
        self.flush()

    def sendBodyPaced(self, streamId, size, piece=b"u" * 16384):
        """
        Send C{size} bytes of body on C{streamId} as the server's windows
        let it, going on as it opens them (L{sent} counts them).
        """
        self.paced[streamId] = [size, piece]
        self.sent.setdefault(streamId, 0)
        self._sendPaced()

    def _sendPaced(self):
        h2 = self.h2
        for streamId, (left, piece) in list(self.paced.items()):
            while left:
                try:
                    window = h2.local_flow_control_window(streamId)
                except Exception:
                    left = 0
                    break
                size = min(left, window, h2.max_outbound_frame_size, len(piece))
                if size <= 0:
                    break
                h2.send_data(streamId, piece[:size], end_stream=size == left)
                left -= size
                self.sent[streamId] += size
            if left:
                self.paced[streamId][0] = left
            else:
                del self.paced[streamId]
        self.flush()

    def write(self, data):
        """
        Raw bytes, after whatever the library framed.
        """
        self.flush()
        self.transport.write(data)

    def dataReceived(self, data):
        # GOAWAY frames are kept from the library (it would refuse the
        # frames of the streams a graceful GOAWAY lets finish).
        buffered = self._frames + data
        passed = []
        while len(buffered) >= 9:
            length = int.from_bytes(buffered[:3], "big")
            if len(buffered) < 9 + length:
                break
            frame, buffered = buffered[: 9 + length], buffered[9 + length :]
            if frame[3] == 0x7:
                last = int.from_bytes(frame[9:13], "big") & 0x7FFFFFFF
                self.goAwayFrames.append((last, int.from_bytes(frame[13:17], "big")))
            else:
                passed.append(frame)
        self._frames = buffered
        try:
            events = self.h2.receive_data(b"".join(passed))
        except Exception as e:  # the server broke the protocol: a test failure
            self.events.append(e)
            self.transport.loseConnection()
            return
        for event in events:
            self.events.append(event)
            response = self.responses.get(getattr(event, "stream_id", None))
            if isinstance(event, ev.ResponseReceived):
                response.headers = event.headers
                response.status = int(dict(event.headers)[b":status"])
            elif isinstance(event, ev.InformationalResponseReceived):
                response.interim = getattr(response, "interim", []) + [event.headers]
            elif isinstance(event, ev.DataReceived):
                if response is not None:
                    response.body += event.data
                if self.acknowledge:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, ev.StreamEnded) and response is not None:
                response.ended = True
                response.done.callback(response)
            elif isinstance(event, ev.StreamReset) and response is not None:
                response.reset = event.error_code
                if not response.done.called:
                    response.done.callback(response)
            elif isinstance(event, ev.ConnectionTerminated):
                self.goAway = event
        if self.paced:
            self._sendPaced()
        self.flush()

    def goAways(self):
        """
        Every GOAWAY received: C{(last_stream_id, error_code)} pairs.
        """
        return list(self.goAwayFrames)

    def connectionLost(self, reason):
        self.closed = True
        for response in self.responses.values():
            if not response.done.called:
                response.done.callback(response)
        self.lost.callback(reason.value)


def connectH2(port, tls=True, **kwargs):
    """
    A connected L{H2TestClient} (over TLS by ALPN C{h2}, or cleartext with
    prior knowledge) to 127.0.0.1:C{port}.
    """
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    if tls:
        options = CertificateOptions(verify=False, acceptableProtocols=[b"h2"])
        endpoint = wrapClientTLS(options, endpoint)
    return connectProtocol(endpoint, H2TestClient(**kwargs))
