"""
What an old balancer process hands to the new one in a binary upgrade
(L{playbalancer.upgrade}): its listening sockets, its members' state, and
a pipe on which the new one says how its start went.

The old process starts the new one with the sockets and the pipe as
inherited file descriptors, and this environment variable::

    PLAYBALANCER_HANDOVER={"listeners": {"<endpoint>": [fd, ...], ...},
                           "state": "<path of a memberstate snapshot>",
                           "report": fd, "old": pid, "pidfile": "<path>"}

The new process listens on an inherited socket instead of binding its
endpoint (so the port never closes), applies the state, and writes lines
to C{report}: C{"pid N"} first, then C{"ready"} once it serves, or
C{"failed <why>"}.
"""

from __future__ import annotations

import json
import os
import socket

from twisted.application.service import Service
from twisted.internet.defer import succeed
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer

ENVIRONMENT = "PLAYBALANCER_HANDOVER"


@implementer(IStreamServerEndpoint)
class InheritedEndpoint:
    """
    Listens on a listening socket this process inherited (its file
    descriptor), as the endpoint it stands for would.

    @param tls: for a TLS endpoint, its context factory.
    """

    def __init__(self, reactor, fd, tls=None):
        self.reactor = reactor
        self.fd = fd
        self.tls = tls

    def listen(self, factory):
        if self.tls is not None:
            from twisted.protocols.tls import TLSMemoryBIOFactory

            factory = TLSMemoryBIOFactory(self.tls, False, factory)
        from playbalancer._net.adopt import adoptListening

        port = adoptListening(self.reactor, self.fd, factory)
        os.close(self.fd)
        return succeed(port)


class Handover:
    """
    The new process's side: what the old one handed over (see the module
    docstring), or nothing (L{NONE}) on an ordinary start.
    """

    def __init__(self, listeners=None, state=None, report=None, old=None, pidfile=None):
        self.listeners = {k: list(v) for k, v in (listeners or {}).items()}
        self.statePath = state
        self.report = report
        self.old = old
        self.pidfile = pidfile

    @classmethod
    def fromEnvironment(cls, environ=None):
        """
        The handover named by the environment (taken out of it, so that
        processes this one starts do not see it), or L{NONE}.
        """
        environ = os.environ if environ is None else environ
        raw = environ.pop(ENVIRONMENT, None)
        if not raw:
            return NONE
        return cls(**json.loads(raw))

    @property
    def upgrading(self):
        return self.report is not None

    def takeSockets(self, endpoint):
        """
        The inherited listening sockets (file descriptors) of C{endpoint},
        no longer offered to anyone else; empty when there are none.
        """
        return self.listeners.pop(endpoint, [])

    def endpointFor(self, reactor, endpoint, made):
        """
        An L{InheritedEndpoint} for C{endpoint} (a string) if its socket was
        handed over, else C{made} (the endpoint parsed from the string).
        """
        fds = self.takeSockets(endpoint)
        if not fds:
            return made
        for extra in fds[1:]:
            os.close(extra)
        from twisted.internet.endpoints import SSL4ServerEndpoint

        tls = None
        if isinstance(made, SSL4ServerEndpoint):
            from playbalancer._net.internals import listenerTLSOptions

            tls = listenerTLSOptions(made)
        return InheritedEndpoint(reactor, fds[0], tls)

    def state(self):
        """
        The old process's member state (L{playbalancer.memberstate}'s
        format, with C{"down"}), or L{None}.
        """
        if not self.statePath:
            return None
        try:
            with open(self.statePath, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None  # (the old process gave up on this upgrade)
        finally:
            try:
                os.unlink(self.statePath)
            except OSError:
                pass

    def say(self, line):
        """
        Write one line to the old process (nothing on an ordinary start).
        """
        if self.report is None:
            return
        try:
            os.write(self.report, line.encode("utf-8", "replace").replace(b"\n", b" ") + b"\n")
        except OSError:
            pass

    def done(self):
        """
        Close the report pipe and the sockets nobody took (the old process
        listened on endpoints this config no longer has).
        """
        for fds in self.listeners.values():
            for fd in fds:
                os.close(fd)
        self.listeners = {}
        if self.report is not None:
            os.close(self.report)
            self.report = None


NONE = Handover()


def environmentFor(listeners, statePath, report, pidfile):
    """
    The value of L{ENVIRONMENT} for a new process.
    """
    return json.dumps(
        {
            "listeners": listeners,
            "state": statePath,
            "report": report,
            "old": os.getpid(),
            "pidfile": pidfile,
        }
    )


class SayPid(Service):
    """
    Started first (after twistd daemonized): tells the old process of an
    upgrade this process's PID.
    """

    def __init__(self, handover):
        self.handover = handover

    def privilegedStartService(self):
        Service.privilegedStartService(self)
        self.handover.say(f"pid {os.getpid()}")


class Serving(Service):
    """
    Started last: says the process serves (to the old process in an
    upgrade, and to systemd), and after an upgrade writes the PID file
    again once the old process has exited.

    @param ready: a L{Deferred} that fires when traffic is served (a
        cluster node's C{ready}), or L{None}: at once.
    """

    def __init__(self, handover, reactor, ready=None):
        self.handover = handover
        self.reactor = reactor
        self.ready = ready
        self._watch = None

    def startService(self):
        Service.startService(self)
        if self.ready is None:
            self._serving()
        else:
            self.ready.addCallback(lambda _: self._serving())

    def _serving(self):
        handover = self.handover
        old = handover.old
        if handover.upgrading:
            handover.say("ready")
            handover.done()
            notify(f"MAINPID={os.getpid()}\nREADY=1")
        else:
            notify("READY=1")
        if old is not None and handover.pidfile:
            from twisted.internet.task import LoopingCall

            self._watch = LoopingCall(self._oldGone, old, handover.pidfile)
            self._watch.clock = self.reactor
            self._watch.start(0.2, now=False)

    def _oldGone(self, old, pidfile):
        if alive(old):
            return
        self._watch.stop()
        self._watch = None
        me = os.getpid()
        if _holds(pidfile + ".oldbin", me):
            return  # this process is being upgraded in turn: not ours now
        if os.path.exists(pidfile) and not _holds(pidfile, me):
            return  # a newer process's
        from playbalancer.atomicfile import replaceFile

        try:
            replaceFile(pidfile, f"{me}\n".encode("ascii"))
        except OSError:
            pass

    def stopService(self):
        Service.stopService(self)
        if self._watch is not None and self._watch.running:
            self._watch.stop()


def _holds(path, pid):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) == pid
    except (OSError, ValueError):
        return False


