#!/usr/bin/env python3
"""
Config reloads and binary upgrades under load: does a balancer fail,
refuse or reset a request while its configuration changes under it, or
while a new process takes over from it?

Four demo members (app1..app4) run on free ports on 127.0.0.1; the
balancer under test starts with three of them.  Six keep-alive client
threads loop over GET /, GET /slow?seconds=0.3 and a 16 KiB POST /echo, and
one more thread opens a new connection every few ms (GET / and POST /echo
in turn, one request each).  Every answer must be a complete, correct 200.
During the run (40 s) the config is rewritten and reloaded 10 times, each
time with a member removed and another added, the kept members' weights
changed and the balancer's response timeout changed; playbalancer rows also
do 3 binary upgrades (SIGUSR2).  The peers reload their own way (nginx -s
reload, a new HAProxy with -sf, with or without -x, Apache -k graceful) and
have no binary-upgrade step here.

    python benchmarks/reload.py                              # every balancer found
    python benchmarks/reload.py --only playbalancer,nginx --runs 2 --json out.json
    python benchmarks/reload.py --pypy .venv-pypy/bin/python  # adds the PyPy rows

Only the standard library is used by the script itself; the demo members
(and the playbalancer rows) need playbalancer importable by --python (and
--pypy).  Peers are found on PATH (and /usr/sbin); a missing one is skipped
with a note.  Peer configs: benchmarks/peers/reload-*.  See
benchmarks/README.rst.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "peers")
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import rolling_upgrade as rolling  # noqa: E402  (the peers' checks and the load loop)
from rolling_upgrade import (  # noqa: E402  (its plumbing: members, processes, binaries)
    POST_BODY,
    SLOW_SECONDS,
    TWISTD,
    alive,
    cmdline,
    findBinary,
    freePort,
    get,
    log,
    now,
    oneLine,
    startMember,
    stopAllMembers,
    stopChild,
    stopPid,
    tail,
    unprivileged,
    waitFor,
)

#: The PyPy venv the Makefile's test-pypy target makes, if there is one.
DEFAULT_PYPY = (os.path.join(REPO, ".venv-pypy", "bin", "python")
                if os.path.exists(os.path.join(REPO, ".venv-pypy", "bin", "python")) else None)
#: As the other benchmarks start playbalancer on PyPy (short GC pauses).
PYPY_ENV = {"PYPY_GC_NURSERY": "16M"}
MEMBERS = 4
#: Members in the config at any time (MEMBERS - 1: one is always out).
IN_CONFIG = 3
KEEPALIVE_KINDS = ("get", "slow", "post")
NEW_KINDS = ("new-get", "new-post")
#: A request served by a member that was out of the running config when
#: it started, this long before and this long after, is "stale".
STALE_MARGIN = 1.0


# The configs a run goes through.


def states(ports, reloads):
    """
    The config states: 0 at start, one more per reload.  State k has three
    of the four members (a window that moves by one: each reload removes
    one member and adds another), member i's weight 1 + (i + k) % 3 (so
    every kept member's weight changes) and a timeout of 20, 30 or 40 s
    (changes every time).
    """
    out = []
    for k in range(reloads + 1):
        chosen = [(k + j) % len(ports) for j in range(IN_CONFIG)]
        out.append({
            "index": k,
            "members": [(f"app{i + 1}", ports[i], 1 + (i + k) % 3) for i in chosen],
            "timeout": 20 + 10 * (k % 3),
        })
    return out


def names(state):
    return {name for name, _, _ in state["members"]}


def describe(old, new):
    """
    What changes from state C{old} to C{new}, on one line.
    """
    weights = {n: w for n, _, w in old["members"]}
    added = sorted(names(new) - names(old))
    removed = sorted(names(old) - names(new))
    changed = [f"{n}={w}" for n, _, w in new["members"] if n in weights and weights[n] != w]
    return (" ".join([f"+{n}" for n in added] + [f"-{n}" for n in removed])
            + f", weights {' '.join(changed) or 'same'}, timeout {old['timeout']}->{new['timeout']}s")


def fill(template, path, **values):
    """
    Write the template C{benchmarks/peers/TEMPLATE}, its C{$names} filled in
    from C{values}, to C{path} (through a temporary file and a rename, so
    that a reload never reads half a file).
    """
    with open(os.path.join(PEERS, template)) as f:
        text = string.Template(f.read()).substitute(values)
    with open(path + ".new", "w") as f:
        f.write(text)
    os.chmod(path + ".new", 0o644)
    os.replace(path + ".new", path)
    return path


# Processes: only the ones this script started (and their children), by PID.


def parents():
    """
    C{{pid: ppid}} of every process, from /proc.
    """
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                found[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return found


def descendants(pid):
    ppids = parents()
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in ppids.items():
            if ppid == parent and child not in out:
                out.append(child)
                todo.append(child)
    return out


class Tracked:
    """
    Every PID a row started or saw (balancer processes, their workers, the
    processes an upgrade started) with its command line when seen: the
    clean-up signals only those still running the same command line.
    """

    def __init__(self):
        self.seen = {}

    def add(self, pid, withChildren=True):
        if pid is None:
            return
        for p in [pid] + (descendants(pid) if withChildren else []):
            line = cmdline(p)
            if line and p not in self.seen:
                self.seen[p] = line

    def stopAll(self):
        left = [p for p, line in self.seen.items() if alive(p) and cmdline(p) == line]
        for pid in left:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in left:
            if cmdline(pid) == self.seen[pid]:
                stopPid(pid, timeout=8, sig=0)
        return left


# The load.


class Load:
    """
    C{clients} keep-alive threads (one http.client connection each, looping
    over the three kinds) and one thread that opens a new connection for
    every request, every C{newEvery} seconds.  Nothing is retried.
    """

    def __init__(self, url, clients, newEvery, timeout):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.timeout = timeout
        self.newEvery = newEvery
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.counts = Counter()
        self.failures = []
        self.served = []  # (start, member) of every ok request
        self.longest = (0.0, None, None)
        self.byKind = {}  # kind: [requests, seconds]
        self.threads = [threading.Thread(target=self.keepAlive, args=(i,), daemon=True)
                        for i in range(clients)]
        if newEvery > 0:
            self.threads.append(threading.Thread(target=self.newConnections, daemon=True))

    start = rolling.Load.start

    stop = rolling.Load.stop

    def keepAlive(self, index):
        conn = None
        step = index
        while not self.stopping.is_set():
            kind = KEEPALIVE_KINDS[step % len(KEEPALIVE_KINDS)]
            step += 1
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            reused = conn.sock is not None
            category = self.one(conn, kind, reused)
            if category != "ok" or conn.sock is None:
                conn.close()
                conn = None
            if category == "refused":
                time.sleep(0.01)  # nothing listens: do not spin
        if conn is not None:
            conn.close()

    def newConnections(self):
        step = 0
        while not self.stopping.is_set():
            kind = NEW_KINDS[step % len(NEW_KINDS)]
            step += 1
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.one(conn, kind, False, close=True)
            finally:
                conn.close()
            self.stopping.wait(self.newEvery)

    def one(self, conn, kind, reused, close=False):
        """
        One request on C{conn}; its category: ok, failed, refused or reset.
        """
        started = now()
        status, category, failure, detail, served = None, "ok", None, "", None
        headers = {"Connection": "close"} if close else {}
        try:
            if kind.endswith("post"):
                headers["Content-Type"] = "application/octet-stream"
                conn.request("POST", "/echo", body=POST_BODY, headers=headers)
            elif kind == "slow":
                conn.request("GET", "/slow?seconds=" + SLOW_SECONDS, headers=headers)
            else:
                conn.request("GET", "/", headers=headers)
            response = conn.getresponse()
            status = response.status
            served = response.getheader("x-served-by")
            body = response.read()
            if status != 200:
                category, failure, detail = "failed", f"status {status}", oneLine(body)
            elif not complete(kind, body):
                category, failure, detail = "failed", "wrong body", oneLine(body)
            if response.will_close:
                conn.close()
        except http.client.IncompleteRead as e:
            category, failure = "failed", "truncated body"
            detail = f"{len(e.partial)} bytes, {e.expected} missing"
        except http.client.RemoteDisconnected:
            # (a ConnectionResetError subclass: the connection was closed,
            # not reset, with no response)
            category, failure = "failed", "closed before response"
        except ConnectionRefusedError:
            category, failure = "refused", "refused"
        except ConnectionResetError:
            category, failure = "reset", "reset"
        except BrokenPipeError:
            category, failure = "reset", "broken pipe while sending"
        except socket.timeout:
            category, failure = "failed", "timeout"
        except (OSError, http.client.HTTPException) as e:
            category, failure, detail = "failed", "error", repr(e)
        elapsed = now() - started
        at = started - self.began
        with self.lock:
            self.counts["sent"] += 1
            self.counts[category] += 1
            tally = self.byKind.setdefault(kind, [0, 0.0])
            tally[0] += 1
            tally[1] += elapsed
            if elapsed > self.longest[0]:
                self.longest = (elapsed, kind, round(at, 2))
            if category == "ok":
                self.served.append((at, served))
            else:
                self.failures.append({
                    "at": round(at, 3), "took": round(elapsed, 3), "request": kind,
                    "category": category, "failure": failure, "status": status,
                    "reused_connection": reused, "detail": detail,
                })
        return category


def complete(kind, body):
    if kind.endswith("get"):
        return body.startswith(b"Hello from ")
    if kind == "slow":
        return b" waited " + SLOW_SECONDS.encode() + b"s" in body
    try:
        return json.loads(body)["body_length"] == len(POST_BODY)
    except (ValueError, KeyError, TypeError):
        return False


def machineBusy():
    """
    CPU seconds the whole machine has been busy (not idle or iowait).
    """
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def loadAverage():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# Log files: what a balancer wrote since an offset.


class LogWatch:
    def __init__(self, path):
        self.path = path
        self.mark()

    def mark(self):
        try:
            self.offset = os.path.getsize(self.path)
        except OSError:
            self.offset = 0

    def lines(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return text.splitlines()

    def waitFor(self, tests, timeout):
        """
        Wait up to C{timeout} for a new line containing any of C{tests}
        (strings; each a tuple of strings that must all be in the line);
        the first such line, or L{None}.
        """
        deadline = now() + timeout
        while True:
            for line in self.lines():
                for test in tests:
                    if all(t in line for t in test):
                        return line.strip()
            if now() >= deadline:
                return None
            time.sleep(0.05)


# Balancers under test.


class Balancer:
    """
    One row: starts a balancer in front of the members, reloads it into a
    new state, upgrades it if it can, stops it.
    """

    name = "?"
    setup = ""
    upgrades = False

    def __init__(self, options):
        self.options = options
        self.port = None
        self.tracked = Tracked()

    def missing(self):
        return None

    url = rolling.Balancer.url

    def ready(self, timeout=30):
        waitFor(lambda: get(self.url() + "/")[1].startswith(b"Hello from "), timeout,
                f"{self.name} to answer through a member")

    def spawn(self, argv, workdir, logname, env=None):
        self.logfile = os.path.join(workdir, logname)
        with open(self.logfile, "ab") as out:
            child = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=workdir, env=env,
            )
        self.tracked.add(child.pid, withChildren=False)
        return child

    def checkStarted(self, child, wait=0.3):
        time.sleep(wait)
        if child.poll() is not None:
            raise RuntimeError(f"{self.name} exited at once: {tail(self.logfile)}")

    def reload(self, state):
        """
        Rewrite the config into C{state} and reload; a dict with C{ok} and
        C{detail}.
        """
        raise NotImplementedError

    def upgrade(self):
        raise NotImplementedError

    def running(self):
        """
        Whether the balancer still runs (for the notes).
        """
        return True

    def stop(self):
        pass


class Playbalancer(Balancer):
    upgrades = True

    def __init__(self, options, name, python, workers, label, env=None):
        Balancer.__init__(self, options)
        self.name = name
        self.python = python
        self.workers = workers
        self.env = env or {}
        via = {"signal": "kill -HUP", "api": "POST /api/reload",
               "cli": "playbalancer reload"}[options.reload_via]
        extra = "".join(f"{k}={v}; " for k, v in self.env.items())
        self.setup = (f"{label}, workers = {workers}, round-robin, no health checks; {extra}"
                      f"reload: {via}; upgrade: kill -USR2")

    def missing(self):
        if not self.python:
            return "no interpreter given (--pypy)"
        probe = subprocess.run([self.python, "-c", "import playbalancer, twisted.scripts.twistd"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if probe.returncode != 0:
            return f"playbalancer is not importable by {self.python}"
        return None

    def writeConfig(self, state):
        members = "".join(
            f'\n[[balancer.bench.member]]\nname = "{n}"\nurl = "http://127.0.0.1:{p}"\nweight = {w}\n'
            for n, p, w in state["members"]
        )
        fill("reload-playbalancer.toml", self.config, workers=self.workers,
             http_port=self.port, manager_port=self.managerPort, timeout=state["timeout"],
             members=members)

    def start(self, workdir, state):
        self.port = freePort()
        self.managerPort = freePort()
        self.config = os.path.join(workdir, "playbalancer.toml")
        self.pidfile = os.path.join(workdir, "playbalancer.pid")
        self.writeConfig(state)
        self.child = self.spawn(
            [self.python, "-c", TWISTD, "-n", f"--pidfile={self.pidfile}", "playbalancer",
             "--config", self.config], workdir, "playbalancer.log", env=dict(os.environ, **self.env))
        self.log = LogWatch(self.logfile)
        self.log.offset = 0
        self.checkStarted(self.child)
        self.pid = self.child.pid

    def ready(self, timeout=60):
        Balancer.ready(self, timeout)
        self.tracked.add(self.pid)

    def currentPid(self):
        for path in (self.pidfile, self.pidfile + ".oldbin"):
            try:
                with open(path) as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                continue
            if alive(pid):
                self.pid = pid
                return pid
        return self.pid

    def reload(self, state):
        self.writeConfig(state)
        self.log.mark()
        pid = self.currentPid()
        self.tracked.add(pid)
        via = self.options.reload_via
        answer = None
        if via == "signal":
            os.kill(pid, signal.SIGHUP)
        elif via == "api":
            answer = self.api("reload")
        else:
            result = subprocess.run(
                [self.python, "-m", "playbalancer.cli", "--manager",
                 f"http://127.0.0.1:{self.managerPort}", "reload"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
            answer = result.stdout.decode("utf-8", "replace").strip()
        line = self.log.waitFor([("configuration reloaded by",), ("reload by", "refused")], 10)
        if line is None:
            return {"ok": False, "detail": f"no reload line in the log within 10 s; {answer or ''}"}
        return {"ok": "configuration reloaded" in line, "detail": line.split("] ", 1)[-1]}

    def verify(self, state):
        """
        Whether the manager's /api/status shows C{state}'s members (by name
        and URL) with its weights; L{None} when it does, else what differs.
        """
        try:
            status, body = get(f"http://127.0.0.1:{self.managerPort}/api/status", timeout=10)
            members = json.loads(body)["balancers"]["bench"]["members"]
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            return f"no status: {e!r}"
        seen = {n: (m["url"], m["weight"]) for n, m in members.items() if not m.get("removing")}
        wanted = {n: (f"http://127.0.0.1:{p}", w) for n, p, w in state["members"]}
        if seen == wanted:
            return None
        show = lambda d: " ".join(f"{n}:{u.rsplit(':', 1)[-1]}/w{w}" for n, (u, w) in sorted(d.items()))  # noqa: E731
        return (f"/api/status has {show(seen)}; state {state['index']}, which it should run, "
                f"has {show(wanted)}")

    def api(self, what):
        conn = http.client.HTTPConnection("127.0.0.1", self.managerPort, timeout=30)
        try:
            conn.request("POST", f"/api/{what}", body=b"{}",
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            return f"{response.status} {oneLine(response.read(), 200)}"
        except (OSError, http.client.HTTPException) as e:
            return repr(e)
        finally:
            conn.close()

    def upgrade(self):
        self.log.mark()
        old = self.currentPid()
        self.tracked.add(old)
        started = now()
        os.kill(old, signal.SIGUSR2)
        line = self.log.waitFor([("upgrade: the new process (PID",), ("upgrade failed",)],
                                self.options.upgrade_timeout)
        result = {"old_pid": old}
        if line is None:
            result.update(ok=False, detail=f"no upgrade line in the log within "
                                           f"{self.options.upgrade_timeout:g} s")
            return result
        result["detail"] = line.split("] ", 1)[-1]
        if "upgrade failed" in line:
            result["ok"] = False
            return result
        new = int(line.split("(PID ", 1)[1].split(")", 1)[0])
        result.update(ok=True, new_pid=new, serving_after_s=round(now() - started, 2))
        self.tracked.add(new)
        self.pid = new
        # The old process finishes its requests and exits; the new one
        # owns the PID file.
        deadline = now() + 15
        while alive(old) and now() < deadline:
            time.sleep(0.05)
        result["old_exited_after_s"] = None if alive(old) else round(now() - started, 2)
        deadline = now() + 5
        while self.currentPid() != new and now() < deadline:
            time.sleep(0.05)
        result["pidfile_follows"] = self.currentPid() == new
        self.tracked.add(new)
        return result

    def running(self):
        return alive(self.currentPid())

    def stop(self):
        pid = self.currentPid()
        self.tracked.add(pid)
        stopPid(pid, timeout=15)
        stopChild(self.child)
        left = self.tracked.stopAll()
        if left:
            log(f"   stopped {len(left)} more process(es) left over: {left}")


class Nginx(Balancer):
    name = "nginx"
    setup = "1 worker, upstream keepalive 32; reload: nginx -s reload; no binary upgrade step"

    missing = rolling.Nginx.missing

    def writeConfig(self, state):
        servers = "".join(f"        server 127.0.0.1:{p} weight={w};\n"
                          for _, p, w in state["members"])
        user = ""
        if os.geteuid() == 0 and unprivileged():
            user = "user %s %s;\n" % unprivileged()
        fill("reload-nginx.conf", self.config, user=user, workdir=self.workdir,
             http_port=self.port, servers=servers, timeout=state["timeout"])

    def start(self, workdir, state):
        self.port = freePort()
        self.workdir = workdir
        self.config = os.path.join(workdir, "nginx.conf")
        temp = os.path.join(workdir, "nginx-temp")
        os.makedirs(temp)
        os.chmod(temp, 0o777)
        self.writeConfig(state)
        self.errors = LogWatch(os.path.join(workdir, "nginx-error.log"))
        self.child = self.spawn([self.binary, "-c", self.config, "-p", workdir + "/",
                                 "-g", "daemon off;"], workdir, "nginx.log")
        self.checkStarted(self.child)

    def reload(self, state):
        self.writeConfig(state)
        self.errors.mark()
        self.tracked.add(self.child.pid)
        result = subprocess.run([self.binary, "-c", self.config, "-p", self.workdir + "/",
                                 "-s", "reload"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, timeout=30)
        if result.returncode != 0:
            return {"ok": False, "detail": f"nginx -s reload exit {result.returncode}: "
                                           f"{oneLine(result.stdout, 200)}"}
        line = self.errors.waitFor([("reconfiguring",), ("[emerg]",), ("[alert]",)], 10)
        return {"ok": line is not None and "reconfiguring" in line,
                "detail": line or "no 'reconfiguring' in the error log within 10 s"}

    def running(self):
        return self.child.poll() is None

    def stop(self):
        self.tracked.add(self.child.pid)
        stopChild(self.child)
        self.tracked.stopAll()


class HAProxy(Balancer):
    name = "haproxy-sf"
    setup = ("nbthread 1, round robin; reload: a new haproxy -db -f CFG -sf OLDPID; "
             "no binary upgrade step")
    transfer = False

    missing = rolling.HAProxy.missing

    def writeConfig(self, state):
        servers = "".join(f"    server {n} 127.0.0.1:{p} weight {w}\n"
                          for n, p, w in state["members"])
        stats = ""
        if self.transfer:
            stats = f"    stats socket {self.socket} mode 600 level admin expose-fd listeners\n"
        fill("reload-haproxy.cfg", self.config, stats=stats, http_port=self.port,
             servers=servers, timeout=state["timeout"])

    def argv(self, old=None):
        argv = [self.binary, "-db", "-f", self.config]
        if old is not None:
            if self.transfer:
                argv += ["-x", self.socket]
            argv += ["-sf", str(old.pid)]
        return argv

    def start(self, workdir, state):
        self.port = freePort()
        self.workdir = workdir
        self.config = os.path.join(workdir, "haproxy.cfg")
        self.socket = os.path.join(workdir, "haproxy.sock")
        self.writeConfig(state)
        self.children = [self.spawn(self.argv(), workdir, "haproxy.log")]
        self.checkStarted(self.children[-1])

    def reload(self, state):
        self.writeConfig(state)
        old = self.children[-1]
        new = self.spawn(self.argv(old), self.workdir, "haproxy.log")
        self.children.append(new)
        deadline = now() + 10
        while old.poll() is None and new.poll() is None and now() < deadline:
            time.sleep(0.02)
        if new.poll() is not None:
            self.children.pop()
            return {"ok": False, "detail": f"the new haproxy exited {new.returncode}: "
                                           f"{tail(self.logfile, 3)}"}
        if old.poll() is None:
            return {"ok": True, "detail": f"new PID {new.pid} runs; old PID {old.pid} still "
                                          "finishing after 10 s"}
        return {"ok": True, "detail": f"new PID {new.pid}; old PID {old.pid} exited"}

    def running(self):
        return self.children[-1].poll() is None

    def stop(self):
        for child in reversed(self.children):
            stopChild(child)
        self.tracked.stopAll()


class HAProxyTransfer(HAProxy):
    name = "haproxy-x"
    setup = ("as haproxy-sf, plus stats socket ... expose-fd listeners; reload: a new "
             "haproxy -db -f CFG -x SOCKET -sf OLDPID (listening sockets handed over); "
             "no binary upgrade step")
    transfer = True


class Apache(Balancer):
    name = "apache"
    setup = ("event MPM defaults, mod_proxy_balancer byrequests; reload: apache2 -k graceful; "
             "no binary upgrade step")
    modules = rolling.Apache.modules

    missing = rolling.Apache.missing

    module = rolling.Apache.module

    def writeConfig(self, state):
        modules = "".join(f"LoadModule {m}_module {self.module(m)}\n" for m in self.modules)
        user = ""
        if os.geteuid() == 0 and unprivileged():
            user = "User %s\nGroup %s\n" % unprivileged()
        members = "".join(f"    BalancerMember http://127.0.0.1:{p} loadfactor={w}\n"
                          for _, p, w in state["members"])
        fill("reload-apache2.conf", self.config, modules=modules, user=user,
             http_port=self.port, workdir=self.workdir, members=members,
             timeout=state["timeout"])

    def control(self, *args):
        return [self.binary, "-d", self.workdir, "-f", self.config] + list(args)

    def start(self, workdir, state):
        self.port = freePort()
        self.workdir = workdir
        self.config = os.path.join(workdir, "apache2.conf")
        os.makedirs(os.path.join(workdir, "apache-run"))
        self.writeConfig(state)
        self.errors = LogWatch(os.path.join(workdir, "apache-error.log"))
        self.child = self.spawn(self.control("-DFOREGROUND"), workdir, "apache2.log")
        self.checkStarted(self.child)

    def reload(self, state):
        self.writeConfig(state)
        self.errors.mark()
        self.tracked.add(self.child.pid)
        result = subprocess.run(self.control("-k", "graceful"), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, timeout=30)
        if result.returncode != 0:
            return {"ok": False, "detail": f"apache2 -k graceful exit {result.returncode}: "
                                           f"{oneLine(result.stdout, 200)}"}
        line = self.errors.waitFor([("resuming normal operations",), (":emerg]",)], 10)
        return {"ok": line is not None and "resuming" in line,
                "detail": line or "no 'resuming normal operations' in the error log within 10 s"}

    def running(self):
        return self.child.poll() is None

    def stop(self):
        self.tracked.add(self.child.pid)
        stopChild(self.child)
        self.tracked.stopAll()


def balancers(options):
    rows = [
        Playbalancer(options, "playbalancer", options.python, 1, "CPython"),
        Playbalancer(options, "playbalancer-pypy", options.pypy, 1, "PyPy", PYPY_ENV),
        Playbalancer(options, "playbalancer-w2", options.python, 2, "CPython"),
        Playbalancer(options, "playbalancer-pypy-w2", options.pypy, 2, "PyPy", PYPY_ENV),
        Nginx(options),
        HAProxy(options),
        HAProxyTransfer(options),
        Apache(options),
    ]
    return rows


NAMES = ["playbalancer", "playbalancer-pypy", "playbalancer-w2", "playbalancer-pypy-w2",
         "nginx", "haproxy-sf", "haproxy-x", "apache"]


def versions(options):
    found = {"driver_python": sys.version.split()[0]}
    code = ("import os, sys, playbalancer, twisted; print(sys.version.split()[0], "
            "'playbalancer', playbalancer.__version__, 'from', "
            "os.path.dirname(os.path.dirname(playbalancer.__file__)), 'twisted', "
            "twisted.__version__)")
    probes = [
        ("python", [options.python, "-c", code]),
        ("pypy", [options.pypy, "-c", code]),
        ("haproxy", [findBinary("haproxy", options.haproxy), "-v"]),
        ("nginx", [findBinary("nginx", options.nginx), "-v"]),
        ("apache2", [findBinary("apache2", options.apache2) or findBinary("httpd"), "-v"]),
    ]
    for name, argv in probes:
        if argv[0] is None:
            continue
        try:
            out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 timeout=30).stdout.decode("utf-8", "replace").strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out:
            found[name] = out.splitlines()[-1] if name in ("python", "pypy") else out.splitlines()[0]
    try:
        found["commit"] = subprocess.run(
            ["git", "-C", REPO, "describe", "--always", "--dirty"], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, timeout=10).stdout.decode().strip() or None
    except (OSError, subprocess.TimeoutExpired):
        pass
    return found


# One run.


def timeline(options, upgrades):
    """
    C{[(at, "reload" | "upgrade", index)]}: the reloads spread evenly from
    2 s to 5 s before the end, the upgrades half-way between.
    """
    first, last = 2.0, max(2.0, options.duration - 5.0)
    events = []
    n = options.reloads
    for k in range(n):
        events.append((first + (last - first) * (k / max(1, n - 1)), "reload", k + 1))
    if upgrades:
        u = options.upgrades
        for j in range(u):
            events.append((first + (last - first) * ((j + 0.5) / u), "upgrade", j + 1))
    return sorted(events)


def stale(served, changes):
    """
    Requests served by a member outside the running config: C{changes} is
    C{[(at, state)]}, when each state started to run.
    """
    def stateAt(t):
        current = changes[0][1]
        for at, state in changes:
            if at <= t:
                current = state
        return current

    count, examples = 0, []
    for at, member in served:
        if any(member in names(stateAt(t)) for t in (at - STALE_MARGIN, at, at + STALE_MARGIN)):
            continue
        count += 1
        if len(examples) < 5:
            examples.append({"at": round(at, 3), "member": member,
                             "config": sorted(names(stateAt(at)))})
    return count, examples


def runOne(balancer, options, run):
    root = tempfile.mkdtemp(prefix="reload-bench-")
    os.chmod(root, 0o755)  # nginx/Apache workers (unprivileged) read their temp dirs in here
    children = []
    result = {"balancer": balancer.name, "setup": balancer.setup, "run": run}
    events = []
    try:
        ports = [freePort() for _ in range(MEMBERS)]
        for i, port in enumerate(ports):
            children.append(startMember(options.python, root, f"app{i + 1}", port))
        for i in range(MEMBERS):
            waitFor(lambda: os.path.exists(os.path.join(root, f"app{i + 1}.ready")), 30,
                    f"member app{i + 1} to listen")
        configs = states(ports, options.reloads)
        balancer.start(root, configs[0])
        balancer.ready()
        plan = timeline(options, balancer.upgrades)
        load = Load(balancer.url(), options.clients, options.new_every, options.request_timeout)
        log(f"== {balancer.name} (run {run}): {balancer.setup}")
        busy, loadBefore = machineBusy(), loadAverage()
        load.start()
        written = 0  # the state in the config file
        runningState = 0  # the state the balancer runs
        changes = [(-1e9, configs[0])]
        for at, kind, index in plan:
            while now() - load.began < at:
                time.sleep(0.02)
            began = now() - load.began
            if kind == "reload":
                written = index
                outcome = balancer.reload(configs[index])
                outcome["change"] = describe(configs[index - 1], configs[index])
            else:
                outcome = balancer.upgrade()
            done = now() - load.began
            if outcome["ok"] and (kind == "reload" or written != runningState):
                # (the new process of an upgrade reads the file as it is)
                runningState = written
                changes.append((done, configs[written]))
            outcome.update(event=kind, index=index, at_s=round(began, 2), took_s=round(done - began, 2))
            if hasattr(balancer, "verify"):
                # What it runs now, by its manager: the state it should run.
                outcome["status_check"] = balancer.verify(configs[runningState])
            events.append(outcome)
            mark = "ok" if outcome["ok"] else "FAILED"
            if outcome.get("status_check"):
                mark += ", STATUS DIFFERS"
            log(f"   t={began:5.1f}s {kind} {index} {mark} ({done - began:.2f}s): "
                f"{outcome.get('change', '')}{' | ' if kind == 'reload' else ''}{outcome['detail'][:150]}")
        while now() - load.began < options.duration:
            time.sleep(0.05)
        loadSeconds = now() - load.began
        stuck = load.stop()
        busy = machineBusy() - busy
        counts = load.counts
        staleCount, staleExamples = stale(load.served, changes)
        reloads = [e for e in events if e["event"] == "reload"]
        upgrades = [e for e in events if e["event"] == "upgrade"]
        result.update({
            "duration_s": options.duration,
            "load_s": round(loadSeconds, 1),
            "requests": counts["sent"],
            "ok": counts["ok"],
            "failed": counts["failed"],
            "refused": counts["refused"],
            "reset": counts["reset"],
            "by_kind": dict(Counter(f"{f['request']}: {f['failure']}"
                                    for f in load.failures).most_common()),
            "requests_by_kind": {k: {"requests": n, "mean_ms": round(1000 * t / n, 1)}
                                 for k, (n, t) in sorted(load.byKind.items())},
            "longest_s": round(load.longest[0], 3),
            "longest_request": load.longest[1],
            "longest_at_s": load.longest[2],
            "reloads": len(reloads),
            "reloads_ok": sum(1 for e in reloads if e["ok"]),
            "upgrades": len(upgrades),
            "upgrades_ok": sum(1 for e in upgrades if e["ok"]),
            "status_checks": sum(1 for e in events if "status_check" in e),
            "status_differs": sum(1 for e in events if e.get("status_check")),
            "stale": staleCount,
            "stale_examples": staleExamples,
            "served_by": dict(Counter(m for _, m in load.served)),
            # Everything the machine did meanwhile (this row, its members,
            # the load, and anything else running): out of 2 x duration on
            # 2 cores.
            "machine_busy_cpu_s": round(busy, 1),
            "loadavg_before_after": [loadBefore, loadAverage()],
            "events": events,
            "failures": [dict(f, after=after(f["at"], events)) for f in load.failures],
        })
        notes = []
        if loadSeconds > options.duration + 1:
            notes.append(f"the load ran {loadSeconds:.0f} s, not {options.duration:g}: "
                         "a reload or upgrade that did not answer held the timeline up")
        if stuck:
            notes.append(f"{len(stuck)} client thread(s) still waiting at the end")
        if not balancer.running():
            notes.append(f"{balancer.name} was not running at the end: {tail(balancer.logfile)}")
        result["notes"] = notes
        log(f"   requests {result['requests']}, failed {result['failed']}, refused "
            f"{result['refused']}, reset {result['reset']}, longest {result['longest_s']:.2f}s, "
            f"reloads {result['reloads_ok']}/{result['reloads']}"
            + (f", upgrades {result['upgrades_ok']}/{result['upgrades']}" if upgrades else "")
            + f", stale {staleCount}, machine busy {busy:.0f} CPU-s, load {loadAverage():.1f}")
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        result["skipped"] = str(e)
        result["events"] = events
        log(f"   {balancer.name}: {e}")
    finally:
        try:
            balancer.stop()
        finally:
            stopAllMembers(root, children)
        if options.keep:
            log(f"   kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return result


def after(at, events):
    """
    The last reload or upgrade begun before C{at}, as "reload 3 +0.12s".
    """
    last = None
    for e in events:
        if e["at_s"] <= at:
            last = e
    if last is None:
        return "before any"
    return f"{last['event']} {last['index']} +{at - last['at_s']:.2f}s"


# Output.


def table(results):
    byName = {}
    for r in results:
        byName.setdefault(r["balancer"], []).append(r)
    header = ("balancer", "reloads ok", "upgrades ok", "requests", "failed", "refused", "reset",
              "longest", "stale", "status ok")
    rows = [header]
    for name, runs in byName.items():
        if all("skipped" in r for r in runs):
            rows.append((name, "skipped: " + runs[0]["skipped"]) + ("",) * (len(header) - 2))
            continue

        def cells(get):
            return " / ".join("-" if "skipped" in r else get(r) for r in runs)

        rows.append((
            name,
            cells(lambda r: f"{r['reloads_ok']}/{r['reloads']}"),
            cells(lambda r: f"{r['upgrades_ok']}/{r['upgrades']}" if r["upgrades"] else "n/a"),
            cells(lambda r: str(r["requests"])),
            cells(lambda r: str(r["failed"])),
            cells(lambda r: str(r["refused"])),
            cells(lambda r: str(r["reset"])),
            cells(lambda r: f"{r['longest_s']:.2f}s"),
            cells(lambda r: str(r["stale"])),
            cells(lambda r: f"{r['status_checks'] - r['status_differs']}/{r['status_checks']}"
                  if r["status_checks"] else "n/a"),
        ))
    widths = [max(len(row[i]) for row in rows if len(row) > i) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    legend = []
    for name, runs in byName.items():
        legend.append(f"  {name}: {runs[0]['setup']}")
    return "\n".join(lines + [""] + legend)


def details(results, limit):
    out = []
    for r in results:
        tag = f"{r['balancer']} (run {r['run']})"
        if "skipped" in r:
            out.append(f"{tag}: skipped: {r['skipped']}")
        for note in r.get("notes", []):
            out.append(f"{tag}: note: {note}")
        for e in r.get("events", []):
            if not e["ok"]:
                out.append(f"{tag}: {e['event']} {e['index']} at {e['at_s']:.1f}s failed: "
                           f"{e['detail']}")
            if e.get("status_check"):
                out.append(f"{tag}: after {e['event']} {e['index']} at {e['at_s']:.1f}s: "
                           f"{e['status_check']}")
        if r.get("by_kind"):
            out.append(f"{tag}: failures by kind: "
                       + ", ".join(f"{k} {n}" for k, n in r["by_kind"].items()))
        for f in r.get("failures", [])[:limit]:
            out.append(
                f"{tag}: t={f['at']:.2f}s ({f['after']}) {f['request']} {f['failure']}"
                f" (took {f['took']:.2f}s{', reused connection' if f['reused_connection'] else ''})"
                + (f": {f['detail']}" if f["detail"] else "")
            )
        more = len(r.get("failures", [])) - limit
        if more > 0:
            out.append(f"{tag}: ... {more} more failures (see --json)")
        if r.get("stale"):
            out.append(f"{tag}: {r['stale']} responses from a member out of the config, e.g. "
                       f"{r['stale_examples'][:2]}")
    return "\n".join(out)


def parseArguments(argv):
    parser = argparse.ArgumentParser(
        prog="reload.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="balancers: " + ", ".join(NAMES),
    )
    add = parser.add_argument
    add("--only", metavar="NAME,NAME", help="run only these balancers (default: all)")
    add("--runs", type=int, default=1, help="runs of every row, one after the other (default 1)")
    add("--duration", type=float, default=40.0, metavar="S", help="seconds of load (default 40)")
    add("--reloads", type=int, default=10, help="config reloads per run (default 10)")
    add("--upgrades", type=int, default=3,
        help="binary upgrades per run, playbalancer rows only (default 3)")
    add("--clients", type=int, default=6, help="keep-alive client threads (default 6)")
    add("--new-every", type=float, default=0.005, metavar="S",
        help="pause of the new-connection thread between requests (default 0.005; 0: no thread)")
    add("--request-timeout", type=float, default=30.0, metavar="S",
        help="client socket timeout per request (default 30)")
    add("--upgrade-timeout", type=float, default=30.0, metavar="S",
        help="how long to wait for an upgrade's log line (default 30)")
    add("--reload-via", choices=("signal", "api", "cli"), default="signal",
        help="how playbalancer is told to reload: kill -HUP (default), POST /api/reload, "
             "or playbalancer reload")
    add("--json", metavar="FILE", help="also write every result, failures included, as JSON")
    add("--keep", action="store_true", help="keep the temporary directories (configs, logs)")
    add("--failures", type=int, default=10, metavar="N", help="failures listed per row (default 10)")
    add("--python", default=sys.executable,
        help="interpreter with playbalancer installed, for the members and playbalancer")
    add("--pypy", default=DEFAULT_PYPY, metavar="PATH",
        help="PyPy with playbalancer installed, for the -pypy rows (default: .venv-pypy)")
    add("--haproxy", metavar="PATH")
    add("--nginx", metavar="PATH")
    add("--apache2", metavar="PATH")
    add("--apache-modules", default="/usr/lib/apache2/modules", metavar="DIR")
    options = parser.parse_args(argv)
    if options.duration > 600 or options.duration < 10:
        parser.error("--duration: between 10 and 600 s")
    if options.reloads < 1 or options.reloads > 100 or options.upgrades < 0 or options.upgrades > 20:
        parser.error("--reloads 1..100, --upgrades 0..20")
    return options


def main(argv=None):
    options = parseArguments(sys.argv[1:] if argv is None else argv)
    # SIGTERM runs the clean-up in finally blocks, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    wanted = options.only.split(",") if options.only else NAMES
    unknown = [n for n in wanted if n not in NAMES]
    if unknown:
        raise SystemExit(f"reload: unknown balancer {', '.join(unknown)}; "
                         f"choose from {', '.join(NAMES)}")
    found = versions(options)
    log(time.strftime("%Y-%m-%d %H:%M:%S") + "  " + "; ".join(f"{k} {v}" for k, v in found.items()))
    results = []
    for run in range(1, options.runs + 1):
        for balancer in balancers(options):
            if balancer.name not in wanted:
                continue
            why = balancer.missing()
            if why:
                log(f"== {balancer.name}: skipped: {why}")
                results.append({"balancer": balancer.name, "setup": balancer.setup, "run": run,
                                "skipped": why})
                continue
            results.append(runOne(balancer, options, run))
            if options.json:
                save(options, found, results)

    print()
    print(table(results))
    extra = details(results, options.failures)
    if extra:
        print()
        print(extra)
    if options.json:
        save(options, found, results)
    return 0


def save(options, found, results):
    with open(options.json, "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": found,
                   "command": " ".join(sys.argv), "clients": options.clients,
                   "new_every_s": options.new_every, "duration_s": options.duration,
                   "reloads": options.reloads, "upgrades": options.upgrades,
                   "reload_via": options.reload_via, "runs": options.runs,
                   "results": results}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
