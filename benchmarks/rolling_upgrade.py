#!/usr/bin/env python3
"""
Rolling upgrade under load: how many requests does a balancer lose while
its two members are stopped and started again, one after the other?

Two demo members A and B (B the hot standby / backup) run on free ports on
127.0.0.1, the balancer under test in front.  Keep-alive client threads loop
over GET /, GET /slow?seconds=0.3 and a 16 KiB POST /echo, checking every
answer is a complete 200.  At 5 s member A is stopped (SIGTERM) and started
again (it takes a second to listen), at 15 s the same for B.  The run ends
at 25 s.

    python benchmarks/rolling_upgrade.py                    # every balancer found
    python benchmarks/rolling_upgrade.py --only playbalancer,haproxy --json out.json
    python benchmarks/rolling_upgrade.py --target http://127.0.0.1:8080 \\
        --exec-a 'my-upgrade app1' --exec-b 'my-upgrade app2'   # your own setup

Only the standard library is used by the script itself; the demo members
(and the playbalancer rows) need playbalancer importable by --python.  Peers
are found on PATH (and /usr/sbin); a missing one is skipped with a note.
See benchmarks/README.rst.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pwd
import grp
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

HERE = os.path.abspath(__file__)
POST_BODY = b"0123456789abcdef" * 1024  # 16 KiB
SLOW_SECONDS = "0.3"
KINDS = ("get", "slow", "post")

#: Runs twistd with a given interpreter (as playbalancer.demo does).
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


def now():
    return time.monotonic()


def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(text):
    print(text, flush=True)


# Processes: only the ones this script started, always by PID.


def alive(pid):
    """
    Whether C{pid} is a running (not zombie) process.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None


def stopPid(pid, timeout=10.0, sig=signal.SIGTERM):
    """
    Send C{sig} to C{pid}, wait up to C{timeout} for it to go, then SIGKILL.
    """
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = now() + timeout
    while alive(pid) and now() < deadline:
        time.sleep(0.05)
    if alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stopChild(child, timeout=10.0):
    """
    Stop a child we spawned (a Popen), by its PID, and reap it.
    """
    if child is None or child.poll() is not None:
        return
    try:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(5)


# Demo members.  Their spawn-time PIDs go to <workdir>/NAME.pid and to
# <workdir>/member-pids (every member ever started, for the final clean-up);
# the demo writes NAME.ready once it listens.


