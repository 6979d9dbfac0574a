"""
Reopening the access log, and writing it to standard output: in memory.
"""

from __future__ import annotations

import io
import sys

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.observe import accesslog
from playbalancer.observe.accesslog import AccessLog, ReopenOnSignal, _wholeLines


class _Recording(io.BytesIO):
    def __init__(self):
        io.BytesIO.__init__(self)
        self.writes = []

    def write(self, data):
        self.writes.append(bytes(data))
        return io.BytesIO.write(self, data)


class StandardOutputTests(SynchronousTestCase):
    def test_reopenIsANoOp(self):
        """
        With twistd's logging file as C{sys.stdout} (no C{buffer}),
        reopening C{"-"} does nothing and lines keep going where they went.
        """
        out = _Recording()
        self.patch(sys, "stdout", io.TextIOWrapper(out))
        log = AccessLog.open("-", Clock())
        self.patch(sys, "stdout", object())
        log.reopen()
        log.write(b"one\n")
        log.flush()
        self.assertEqual(out.getvalue(), b"one\n")

    def test_piecesOfWholeLines(self):
        """
        On standard output, a flush is written in pieces of whole lines of
        at most C{PIPE_BUF} bytes, so workers sharing a pipe do not mix
        lines.
        """
        out = _Recording()
        self.patch(sys, "stdout", io.TextIOWrapper(out))
        log = AccessLog.open("-", Clock())
        lines = [b"%04d " % i + b"x" * 200 + b"\n" for i in range(100)]
        for line in lines:
            log.write(line)
        log.flush()
        self.assertEqual(out.getvalue(), b"".join(lines))
        self.assertGreater(len(out.writes), 1)
        for piece in out.writes:
            self.assertLessEqual(len(piece), accesslog._ATOMIC_BYTES)
            self.assertTrue(piece.endswith(b"\n"))

    def test_wholeLines(self):
        data = b"a\nbb\n" + b"c" * 10 + b"\nd\n"
        self.assertEqual(list(_wholeLines(data, 6)), [b"a\nbb\n", b"c" * 10 + b"\n", b"d\n"])
        self.assertEqual(list(_wholeLines(b"abc", 2)), [b"abc"])
        self.assertEqual(b"".join(_wholeLines(data, 1)), data)


class ReopenFileTests(SynchronousTestCase):
    def test_failedReopenKeepsOldFile(self):
        """
        When the path cannot be opened again, the log keeps writing to the
        file it had.
        """
        path = self.mktemp()
        log = AccessLog.open(path, Clock())
        log.path = self.mktemp() + "/missing/dir"
        self.assertRaises(OSError, log.reopen)
        log.write(b"still\n")
        log.flush()
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"still\n")


class AfterCloseTests(SynchronousTestCase):
    def test_lineAfterCloseWrittenAtOnce(self):
        """
        Once closed (the balancer is stopping), a line is written at once,
        not buffered for a flush that will not come.
        """
        path = self.mktemp()
        log = AccessLog.open(path, Clock())
        log.write(b"one\n")
        log.close()
        log.write(b"two\n")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"one\ntwo\n")


class NamespaceTests(SynchronousTestCase):
    def test_linesKeepTheirNamespace(self):
        """
        The access log's own log lines keep the namespace they had before
        the module moved, C{playbalancer.accesslog}, for log filters.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        log = AccessLog.open(self.mktemp(), Clock())
        self.addCleanup(log.close)
        ReopenOnSignal(log, Clock()).reopen()
        mine = [e for e in events if e.get("log_format", "").startswith("access log")]
        self.assertEqual([e["log_namespace"] for e in mine], ["playbalancer.accesslog"])
