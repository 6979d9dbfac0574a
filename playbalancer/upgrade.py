"""
The binary upgrade: C{kill -USR2}, C{playbalancer upgrade} or C{POST
/api/upgrade} start a new balancer process (new code, new interpreter,
the same command line) on this one's listening sockets (see
L{playbalancer.handover}).  Once the new one serves, this one stops
accepting, lets its requests in flight finish (up to C{shutdown_grace})
and exits; the sockets never close, so no connection is refused.  A new
process that fails to start leaves this one serving, and says why.

The PID file: this process renames it to C{<pidfile>.oldbin} while the
new one starts (as nginx does), back if the new one fails; the new one
writes its own, and writes it again once this one has exited (twistd
removes the PID file as it exits).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from playbalancer.handover import ENVIRONMENT, environmentFor

_log = Logger()

#: Seconds the new process has to say it serves.
READY_TIMEOUT = 60.0


@dataclass
class UpgradeResult:
    ok: bool
    pid: int = None
    error: str = ""

    def asJSON(self):
        result = {"ok": self.ok, "old": os.getpid()}
        result.update({"pid": self.pid} if self.ok else {"error": self.error})
        return result


def pidfileOf(argv):
    """
    The PID file twistd was told to write (C{--pidfile}; by default
    C{twistd.pid}), or L{None} for none (C{--pidfile=}).
    """
    path = "twistd.pid"
    for index, arg in enumerate(argv):
        if arg.startswith("--pidfile="):
            path = arg.split("=", 1)[1]
        elif arg == "--pidfile" and index + 1 < len(argv):
            path = argv[index + 1]
        elif arg == "playbalancer":
            break
    return os.path.abspath(path) if path else None


class _NewProcess(ProcessProtocol):
    """
    The new process: reads its report lines (see L{playbalancer.handover}).
    """

    def __init__(self, upgrader, reportFD):
        self.upgrader = upgrader
        self.reportFD = reportFD
        self.pid = None
        self._buffer = b""

    def childDataReceived(self, fd, data):
        if fd != self.reportFD:
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            word, _, rest = line.decode("utf-8", "replace").partition(" ")
            if word == "pid":
                self.pid = int(rest)
            elif word == "ready":
                self.upgrader._ready(self.pid)
            elif word == "failed":
                self.upgrader._failed(rest)

    def childConnectionLost(self, fd):
        if fd == self.reportFD:
            self.upgrader._failed("the new process ended before it served (see its log)")


class Upgrader:
    """
    Starts the new process and hands over to it (see the module
    docstring), one upgrade at a time.

    @param running: the L{playbalancer.running.Running} whose listeners
        (and the C{others}, the manager's) are handed over.
    @param snapshot: gives the member state to hand over.
    @param stop: called once the new process serves (C{reactor.stop}: a
        graceful stop of this process).
    """

    def __init__(self, running, reactor, snapshot, stop, argv=None, timeout=READY_TIMEOUT):
        self.running = running
        self.reactor = reactor
        self.snapshot = snapshot
        self.stop = stop
        self.argv = sys.argv if argv is None else argv
        self.timeout = timeout
        self._current = None

    def command(self):
        """
        The new process's command line: twistd under this interpreter's
        path (a new interpreter there is the one started), with this
        process's arguments.
        """
        from playbalancer.demo import TWISTD

        return [sys.executable, "-c", TWISTD] + list(self.argv[1:])

    def upgrade(self, who="signal"):
        """
        Start the new process; a L{Deferred} firing with an
        L{UpgradeResult} once it serves or failed.
        """
        if self._current is not None:
            return succeed(UpgradeResult(False, error="an upgrade is already under way"))
        _log.info("upgrade by {who}: starting a new process", who=who)
        self._current = Deferred()
        self._done = False
        current = self._current
        try:
            self._start()
        except Exception as e:
            self._failed(f"cannot start the new process: {e}")
        return current

    def _start(self):
        listeners = self.running.listeningSockets()
        fd, self._statePath = tempfile.mkstemp(prefix="playbalancer-handover-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.snapshot(), f)
        self._pidfile = pidfileOf(self.argv)
        self._movedPidfile = False
        if self._pidfile and _holds(self._pidfile, os.getpid()):
            os.rename(self._pidfile, self._pidfile + ".oldbin")
            self._movedPidfile = True
        fds = sorted({fd for group in listeners.values() for fd in group})
        reportFD = max(fds + [2]) + 1
        childFDs = {0: 0, 1: 1, 2: 2, reportFD: "r"}
        for fd in fds:
            childFDs[fd] = fd
        env = dict(os.environ)
        env[ENVIRONMENT] = environmentFor(listeners, self._statePath, reportFD, self._pidfile)
        self._process = _NewProcess(self, reportFD)
        self.reactor.spawnProcess(
            self._process, sys.executable, self.command(), env=env, childFDs=childFDs
        )
        self._timer = self.reactor.callLater(self.timeout, self._tooSlow)

    def _tooSlow(self):
        self._timer = None
        pid = self._process.pid
        if pid is not None:
            try:
                os.kill(pid, 15)
            except OSError:
                pass
        self._failed(f"the new process did not serve within {self.timeout:g} s; stopped it")

    def _finish(self, result):
        if self._done:
            return
        self._done = True
        if getattr(self, "_timer", None) is not None and self._timer.active():
            self._timer.cancel()
        current, self._current = self._current, None
        current.callback(result)

    def _ready(self, pid):
        if self._done:
            return
        _log.info(
            "upgrade: the new process (PID {pid}) serves; this one (PID {old}) stops "
            "accepting and exits once its requests in flight finish",
            pid=pid,
            old=os.getpid(),
            playbalancer_event="upgrade.ready",
        )
        if self._movedPidfile:
            oldbin = self._pidfile + ".oldbin"
            self.reactor.addSystemEventTrigger("after", "shutdown", _unlink, oldbin)
        self._finish(UpgradeResult(True, pid=pid))
        self.reactor.callLater(0, self.stop)

    def _failed(self, why):
        if self._done:
            return
        _log.error(
            "upgrade failed, this process serves on: {why}",
            why=why,
            playbalancer_event="upgrade.failed",
        )
        if getattr(self, "_movedPidfile", False):
            try:
                os.rename(self._pidfile + ".oldbin", self._pidfile)
            except OSError:
                pass
        if getattr(self, "_statePath", None):
            _unlink(self._statePath)
        self._finish(UpgradeResult(False, error=why))


def _holds(path, pid):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) == pid
    except (OSError, ValueError):
        return False


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass
