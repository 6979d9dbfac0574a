"""
The access log of an HTTP listener: one line per request in the combined
log format, plus the member, its status, time to its first byte, total
time, retries and the request id.

Lines are buffered and written at most every second (or every 64 KiB), so
the reactor does not wait on the disk for each request; C{SIGUSR1} reopens
the file after logrotate moved it, without losing buffered lines.  On
standard output (C{"-"}) there is nothing to reopen, and lines are written
in pieces of at most C{PIPE_BUF} bytes, whole lines each, so several worker
processes sharing one pipe do not mix their lines.
"""

from __future__ import annotations

import select
import signal
import sys
import time

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = ["AccessLog", "ReopenOnSignal"]

# The namespace it had before the move to observe/, for log filters.
_log = Logger(namespace="playbalancer.accesslog")

_FLUSH_BYTES = 65536
#: Bytes a pipe takes in one write without mixing them with other writers'.
_ATOMIC_BYTES = getattr(select, "PIPE_BUF", 512)

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _quoted(value):
    """
    A header value for a quoted log field: quotes, backslashes and control
    bytes escaped, so a client cannot forge log lines.
    """
    if value is None:
        return "-"
    text = value.decode("latin-1")
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(
        c if c.isprintable() and c not in '"\\' else "\\x%02x" % ord(c) for c in text
    )


class AccessLog:
    """
    Writes access log lines to a file (or standard output).

    @param path: the file's path, or C{"-"} for standard output.
    """

    def __init__(self, path, clock):
        self.path = path
        self.clock = clock
        self._file = None
        self._pending = []
        self._pendingBytes = 0
        self._stampSecond = None
        self._stamp = ""
        #: Closed (the balancer is stopping): lines of the requests that
        #: still finish are written at once, each on its own.
        self._closed = False

    @classmethod
    def open(cls, path, clock):
        log = cls(path, clock)
        log.reopen()
        return log

    def reopen(self):
        """
        Write out what is buffered and open the path again (after
        logrotate renamed the file).
        """
        self.flush()
        self._closed = False
        if self.path == "-":
            if self._file is None:
                self._file = _standardOutput()
            return
        new = open(self.path, "ab")
        if self._file is not None:
            self._file.close()
        self._file = new

    def _timestamp(self, now):
        second = int(now)
        if second != self._stampSecond:
            self._stampSecond = second
            t = time.gmtime(second)
            self._stamp = "%02d/%s/%04d:%02d:%02d:%02d +0000" % (
                t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min, t.tm_sec
            )
        return self._stamp

    def request(
        self, request, status, sent, member, memberStatus, firstByte, total, retries, route=None
    ):
        """
        Log one request.

        @param request: the L{playbalancer.http.wire.RequestHead}.
        @param sent: body bytes sent to the client.
        @param member: the member's name, or L{None}.
        @param route: the name of the route it took, or L{None}.
        """
        line = '%s - - [%s] "%s %s %s" %d %d "%s" "%s" member=%s upstream_status=%s ttfb=%s total=%.3f retries=%d request_id=%s route=%s\n' % (
            request.client or "-",
            self._timestamp(self.clock.seconds()),
            _quoted(request.method),
            _quoted(request.mountPath + request.target if request.mountPath else request.target),
            request.version.decode("ascii"),
            status,
            sent,
            _quoted(request.getHeader(b"referer")),
            _quoted(request.getHeader(b"user-agent")),
            member or "-",
            memberStatus or "-",
            "-" if firstByte is None else "%.3f" % firstByte,
            total,
            retries,
            _quoted(request.requestId),
            route or "-",
        )
        self.write(line.encode("utf-8", "replace"))

    def refused(self, client, status, reason):
        """
        Log a request refused before its head was read whole (or before
        we knew its route).
        """
        line = '%s - - [%s] "-" %d 0 "-" "-" refused="%s"\n' % (
            client or "-",
            self._timestamp(self.clock.seconds()),
            status,
            reason.replace('"', "'"),
        )
        self.write(line.encode("utf-8", "replace"))

    def write(self, line):
        if self._closed:
            self._writeNow(line)
            return
        self._pending.append(line)
        self._pendingBytes += len(line)
        if self._pendingBytes >= _FLUSH_BYTES:
            self.flush()

    def flush(self):
        """
        Write out the buffered lines.
        """
        if not self._pending or self._file is None:
            return
        data = b"".join(self._pending)
        self._pending = []
        self._pendingBytes = 0
        if self.path == "-":
            for piece in _wholeLines(data, _ATOMIC_BYTES):
                self._file.write(piece)
                self._file.flush()
            return
        self._file.write(data)
        self._file.flush()

    def close(self):
        """
        Write out what is buffered and close the file.  Requests still
        under way (a graceful stop lets them finish after the log service
        stopped) are logged all the same, a line at a time.
        """
        self.flush()
        if self._file is not None and self.path != "-":
            self._file.close()
        self._file = None
        self._closed = True

    def _writeNow(self, line):
        if self.path == "-":
            out = _standardOutput()
            out.write(line)
            out.flush()
            return
        try:
            with open(self.path, "ab") as f:
                f.write(line)
        except OSError:
            pass  # (stopping: nowhere left to say so)


def _standardOutput():
    """
    The binary stream under standard output (also once twistd replaced
    C{sys.stdout} with a logging file).
    """
    stream = getattr(sys.stdout, "buffer", None)
    return stream if stream is not None else sys.__stdout__.buffer


def _wholeLines(data, size):
    """
    C{data} cut at line ends into pieces of at most C{size} bytes (a longer
    line is a piece of its own).
    """
    start = 0
    while start < len(data):
        end = start + size
        if end < len(data):
            cut = data.rfind(b"\n", start, end)
            end = cut + 1 if cut >= start else data.find(b"\n", end) + 1 or len(data)
        yield data[start:end]
        start = end


class ReopenOnSignal(Service):
    """
    While running: flushes the access log every second, reopens it on
    C{SIGUSR1}, and closes it when stopped.
    """

    def __init__(self, log, reactor, interval=1.0):
        self.log = log
        self.reactor = reactor
        self.interval = interval
        self._loop = None
        self._previous = None

    def startService(self):
        Service.startService(self)
        self._loop = LoopingCall(self.log.flush)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=False)
        try:
            self._previous = signal.signal(signal.SIGUSR1, self._signalled)
        except ValueError:  # not the main thread (tests)
            self._previous = None

    def _signalled(self, number, frame):
        self.reactor.callFromThread(self.reopen)
        if callable(self._previous):
            self._previous(number, frame)

    def reopen(self):
        """
        Reopen the log, and say so (or why not) in the log.
        """
        try:
            self.log.reopen()
        except Exception:
            _log.failure("access log {path}: could not reopen it", path=self.log.path)
            return
        what = "standard output: nothing to reopen" if self.log.path == "-" else "reopened"
        _log.info("access log {path}: {what}", path=self.log.path, what=what)

    def stopService(self):
        Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._previous is not None:
            signal.signal(signal.SIGUSR1, self._previous)
        self.log.close()
