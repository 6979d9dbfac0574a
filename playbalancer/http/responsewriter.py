"""
The client side of an exchange on an HTTP/1.1 connection: writes the
response with HTTP/1.1 framing (I{Content-Length}, chunked, or until
close), decides keep-alive, and passes flow control between the exchange
and the connection.
"""

from __future__ import annotations

from zope.interface import implementer

from playbalancer.flow import SendDeadline, holdIfFull, keepsUp, pauses, stopPausing
from playbalancer.http.responses import plainBody, plainResponse
from playbalancer.interfaces import IClientSide
from playbalancer._net.sendnow import sendNow, sendSequenceNow


@implementer(IClientSide)
class ResponseWriter:
    """
    The L{IClientSide} of one L{playbalancer.http.front.FrontConnection},
    for one exchange at a time (L{begin}).

    A response head with a body is held back until the first body bytes
    come, to go out in one send with them (see L{readEnd}).

    @param sendTimeout: seconds the client may take no bytes while some
        wait for it, kept by C{sweeper} (a L{playbalancer.flow.SendDeadline}
        made when first needed); 0: no limit.

    An idle kept-alive connection holds as little as it can: the request
    is let go once its response is written, and the member that feeds a
    response is registered with the transport as a producer (see
    L{pauseWhileFull}) only once bytes wait for the client, which most
    responses never make.
    """

    def __init__(self, front, transport, accessLog, bufferSize, sweeper=None, sendTimeout=0):
        self.front = front
        self.transport = transport
        self.accessLog = accessLog
        self.bufferSize = bufferSize
        self.sweeper = sweeper
        self.sendTimeout = sendTimeout
        self._sendDeadline = None
        #: The connection's L{playbalancer.http.clienttunnel.ClientTunnel},
        #: once it became one.
        self.tunnel = None
        self.request = None
        self.keepAlive = True
        self.chunked = False
        self.held = None
        #: The producer of the response under way (L{pauseWhileFull}), and
        #: its L{playbalancer.flow.Pauser} once registered with the
        #: transport.
        self._feeder = None
        self._pauser = None

    @property
    def closing(self):
        return self.front.closing

    def begin(self, request):
        """
        Serve C{request} next.
        """
        self.request = request
        self.keepAlive = True
        self.chunked = False
        self.held = None

    def sendContinue(self):
        self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def sendInterim(self, status, reason, headers):
        if self.request.version != b"HTTP/1.1":
            return  # RFC 9110 15.2: never to an HTTP/1.0 client
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        for name, value in headers:
            parts.extend((name, b": ", value, b"\r\n"))
        parts.append(b"\r\n")
        sendNow(self.transport, b"".join(parts))

    def startResponse(self, status, reason, headers, length, keepAlive, upgrade=None):
        request = self.request
        keepAlive = keepAlive and request.keepAlive and not self.front.closing
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        for name, value in headers:
            parts.extend((name, b": ", value, b"\r\n"))
        if upgrade is not None:
            parts.append(b"Connection: upgrade\r\nUpgrade: " + upgrade + b"\r\n")
        else:
            if length is None:
                if request.version == b"HTTP/1.1":
                    parts.append(b"Transfer-Encoding: chunked\r\n")
                    self.chunked = True
                else:
                    keepAlive = False  # the body ends when we close
            elif length:
                parts.append(b"Content-Length: %d\r\n" % length)
            elif status >= 200 and status not in (204, 304) and request.method != b"HEAD":
                # An empty body: said, or a kept-alive HTTP/1.1 response
                # would end only when the connection does.
                parts.append(b"Content-Length: 0\r\n")
            if not keepAlive:
                parts.append(b"Connection: close\r\n")
            elif request.version == b"HTTP/1.0":
                parts.append(b"Connection: keep-alive\r\n")
        self.keepAlive = keepAlive
        parts.append(b"\r\n")
        if length != 0 and upgrade is None:
            self.held = b"".join(parts)
        else:
            sendNow(self.transport, b"".join(parts))

    def writeBody(self, data):
        transport = self.transport
        held = self.held
        if self.chunked:
            parts = [b"%x\r\n" % len(data), data, b"\r\n"]
            if held is not None:
                self.held = None
                parts.insert(0, held)
            queued = sendSequenceNow(transport, parts)
        elif held is not None:
            self.held = None
            queued = sendSequenceNow(transport, [held, data])
        else:
            queued = sendNow(transport, data)
        if queued:
            if (self._feeder is not None and self._pauser is None
                    and not getattr(transport, "disconnecting", False)):
                # (Not on a connection already closing: its close would
                # wait for a producer that nothing unregisters.)
                self._pauser = pauses(transport, self._feeder, self._deadline())
            holdIfFull(transport, self.bufferSize)

    def readEnd(self):
        held, self.held = self.held, None
        if held is not None:
            sendNow(self.transport, held)

    def finish(self):
        if self.chunked:
            held, self.held = self.held, None
            sendNow(self.transport, held + b"0\r\n\r\n" if held else b"0\r\n\r\n")
        else:
            self.readEnd()
        # (Before the connection goes on: it may begin the next request.)
        self.request = None
        self.front.responseDone(self.keepAlive)

    def respond(self, status, text, keepAlive=True, extra=()):
        request = self.request
        keepAlive = keepAlive and request.keepAlive and not self.front.closing
        self.keepAlive = keepAlive
        self.chunked = False
        self.held = None
        head = request.method == b"HEAD"
        sendNow(self.transport, plainResponse(status, text, keepAlive, head, extra))
        return 0 if head else len(plainBody(text))

    def abort(self):
        self.front.abort()

    def pauseProducing(self):
        self.front.pauseReading()

    def resumeProducing(self):
        self.front.resumeReading()

    def stopProducing(self):
        pass

    def pauseWhileFull(self, producer):
        """
        Pause C{producer} while too much waits for the client: it is
        registered with the transport when a write first leaves bytes
        waiting (L{writeBody}), not before.
        """
        self._feeder = producer
        self._pauser = None
        return producer

    def stopPausing(self, token):
        if token is not self._feeder:
            return  # an earlier response's: that one is undone already
        pauser = self._pauser
        self._feeder = self._pauser = None
        if pauser is not None:
            stopPausing(self.transport, pauser)

    def keepsUp(self):
        return keepsUp(self.transport)

    def startTunnel(self, exchange):
        self.tunnel = self.front.startTunnel(exchange)

    def tunnelActive(self):
        self.tunnel.active()

    def close(self):
        self.front.close()

    def _deadline(self):
        deadline = self._sendDeadline
        if deadline is None and self.sendTimeout:
            deadline = self._sendDeadline = SendDeadline(
                self.transport, self.sweeper, self.sendTimeout
            )
        return deadline

    def transportClosing(self):
        """
        The connection closes once what was written has gone out: the
        send deadline, if any, now covers that.
        """
        deadline = self._deadline()
        if deadline is not None:
            deadline.closing()

    def connectionLost(self):
        if self._sendDeadline is not None:
            self._sendDeadline.stop()
