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

from playbalancer.atomicfile import replaceFile
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
    The new process of one L{_Attempt}: reads its report lines (see
    L{playbalancer.handover}).
    """

    def __init__(self, attempt, reportFD):
        self.attempt = attempt
        self.reportFD = reportFD
        #: The PID it reported (after twistd daemonized, its own).
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
                self.attempt.ready(self.pid)
            elif word == "failed":
                self.attempt.failed(rest)

    def childConnectionLost(self, fd):
        if fd == self.reportFD:
            self.attempt.failed("the new process ended before it served (see its log)")

    def knownPid(self):
        """
        The new process's PID: the one it reported, else the one started.
        """
        if self.pid is not None:
            return self.pid
        return getattr(getattr(self, "transport", None), "pid", None)


class _Attempt:
    """
    One upgrade: its new process, state file, PID file and outcome.
    """

    def __init__(self, upgrader):
        self.upgrader = upgrader
        self.reactor = upgrader.reactor
        self.done = False
        self.result = Deferred()
        self.statePath = None
        self.pidfile = None
        self.movedPidfile = False
        self.timer = None
        self.process = None

    def start(self):
        upgrader = self.upgrader
        listeners = upgrader.running.listeningSockets()
        fd, self.statePath = tempfile.mkstemp(
            prefix="playbalancer-handover-", suffix=".json", dir=upgrader.stateDirectory()
        )
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(upgrader.snapshot(), f)
        self.pidfile = pidfileOf(upgrader.argv)
        me = os.getpid()
        if self.pidfile and _holds(self.pidfile, me):
            os.rename(self.pidfile, self.pidfile + ".oldbin")
            self.movedPidfile = True
        elif self.pidfile and not os.path.exists(self.pidfile):
            # Ours, but not there just now (the process this one replaced
            # removed it as it exited): the .oldbin says whose it is.
            replaceFile(self.pidfile + ".oldbin", f"{me}\n".encode("ascii"))
            self.movedPidfile = True
        fds = sorted({fd for group in listeners.values() for fd in group})
        reportFD = max(fds + [2]) + 1
        childFDs = {0: 0, 1: 1, 2: 2, reportFD: "r"}
        for fd in fds:
            childFDs[fd] = fd
        env = dict(os.environ)
        env[ENVIRONMENT] = environmentFor(listeners, self.statePath, reportFD, self.pidfile)
        self.process = _NewProcess(self, reportFD)
        self.reactor.spawnProcess(
            self.process,
            sys.executable,
            upgrader.command(),
            env=env,
            childFDs=childFDs,
            path=upgrader.cwd,
        )
        self.timer = self.reactor.callLater(upgrader.timeout, self._tooSlow)

    def _tooSlow(self):
        self.timer = None
        pid = self.process.knownPid()
        if pid is not None:
            try:
                os.kill(pid, 15)
            except OSError:
                pass
        self.failed(
            f"the new process did not serve within {self.upgrader.timeout:g} s; stopped it"
        )

    def _finish(self, result, handedOver=False):
        self.done = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.upgrader._ended(self, handedOver)
        self.result.callback(result)

    def ready(self, pid):
        if self.done:
            return
        _log.info(
            "upgrade: the new process (PID {pid}) serves; this one (PID {old}) stops "
            "accepting and exits once its requests in flight finish",
            pid=pid,
            old=os.getpid(),
            playbalancer_event="upgrade.ready",
        )
        if self.movedPidfile:
            # (Unless a later upgrade's old process moved its own there.)
            oldbin = self.pidfile + ".oldbin"
            self.reactor.addSystemEventTrigger("after", "shutdown", _unlinkIfHolds, oldbin)
        self.upgrader.running.handingOver()
        self._finish(UpgradeResult(True, pid=pid), handedOver=True)
        self.reactor.callLater(0, self.upgrader.stop)

    def failed(self, why):
        if self.done:
            return
        _log.error(
            "upgrade failed, this process serves on: {why}",
            why=why,
            playbalancer_event="upgrade.failed",
        )
        if self.movedPidfile:
            self._restorePidfile()
            # twistd removes the PID file as the new process exits: put
            # it back once that one is gone.
            pid = self.process.knownPid() if self.process is not None else None
            if pid is not None:
                self._watchUntilGone(pid)
        if self.statePath:
            _unlink(self.statePath)
        self._finish(UpgradeResult(False, error=why))

    def _restorePidfile(self):
        oldbin = self.pidfile + ".oldbin"
        try:
            if os.path.exists(oldbin):
                os.rename(oldbin, self.pidfile)
            elif not _holds(self.pidfile, os.getpid()):
                replaceFile(self.pidfile, f"{os.getpid()}\n".encode("ascii"))
        except OSError:
            pass

    def _watchUntilGone(self, pid, tries=600):
        from playbalancer.handover import alive

        if alive(pid) and tries > 0:
            self.reactor.callLater(0.1, self._watchUntilGone, pid, tries - 1)
        else:
            self._restorePidfile()


class Upgrader:
    """
    Starts the new process and hands over to it (see the module
    docstring), one upgrade at a time.

    @param running: the L{playbalancer.running.Running} whose listeners
        (and the C{others}, the manager's) are handed over.
    @param snapshot: gives the member state to hand over.
    @param stop: called once the new process serves (C{reactor.stop}: a
        graceful stop of this process).
    @param cwd: the directory the new process starts in (where this one
        started: its command line's relative paths are relative to it).
    """

    def __init__(
        self, running, reactor, snapshot, stop, argv=None, timeout=READY_TIMEOUT, cwd=None
    ):
        self.running = running
        self.reactor = reactor
        self.snapshot = snapshot
        self.stop = stop
        self.argv = sys.argv if argv is None else argv
        self.timeout = timeout
        self.cwd = cwd
        self._current = None
        self._handedOver = False

    @property
    def underway(self):
        """
        Whether an upgrade is under way, or done and this process on its
        way out: admin changes would not reach the new process.
        """
        return self._current is not None or self._handedOver

    def command(self):
        """
        The new process's command line: twistd under this interpreter's
        path (a new interpreter there is the one started), with this
        process's arguments.
        """
        from playbalancer.demo import TWISTD

        return [sys.executable, "-c", TWISTD] + list(self.argv[1:])

    def stateDirectory(self):
        """
        Where the state handed over is written: the runtime directory
        systemd gives (C{RUNTIME_DIRECTORY}), else the system's temporary
        one.
        """
        runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
        return runtime or None

    def upgrade(self, who="signal"):
        """
        Start the new process; a L{Deferred} firing with an
        L{UpgradeResult} once it serves or failed.
        """
        if self._current is not None:
            return succeed(UpgradeResult(False, error="an upgrade is already under way"))
        _log.info("upgrade by {who}: starting a new process", who=who)
        attempt = self._current = _Attempt(self)
        try:
            attempt.start()
        except Exception as e:
            attempt.failed(f"cannot start the new process: {e}")
        return attempt.result

    def _ended(self, attempt, handedOver=False):
        if self._current is attempt:
            self._current = None
        self._handedOver = self._handedOver or handedOver


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


def _unlinkIfHolds(path):
    if _holds(path, os.getpid()):
        _unlink(path)