def startMember(python, workdir, name, port, delay=0.0):
    ready = os.path.join(workdir, name + ".ready")
    with open(os.path.join(workdir, name + ".log"), "ab") as out:
        child = subprocess.Popen(
            [python, "-m", "playbalancer.demo", "serve", "--port", str(port), "--name", name,
             "--pidfile", ready, "--startup-delay", str(delay)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    with open(os.path.join(workdir, name + ".pid"), "w") as f:
        f.write(f"{child.pid}\n")
    with open(os.path.join(workdir, "member-pids"), "a") as f:
        f.write(f"{child.pid}\n")
    return child


def stopMember(workdir, name):
    with open(os.path.join(workdir, name + ".pid")) as f:
        pid = int(f.read())
    for suffix in (".pid", ".ready"):
        try:
            os.unlink(os.path.join(workdir, name + suffix))
        except FileNotFoundError:
            pass
    stopPid(pid)
    return pid


def restartMember(args):
    """
    C{rolling_upgrade.py restart-member ...}: stop a demo member by its PID
    (SIGTERM), wait until it is gone, start it again.  Used as the
    C{--exec} of C{playbalancer rolling-restart} and for the abrupt restarts.
    """
    pid = stopMember(args.workdir, args.name)
    print(f"stopped {args.name} (pid {pid})", flush=True)
    if args.down:
        time.sleep(args.down)
    child = startMember(args.python, args.workdir, args.name, args.port, args.startup_delay)
    print(f"started {args.name} (pid {child.pid}, listening in {args.startup_delay:g}s)", flush=True)


def restartCommand(python, workdir, name, port, startupDelay, down):
    return shlex.join(
        [python, HERE, "restart-member", "--python", python, "--workdir", workdir, "--name", name,
         "--port", str(port), "--startup-delay", str(startupDelay), "--down", str(down)]
    )


def stopAllMembers(workdir, children):
    try:
        with open(os.path.join(workdir, "member-pids")) as f:
            pids = [int(line) for line in f if line.strip()]
    except FileNotFoundError:
        pids = []
    mine = []
    for pid in pids:
        line = cmdline(pid)
        # Never signal a PID that has been reused by something else.
        if alive(pid) and (line is None or (workdir in line and "playbalancer.demo" in line)):
            mine.append(pid)
    for pid in mine:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in mine:
        stopPid(pid, timeout=5, sig=0)
    for child in children:
        child.poll()


# The load.


class Load:
    """
    Keep-alive client threads, each with one http.client connection, looping
    over the three kinds of request until stopped.  Nothing is retried: every
    request that does not get a complete, correct 200 is a failure.
    """

    def __init__(self, url, clients, timeout, paths, checkContent):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise SystemExit(f"rolling_upgrade: expected an http:// URL, got {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.paths = paths
        self.checkContent = checkContent
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sent = 0
        self.ok = 0
        self.failures = []
        self.longest = (0.0, None, None)
        self.servedBy = Counter()
        self.threads = [
            threading.Thread(target=self.loop, args=(i, clients), daemon=True) for i in range(clients)
        ]

    def start(self):
        self.began = now()
        for t in self.threads:
            t.start()

    def stop(self):
        self.stopping.set()
        deadline = now() + self.timeout + 5
        for t in self.threads:
            t.join(max(0.1, deadline - now()))
        return [t for t in self.threads if t.is_alive()]

    def loop(self, index, clients):
        conn = None
        step = index
        while not self.stopping.is_set():
            kind = KINDS[step % len(KINDS)]
            step += 1
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            reused = conn.sock is not None
            started = now()
            status, failure, detail, served = None, None, "", None
            try:
                if kind == "post":
                    conn.request("POST", self.prefix + self.paths[kind], body=POST_BODY,
                                 headers={"Content-Type": "application/octet-stream"})
                else:
                    conn.request("GET", self.prefix + self.paths[kind])
                response = conn.getresponse()
                status = response.status
                served = response.getheader("x-served-by")
                body = response.read()
                if status != 200:
                    failure, detail = f"status {status}", oneLine(body)
                elif self.checkContent and not self.complete(kind, body):
                    failure, detail = "wrong body", oneLine(body)
                if response.will_close:
                    conn.close()
            except http.client.IncompleteRead as e:
                failure, detail = "truncated body", f"{len(e.partial)} bytes, {e.expected} missing"
            except http.client.RemoteDisconnected:
                failure = "closed before response"
            except ConnectionResetError:
                failure = "reset"
            except ConnectionRefusedError:
                failure = "refused"
            except BrokenPipeError:
                failure = "closed while sending"
            except socket.timeout:
                failure = "timeout"
            except (OSError, http.client.HTTPException) as e:
                failure, detail = "error", repr(e)
            elapsed = now() - started
            if failure is not None and conn is not None:
                conn.close()
                conn = None
            with self.lock:
                self.sent += 1
                if elapsed > self.longest[0]:
                    self.longest = (elapsed, kind, round(started - self.began, 2))
                if failure is None:
                    self.ok += 1
                    self.servedBy[served or "?"] += 1
                else:
                    self.failures.append({
                        "at": round(started - self.began, 3),
                        "took": round(elapsed, 3),
                        "request": kind,
                        "failure": failure,
                        "status": status,
                        "reused_connection": reused,
                        "detail": detail,
                    })
            if failure == "refused":
                time.sleep(0.01)  # the balancer itself is gone: do not spin
        if conn is not None:
            conn.close()

    @staticmethod
    def complete(kind, body):
        if kind == "get":
            return body.startswith(b"Hello from ")
        if kind == "slow":
            return b" waited " + SLOW_SECONDS.encode() + b"s" in body
        try:
            return json.loads(body)["body_length"] == len(POST_BODY)
        except (ValueError, KeyError, TypeError):
            return False

    def result(self):
        with self.lock:
            byKind = Counter(f"{f['request']}: {f['failure']}" for f in self.failures)
            return {
                "sent": self.sent,
                "ok": self.ok,
                "failed": len(self.failures),
                "failed_by_kind": dict(byKind.most_common()),
                "longest_s": round(self.longest[0], 3),
                "longest_request": self.longest[1],
                "longest_at_s": self.longest[2],
                "served_by": dict(self.servedBy),
                "failures": list(self.failures),
            }


def oneLine(body, limit=60):
    """
    The start of a response body as one line of text, HTML tags dropped.
    """
    text = re.sub(r"<[^>]*>", " ", body[:400].decode("latin-1"))
    return " ".join(text.split())[:limit]


def get(url, timeout=2.0):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def waitFor(test, timeout, what):
    deadline = now() + timeout
    while now() < deadline:
        try:
            if test():
                return
        except (OSError, http.client.HTTPException, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")


# Balancers under test.


def findBinary(name, given=None):
    if given:
        return given if os.access(given, os.X_OK) else None
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/usr/local/sbin:/sbin"
    return shutil.which(name, path=path)


def unprivileged():
    """
    The user and group a root-started nginx or Apache should switch to.
    """
    for user, group in (("www-data", "www-data"), ("nobody", "nogroup"), ("nobody", "nobody")):
        try:
            pwd.getpwnam(user)
            grp.getgrnam(group)
            return user, group
        except KeyError:
            continue
    return None


class Balancer:
    """
    One row of the table: starts a balancer in front of the members, knows
    how to upgrade a member the way this setup does it, stops it.
    """

    name = "?"
    setup = ""

    def __init__(self, options):
        self.options = options
        self.process = None
        self.port = None

    def missing(self):
        """
        Why this balancer cannot run here, or C{None}.
        """
        return None

    def start(self, workdir, members):
        raise NotImplementedError

    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def ready(self):
        """
        Wait until the balancer answers through member A.
        """
        waitFor(lambda: get(self.url() + "/")[1].startswith(b"Hello from app1"), 20,
                f"{self.name} to answer through member A")

    def upgradeCommand(self, member, restart):
        """
        The shell command that upgrades C{member}; C{restart} is the plain
        stop-and-start command for it.
        """
        return restart

    def spawn(self, argv, workdir, logname):
        with open(os.path.join(workdir, logname), "ab") as out:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=workdir,
            )
        self.logfile = os.path.join(workdir, logname)
        time.sleep(0.3)
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited at once: {tail(self.logfile)}")

    def stop(self):
        stopChild(self.process)


def tail(path, lines=5):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Playbalancer(Balancer):
    name = "playbalancer"
    setup = "rolling-restart (drain, restart, rise 2 checks, enable); checks 0.5s rise 2 fall 2"
    drain = True

    def missing(self):
        probe = subprocess.run(
            [self.options.python, "-c", "import playbalancer, twisted.scripts.twistd"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if probe.returncode != 0:
            return f"playbalancer is not importable by {self.options.python}"
        return None

    def start(self, workdir, members):
        self.port = freePort()
        self.managerPort = freePort()
        config = os.path.join(workdir, "playbalancer.toml")
        with open(config, "w") as f:
            f.write(f"""\
[[listen]]
endpoint = "tcp:{self.port}:interface=127.0.0.1"
balancer = "bench"

[manager]
endpoint = "tcp:{self.managerPort}:interface=127.0.0.1"

[balancer.bench]
scheduler = "standby"
retry = 60

[balancer.bench.health]
path = "/health"
interval = 0.5
timeout = 1
rise = 2
fall = 2

[[balancer.bench.member]]
name = "app1"
url = "http://127.0.0.1:{members['app1']}"

[[balancer.bench.member]]
name = "app2"
url = "http://127.0.0.1:{members['app2']}"
standby = true
""")
        self.spawn([self.options.python, "-c", TWISTD, "-n", "--pidfile=", "playbalancer",
                    "--config", config], workdir, "playbalancer.log")

    def ready(self):
        def healthy():
            status, body = get(f"http://127.0.0.1:{self.managerPort}/api/status")
            members = json.loads(body)["balancers"]["bench"]["members"]
            return status == 200 and all(m["healthy"] for m in members.values())

        waitFor(healthy, 20, "playbalancer's health checks to pass")
        Balancer.ready(self)

    def upgradeCommand(self, member, restart):
        if not self.drain:
            return restart
        return shlex.join(
            [self.options.python, "-m", "playbalancer.cli", "--manager",
             f"http://127.0.0.1:{self.managerPort}", "rolling-restart", "bench",
             "--members", member, "--timeout", "60", "--exec", restart]
        )


class PlaybalancerAbrupt(Playbalancer):
    name = "playbalancer-abrupt"
    setup = "members stopped/started without draining; checks 0.5s rise 2 fall 2"
    drain = False


class HAProxy(Balancer):
    name = "haproxy"
    setup = "check inter 500 rise 2 fall 2, B backup, option redispatch, retries 3"
    extra = ""
    observe = ""

    def missing(self):
        self.binary = findBinary("haproxy", self.options.haproxy)
        return None if self.binary else "haproxy not found (apt-get install haproxy)"

    def start(self, workdir, members):
        self.port = freePort()
        config = os.path.join(workdir, "haproxy.cfg")
        check = f"check inter 500 rise 2 fall 2{self.observe}"
        with open(config, "w") as f:
            f.write(f"""\
global
    nbthread 1

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    option redispatch
    retries 3

frontend fe
    bind 127.0.0.1:{self.port}
    default_backend be

backend be
    option httpchk GET /health
{self.extra}    server a 127.0.0.1:{members['app1']} {check}
    server b 127.0.0.1:{members['app2']} {check} backup
""")
        self.spawn([self.binary, "-db", "-f", config], workdir, "haproxy.log")


class HAProxyRetryOn(HAProxy):
    name = "haproxy-retry-on"
    setup = ("as haproxy + retry-on conn-failure empty-response response-timeout (not POST), "
             "observe layer4 error-limit 1 on-error mark-down")
    extra = ("    retry-on conn-failure empty-response response-timeout\n"
             "    http-request disable-l7-retry if METH_POST\n")
    observe = " observe layer4 error-limit 1 on-error mark-down"


class Nginx(Balancer):
    name = "nginx"
    setup = "B backup, defaults (max_fails=1 fail_timeout=10s, proxy_next_upstream error timeout)"

    def missing(self):
        self.binary = findBinary("nginx", self.options.nginx)
        return None if self.binary else "nginx not found (apt-get install nginx)"

    def start(self, workdir, members):
        self.port = freePort()
        config = os.path.join(workdir, "nginx.conf")
        temp = os.path.join(workdir, "nginx-temp")
        os.makedirs(temp)
        os.chmod(temp, 0o777)
        user = ""
        if os.geteuid() == 0 and unprivileged():
            user = "user %s %s;\n" % unprivileged()
        temps = "".join(
            f"    {kind}_temp_path {temp}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        with open(config, "w") as f:
            f.write(f"""\
{user}worker_processes 1;
error_log {workdir}/nginx-error.log;
pid {workdir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temps}    upstream app {{
        server 127.0.0.1:{members['app1']};
        server 127.0.0.1:{members['app2']} backup;
    }}
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
            proxy_pass http://app;
            proxy_set_header Host $http_host;
        }}
    }}
}}
""")
        self.spawn([self.binary, "-c", config, "-p", workdir, "-g", "daemon off;"], workdir,
                   "nginx.log")


class Apache(Balancer):
    name = "apache"
    setup = "mod_proxy_balancer, B status=+H, retry=1"
    retry = " retry=1"
    modules = ("mpm_event", "authz_core", "proxy", "proxy_http", "slotmem_shm",
               "proxy_balancer", "lbmethod_byrequests")

    def missing(self):
        self.binary = findBinary("apache2", self.options.apache2) or findBinary("httpd")
        if not self.binary:
            return "apache2 not found (apt-get install apache2)"
        gone = [m for m in self.modules if not os.path.exists(self.module(m))]
        if gone:
            return f"Apache modules missing in {self.options.apache_modules}: {', '.join(gone)}"
        return None

    def module(self, name):
        return os.path.join(self.options.apache_modules, f"mod_{name}.so")

    def start(self, workdir, members):
        self.port = freePort()
        run = os.path.join(workdir, "apache-run")
        os.makedirs(run)
        config = os.path.join(workdir, "apache2.conf")
        load = "".join(f"LoadModule {m}_module {self.module(m)}\n" for m in self.modules)
        user = ""
        if os.geteuid() == 0 and unprivileged():
            user = "User %s\nGroup %s\n" % unprivileged()
        with open(config, "w") as f:
            f.write(f"""\
{load}{user}ServerName 127.0.0.1
Listen 127.0.0.1:{self.port}
PidFile {workdir}/apache2.pid
DefaultRuntimeDir {run}
ErrorLog {workdir}/apache-error.log
LogLevel warn
KeepAlive On
MaxKeepAliveRequests 0
<Proxy balancer://mycluster>
    BalancerMember http://127.0.0.1:{members['app1']}{self.retry}
    BalancerMember http://127.0.0.1:{members['app2']} status=+H{self.retry}
</Proxy>
ProxyPreserveHost On
ProxyPass / balancer://mycluster/
ProxyPassReverse / http://127.0.0.1:{members['app1']}/
""")
        self.spawn([self.binary, "-d", workdir, "-f", config, "-DFOREGROUND"], workdir,
                   "apache2.log")


class ApacheRetry60(Apache):
    name = "apache-retry60"
    setup = "mod_proxy_balancer, B status=+H, default retry=60 (the story's setup)"
    retry = ""


class Target(Balancer):
    """
    The operator's own balancer at --target, upgraded by --exec-a/--exec-b.
    """

    name = "target"

    def __init__(self, options):
        Balancer.__init__(self, options)
        self.setup = options.target

    def url(self):
        return self.options.target.rstrip("/")

    def start(self, workdir, members):
        pass

    def ready(self):
        waitFor(lambda: get(self.url() + self.options.get_path)[0] == 200, 20,
                f"{self.url()} to answer 200")

    def stop(self):
        pass


BALANCERS = [Playbalancer, PlaybalancerAbrupt, Apache, ApacheRetry60, HAProxy, HAProxyRetryOn,
             Nginx]


def versions(options):
    found = {"python": sys.version.split()[0]}
    probes = [
        ("playbalancer", [options.python, "-c", "import playbalancer; print(playbalancer.__version__)"]),
        ("haproxy", [findBinary("haproxy", options.haproxy), "-v"]),
        ("nginx", [findBinary("nginx", options.nginx), "-v"]),
        ("apache2", [findBinary("apache2", options.apache2) or findBinary("httpd"), "-v"]),
    ]
    for name, argv in probes:
        if argv[0] is None:
            continue
        try:
            out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 timeout=10).stdout.decode("utf-8", "replace").strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out:
            found[name] = out.splitlines()[0]
    return found


# One run.


class Hook(threading.Thread):
    """
    Runs an upgrade command with /bin/sh in its own process group, bounded
    in time; records when it ran, its exit status and output.
    """

    def __init__(self, label, command, began, timeout, env):
        threading.Thread.__init__(self, daemon=True)
        self.label = label
        self.command = command
        self.began = began
        self.timeout = timeout
        self.env = env
        self.code = None
        self.output = ""
        self.start_at = self.end_at = None

    def run(self):
        self.start_at = now() - self.began
        child = subprocess.Popen(["/bin/sh", "-c", self.command], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 env=self.env, start_new_session=True)
        try:
            out, _ = child.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            # The process group is the one this script created for the hook.
            os.killpg(child.pid, signal.SIGTERM)
            try:
                out, _ = child.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                out, _ = child.communicate()
            out += b"\n(killed after %gs)" % self.timeout
        self.code = child.returncode
        self.output = out.decode("utf-8", "replace").strip()
        self.end_at = now() - self.began

    def summary(self):
        if self.end_at is None:
            return f"{self.label}: still running"
        return f"{self.label}: exit {self.code}, t={self.start_at:.1f}-{self.end_at:.1f}s"


def runOne(balancer, options):
    """
    The scenario through one balancer; its result dict.
    """
    root = tempfile.mkdtemp(prefix="rolling-upgrade-")
    os.chmod(root, 0o755)  # nginx/Apache workers (unprivileged) read their temp dirs in here
    children = []
    members = {}
    hooks = []
    result = {"balancer": balancer.name, "setup": balancer.setup}
    ownMembers = not options.target or options.members
    try:
        if ownMembers:
            ports = options.members or [freePort(), freePort()]
            for name, port in zip(("app1", "app2"), ports):
                members[name] = port
                children.append(startMember(options.python, root, name, port))
            for name in members:
                waitFor(lambda: os.path.exists(os.path.join(root, name + ".ready")), 20,
                        f"member {name} to listen")
        balancer.start(root, members)
        balancer.ready()
        load = Load(balancer.url(), options.clients, options.request_timeout,
                    {"get": options.get_path, "slow": options.slow_path, "post": options.post_path},
                    not options.no_content_checks)
        plan = []
        for (label, member, command), at in zip(
            (("A", "app1", options.exec_a), ("B", "app2", options.exec_b)), options.restart_at
        ):
            env = dict(os.environ, BENCH_MEMBER=label, BENCH_BALANCER_URL=balancer.url())
            if ownMembers:
                restart = restartCommand(options.python, root, member, members[member],
                                         options.startup_delay, options.down)
                env["BENCH_RESTART"] = restart
                env["BENCH_MEMBER_URL"] = f"http://127.0.0.1:{members[member]}"
                command = command or balancer.upgradeCommand(member, restart)
            if command and at < options.duration:
                plan.append((at, label, command, env))
        log(f"== {balancer.name}: {balancer.setup}")
        load.start()
        for at, label, command, env in plan:
            while now() - load.began < at:
                time.sleep(0.05)
                for child in children:
                    child.poll()  # reap members stopped by the restart helper
            log(f"   t={now() - load.began:5.1f}s upgrade {label}")
            hook = Hook(f"upgrade {label}", command, load.began, options.hook_timeout, env)
            hooks.append(hook)
            hook.start()
        while now() - load.began < options.duration:
            time.sleep(0.05)
        stuck = load.stop()
        for hook in hooks:
            hook.join(max(0.0, options.hook_timeout + 10 - (now() - load.began - hook.start_at)))
        result.update(load.result())
        result["duration_s"] = options.duration
        result["upgrades"] = [
            {"member": h.label, "command": h.command, "exit": h.code, "from_s": h.start_at,
             "to_s": h.end_at, "output": h.output} for h in hooks
        ]
        notes = [h.summary() for h in hooks if h.code != 0]
        if stuck:
            notes.append(f"{len(stuck)} client thread(s) still waiting at the end")
        if balancer.process is not None and balancer.process.poll() is not None:
            notes.append(f"{balancer.name} exited during the run: {tail(balancer.logfile)}")
        result["notes"] = notes
        log(f"   sent {result['sent']}, failed {result['failed']}, longest {result['longest_s']:.2f}s")
        if options.verbose:
            for hook in hooks:
                log(f"   -- {hook.summary()}\n" + "\n".join("      " + line for line in hook.output.splitlines()))
    except (RuntimeError, OSError) as e:
        result["skipped"] = str(e)
        log(f"   {balancer.name}: {e}")
    finally:
        balancer.stop()
        for hook in hooks:
            hook.join(15)
        stopAllMembers(root, children)
        if options.keep:
            log(f"   kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return result


# Output.


def table(results):
    rows = [("balancer", "sent", "failed", "failures (request: kind count)", "longest", "A/B ok")]
    for r in results:
        if "skipped" in r:
            rows.append((r["balancer"], "-", "-", "skipped: " + r["skipped"], "-", "-"))
            continue
        kinds = ", ".join(f"{k} {n}" for k, n in r["failed_by_kind"].items()) or "-"
        served = r["served_by"]
        rows.append((r["balancer"], str(r["sent"]), str(r["failed"]), kinds,
                     f"{r['longest_s']:.2f}s", f"{served.get('app1', 0)}/{served.get('app2', 0)}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i in (0, 3) else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    legend = [f"  {r['balancer']}: {r['setup']}" for r in results if r.get("setup")]
    return "\n".join(lines + [""] + legend)


def details(results, limit):
    out = []
    for r in results:
        for note in r.get("notes", []):
            out.append(f"{r['balancer']}: note: {note}")
        for f in r.get("failures", [])[:limit]:
            out.append(
                f"{r['balancer']}: t={f['at']:.2f}s {f['request']} {f['failure']}"
                f" (took {f['took']:.2f}s{', reused connection' if f['reused_connection'] else ''})"
                + (f": {f['detail']}" if f["detail"] else "")
            )
        more = len(r.get("failures", [])) - limit
        if more > 0:
            out.append(f"{r['balancer']}: ... {more} more failures (see --json)")
    return "\n".join(out)


def parseArguments(argv):
    parser = argparse.ArgumentParser(
        prog="rolling_upgrade.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="balancers: " + ", ".join(b.name for b in BALANCERS),
    )
    add = parser.add_argument
    add("--only", metavar="NAME,NAME", help="run only these balancers (default: all)")
    add("--duration", type=float, default=25.0, metavar="S", help="seconds of load (default 25)")
    add("--clients", type=int, default=6, help="client threads (default 6)")
    add("--restart-at", default="5,15", metavar="SA,SB",
        help="when to upgrade A and B, seconds into the run (default 5,15)")
    add("--startup-delay", type=float, default=1.0, metavar="S",
        help="seconds a restarted demo member takes to listen (default 1)")
    add("--down", type=float, default=0.0, metavar="S",
        help="seconds between stopping and starting a demo member (default 0)")
    add("--request-timeout", type=float, default=30.0, metavar="S",
        help="client socket timeout per request (default 30)")
    add("--hook-timeout", type=float, default=120.0, metavar="S",
        help="an upgrade command is killed after this long (default 120)")
    add("--json", metavar="FILE", help="also write every result, failures included, as JSON")
    add("--keep", action="store_true", help="keep the temporary directories (configs, logs)")
    add("-v", "--verbose", action="store_true", help="show the upgrade commands' output")
    add("--failures", type=int, default=10, metavar="N", help="failures listed per balancer (default 10)")
    add("--python", default=sys.executable,
        help="interpreter with playbalancer installed, for members and playbalancer")
    add("--haproxy", metavar="PATH")
    add("--nginx", metavar="PATH")
    add("--apache2", metavar="PATH")
    add("--apache-modules", default="/usr/lib/apache2/modules", metavar="DIR")
    own = parser.add_argument_group("your own balancer")
    own.add_argument("--target", metavar="URL", help="run the load against this balancer instead")
    own.add_argument("--exec-a", metavar="COMMAND", help="shell command that upgrades member A")
    own.add_argument("--exec-b", metavar="COMMAND", help="shell command that upgrades member B")
    own.add_argument("--members", metavar="PORTA,PORTB",
                     help="start demo members A and B on these ports (for your balancer to use)")
    own.add_argument("--get-path", default="/")
    own.add_argument("--slow-path", default="/slow?seconds=" + SLOW_SECONDS)
    own.add_argument("--post-path", default="/echo")
    own.add_argument("--no-content-checks", action="store_true",
                     help="only require a complete 200 (for apps other than the demo)")
    options = parser.parse_args(argv)
    try:
        options.restart_at = [float(x) for x in options.restart_at.split(",")]
        if options.members:
            options.members = [int(x) for x in options.members.split(",")]
            if len(options.members) != 2:
                raise ValueError
    except ValueError:
        parser.error("--restart-at and --members take two comma-separated numbers")
    if (options.exec_a or options.exec_b or options.members) and not options.target:
        parser.error("--exec-a, --exec-b and --members go with --target")
    if options.target and not (options.exec_a or options.exec_b or options.members):
        parser.error("--target needs --exec-a/--exec-b, or --members to restart the demo members")
    return options


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["restart-member"]:
        helper = argparse.ArgumentParser(prog="rolling_upgrade.py restart-member")
        for name in ("--python", "--workdir", "--name"):
            helper.add_argument(name, required=True)
        helper.add_argument("--port", type=int, required=True)
        helper.add_argument("--startup-delay", type=float, default=1.0)
        helper.add_argument("--down", type=float, default=0.0)
        restartMember(helper.parse_args(argv[1:]))
        return 0
    options = parseArguments(argv)
    # SIGTERM runs the clean-up in finally blocks, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))

    if options.target:
        chosen = [Target(options)]
    else:
        names = [b.name for b in BALANCERS]
        wanted = options.only.split(",") if options.only else names
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise SystemExit(f"rolling_upgrade: unknown balancer {', '.join(unknown)}; "
                             f"choose from {', '.join(names)}")
        chosen = [b(options) for b in BALANCERS if b.name in wanted]

    found = versions(options)
    log(time.strftime("%Y-%m-%d %H:%M:%S") + "  " + "; ".join(f"{k} {v}" for k, v in found.items()))
    results = []
    for balancer in chosen:
        why = balancer.missing()
        if why:
            log(f"== {balancer.name}: skipped: {why}")
            results.append({"balancer": balancer.name, "setup": balancer.setup, "skipped": why})
            continue
        results.append(runOne(balancer, options))

    print()
    print(table(results))
    extra = details(results, options.failures)
    if extra:
        print()
        print(extra)
    if options.json:
        with open(options.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": found,
                       "clients": options.clients, "duration_s": options.duration,
                       "restart_at_s": options.restart_at, "results": results}, f, indent=2)
    return 1 if any("skipped" in r for r in results) and len(chosen) == 1 else 0


if __name__ == "__main__":
    sys.exit(main())
