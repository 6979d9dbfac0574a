#!/usr/bin/env python3
"""
What happens to each stream of one HTTP/2 connection when the server is
signalled (an upgrade, a reload): the frame-level check behind
benchmarks/h2reload.py, whose h2load counts a GOAWAY's effect on the
requests it has not sent as failures.

One TLS connection (ALPN h2) to 127.0.0.1:PORT keeps STREAMS requests
(GET PATH) open at once; after AFTER seconds the PID in PIDFILE gets the
signal; from the server's first GOAWAY on (or WAIT seconds after the
signal, when the connection is kept) no new stream is opened, and the
script reads until the server closes the connection, every stream is
answered, or 15 s pass without a frame.  It then prints the streams sent, answered (END_STREAM
seen), reset (RST_STREAM, with its code) and left unanswered, the GOAWAY
frames (last stream id, error code, when, streams open then), and how
many unanswered streams were above the last GOAWAY's id (refused: never
processed, so a client may retry them).  Exit status 0 when every stream
sent was answered.

    python benchmarks/h2goaway.py --port 8443 --pidfile /run/playbalancer.pid --signal USR2

Frames are made and read with hyperframe and hpack (the h2 library's own,
so use the interpreter that has playbalancer): a client's h2 state machine
closes at the first GOAWAY and could not follow a two-step one.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import ssl
import sys
import time

from hpack import Encoder
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Client:
    """
    The connection's state: the streams sent, open, answered and reset,
    and the GOAWAY frames received.
    """

    def __init__(self, sock, path, streams):
        self.sock = sock
        self.path = path
        self.streams = streams
        self.encoder = Encoder()
        self.nextId = 1
        self.sent = 0
        self.open = set()
        self.answered = set()
        self.reset = {}
        self.goaways = []
        self.stopped = False
        self.began = time.monotonic()

    def newStreams(self):
        """
        HEADERS frames for new requests up to C{streams} open, none after a
        GOAWAY.
        """
        out = b""
        while len(self.open) < self.streams and not self.goaways and not self.stopped:
            frame = HeadersFrame(self.nextId, flags=["END_HEADERS", "END_STREAM"])
            frame.data = self.encoder.encode([(":method", "GET"), (":scheme", "https"),
                                              (":path", self.path), (":authority", "localhost")])
            out += frame.serialize()
            self.open.add(self.nextId)
            self.nextId += 2
            self.sent += 1
        return out

    def onFrame(self, frame, length):
        """
        Note what C{frame} says; return the bytes to answer it with.
        """
        out = b""
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            out += SettingsFrame(0, flags=["ACK"]).serialize()
        elif isinstance(frame, PingFrame) and "ACK" not in frame.flags:
            ack = PingFrame(0, flags=["ACK"])
            ack.opaque_data = frame.opaque_data
            out += ack.serialize()
        elif isinstance(frame, DataFrame) and length:
            # (responses are small: the streams' own windows suffice)
            out += WindowUpdateFrame(0, window_increment=length).serialize()
        elif isinstance(frame, GoAwayFrame):
            self.goaways.append({"last_stream_id": frame.last_stream_id,
                                 "error_code": frame.error_code,
                                 "at_s": round(time.monotonic() - self.began, 3),
                                 "open": len(self.open)})
        elif isinstance(frame, RstStreamFrame):
            self.reset[frame.stream_id] = frame.error_code
            self.open.discard(frame.stream_id)
        if isinstance(frame, (HeadersFrame, DataFrame)) and "END_STREAM" in frame.flags:
            self.answered.add(frame.stream_id)
            self.open.discard(frame.stream_id)
        return out


def run(args):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", args.port), timeout=15),
                               server_hostname="localhost")
    if sock.selected_alpn_protocol() != "h2":
        raise SystemExit(f"the server chose {sock.selected_alpn_protocol()!r}, not h2")
    client = Client(sock, args.path, args.streams)
    sock.sendall(PREFACE + SettingsFrame(0).serialize() + client.newStreams())
    signalled, buffered, closedByServer = False, b"", False
    while True:
        if not signalled and time.monotonic() - client.began > args.after:
            with open(args.pidfile) as f:
                os.kill(int(f.read().strip()), getattr(signal, "SIG" + args.signal))
            signalled = True
        if signalled and time.monotonic() - client.began > args.after + args.wait:
            client.stopped = True
            if not client.open:
                break
        try:
            data = sock.recv(65536)
        except (socket.timeout, OSError) as e:
            print(f"no more frames: {e}")
            break
        if not data:
            closedByServer = True
            break
        buffered += data
        out = b""
        while len(buffered) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(buffered[:9]))
            if len(buffered) < 9 + length:
                break
            frame.parse_body(memoryview(buffered[9:9 + length]))
            buffered = buffered[9 + length:]
            out += client.onFrame(frame, length)
        out += client.newStreams()
        if out:
            try:
                sock.sendall(out)
            except OSError:
                pass
    last = client.goaways[-1]["last_stream_id"] if client.goaways else None
    refused = sum(1 for s in client.open if last is not None and s > last)
    print(f"sent {client.sent}, answered {len(client.answered)}, reset {len(client.reset)} "
          f"{client.reset or ''}, unanswered {len(client.open)} (refused, above the last "
          f"GOAWAY's id: {refused}); connection closed by the server: {closedByServer}")
    for goaway in client.goaways:
        print(f"GOAWAY last_stream_id {goaway['last_stream_id']}, error code "
              f"{goaway['error_code']}, at {goaway['at_s']} s, {goaway['open']} streams open")
    return 0 if client.sent == len(client.answered) else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="the TLS listener on 127.0.0.1")
    parser.add_argument("--pidfile", required=True, help="the server's PID file")
    parser.add_argument("--signal", default="USR2", choices=("USR2", "HUP", "TERM"))
    parser.add_argument("--after", type=float, default=1.0, help="seconds before the signal")
    parser.add_argument("--wait", type=float, default=5.0,
                        help="seconds after the signal to go on opening streams when no "
                             "GOAWAY comes (default 5)")
    parser.add_argument("--streams", type=int, default=50, help="streams open at once")
    parser.add_argument("--path", default="/")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