def alive(pid):
    """
    Whether process C{pid} runs (one that exited but was not reaped yet,
    a zombie, does not).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def notify(message):
    """
    Tell systemd (C{sd_notify}) C{message}, when it started us with a
    C{NOTIFY_SOCKET}; otherwise nothing.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(message.encode("ascii"), address)
    except OSError:
        pass


def reportFailure(message, environ=None):
    """
    Tell the old process of an upgrade that this one cannot start, and
    why, before anything took the handover (bad command-line options or
    config); nothing on an ordinary start.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(ENVIRONMENT)
    if raw:
        if message.startswith("playbalancer: "):
            message = message[len("playbalancer: "):]
        Handover(**json.loads(raw)).say(f"failed {message}")


class Predecessor:
    """
    The process an upgrade replaced, still finishing its requests in
    flight (which this process cannot count): until it has exited, a drain
    here is not done (see L{tier}).
    """

    def __init__(self, pid):
        self.pid = pid
        self._gone = False

    def running(self):
        if not self._gone and not alive(self.pid):
            self._gone = True
        return not self._gone

    def tier(self, tier, balancers):
        """
        C{tier} (the cluster node, the worker supervisor, or L{None}: this
        process alone), with the predecessor counted as behind while it
        runs.
        """
        return _AfterPredecessor(self, tier, balancers)


class _AfterPredecessor:
    def __init__(self, predecessor, tier, balancers):
        self.predecessor = predecessor
        self.base = tier
        self.balancers = balancers

    def sync(self):
        sync = getattr(self.base, "sync", None)
        if sync is not None:
            sync()

    def tierState(self, balancerName, memberName):
        if self.base is not None:
            state = dict(self.base.tierState(balancerName, memberName))
        else:
            balancer = self.balancers.get(balancerName)
            member = balancer.member(memberName) if balancer is not None else None
            inflight = member.active if member is not None else 0
            state = {"inflight": inflight, "behind": [], "idle": inflight == 0}
        if self.predecessor.running():
            state["behind"] = list(state["behind"]) + [f"previous process {self.predecessor.pid}"]
            state["idle"] = False
        return state
