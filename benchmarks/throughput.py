#!/usr/bin/env python3
"""
Throughput benchmark: playbalancer side by side with HAProxy, nginx, Apache
httpd (mod_proxy_balancer) and Twisted's stock proxies.

Two nginx members on 127.0.0.1 serve /small (100 bytes) and /big (1 MiB);
each balancer in turn sits in front of them and ``wrk -t1 --latency`` drives
it over keep-alive connections.  For every run it records requests/s, MiB/s,
p50/p99 latency, errors, and the CPU seconds the balancer's whole process
tree used, giving requests (and MiB) per balancer CPU-second: the fair
figure when wrk, the members and the balancer share a small machine.  The
"tls" tests drive playbalancer (CPython and PyPy), nginx and HAProxy over
HTTPS instead, each terminating TLS with the same certificate (made once
per run), keep-alive or with a new connection (a handshake) per request.

    python benchmarks/throughput.py --python .venv/bin/python --runs 3 --duration 10 --json out.json
    python benchmarks/throughput.py --only playbalancer,haproxy --tests small-50 --runs 1 --duration 3
    python benchmarks/throughput.py --report out.json --table rst   # a table from an earlier run
    python benchmarks/throughput.py --ab /path/to/old/checkout --only playbalancer,playbalancer-pypy \
        --tests small-50,big-10 --runs 6 --duration 8    # old commit against this one
    python benchmarks/throughput.py --only playbalancer,playbalancer-routes1000 \
        --tests small-50,small-200,big-10 --runs 6 --duration 10   # 1,000 routes against 1

The script uses only the standard library (Python 3.9+).  The playbalancer
rows and the Twisted floors run under --python (default: this interpreter),
which must have playbalancer and Twisted; --pypy adds a PyPy row.  Missing
wrk/nginx/haproxy/apache2 are installed with apt-get (as root) unless
--no-install.  Members and balancers listen only on 127.0.0.1 ports 20000 to
20999, each config and log lives in one temporary directory, and every
process is stopped by its PID when the script ends, also on Ctrl-C.  Peer
configs are templates in benchmarks/peers/.

--ab OLD_TREE compares two commits of playbalancer in one invocation: every
playbalancer row selected is run twice, as NAME-new with this script's tree
(the directory above benchmarks/) first on PYTHONPATH and as NAME-old with
OLD_TREE (another checkout of playbalancer, for example a git worktree of
the old commit) first on PYTHONPATH, on the same interpreters.  Before a
row starts, its interpreter is asked, with that row's environment and
working directory, where it imports playbalancer from; a row whose import
does not come from its tree is skipped.  Each pair is measured back to back
on every test, new then old on odd runs and old then new on even runs
(ABBA), so drift over the invocation falls on both alike; use an even
--runs.  The report then adds a section per pair and test: the medians of
requests (and MiB) per CPU-second old and new, new/old, the range of the
per-run new/old ratios (each run's pair was measured back to back), each
side's range over the runs, and whether the two ranges overlap.  See
benchmarks/README.rst.

The routes rows, playbalancer-routes1000 and playbalancer-pypy-routes1000
(named in --only; not in the default), are playbalancer and
playbalancer-pypy with 1,000 [[listen.route]] tables on the HTTP listener
(500 exact hosts site0.example to site499.example, paths / and /api, all to
the same balancer) instead of its balancer = "web", and take the HTTP tests
only.  Every playbalancer row's HTTP tests send Host: site250.example, which
the routes rows take by that host's "/" route.  Before a routes row is
measured, its config must have exactly 1,000 route tables in the HTTP
listener (by the text, and by playbalancer check under the row's
interpreter), and requests for routed hosts must get a member's 200 while
another host gets playbalancer's own 404; else the row is skipped.  Without
--ab each routes row and its one-route row are measured back to back
(ABBA), and the report adds routes/one per test, with the cost (1 - it).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import pwd
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections import namedtuple

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "peers")
REPO = os.path.dirname(HERE)
#: The PyPy venv the Makefile's test-pypy target makes, if there is one.
DEFAULT_PYPY = (os.path.join(REPO, ".venv-pypy", "bin", "python")
                if os.path.exists(os.path.join(REPO, ".venv-pypy", "bin", "python")) else None)
PORTS = range(20000, 21000)
SMALL = 100
BIG = 1 << 20
MIB = float(1 << 20)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: The routes rows (playbalancer-routes1000, playbalancer-pypy-routes1000):
#: ROUTES [[listen.route]] tables on the HTTP listener, instead of its
#: C{balancer = "web"}: ROUTES / 2 exact host names, site0.example,
#: site1.example, ..., each with the paths in ROUTE_PATHS, every one to
#: balancer "web".  No route takes any host, so a request for another
#: host gets playbalancer's own 404.
ROUTES = 1000
ROUTE_PATHS = ("/", "/api")
#: The Host every playbalancer row's HTTP tests send (wrk, and the
#: readiness checks): a name in the middle of the routes rows' hosts,
#: whose "/" route takes /small and /big.  For the other playbalancer rows
#: it is just a Host (their one route takes any).
ROUTED_HOST = "site250.example"
#: A host no route of the routes rows takes.
UNROUTED_HOST = "unrouted.example"

#: A test: C{mode} "http", "tcp" or "tls" (HTTP over TLS, the balancer
#: terminating it); C{close} sends C{Connection: close}, so every request
#: comes on a new connection (and, over TLS, a new handshake).
Test = namedtuple("Test", "name mode path connections title close", defaults=(False,))

TESTS = [
    Test("small-50", "http", "/small", 50, "HTTP, 100 B body, 50 conns"),
    Test("small-200", "http", "/small", 200, "HTTP, 100 B body, 200 conns"),
    Test("big-10", "http", "/big", 10, "HTTP, 1 MiB body, 10 conns"),
    Test("tcp-small-50", "tcp", "/small", 50, "TCP mode, 100 B body, 50 conns"),
    Test("tcp-big-10", "tcp", "/big", 10, "TCP mode, 1 MiB body, 10 conns"),
    Test("tls-small-50", "tls", "/small", 50, "HTTPS keep-alive, 100 B body, 50 conns"),
    Test("tls-newconn-50", "tls", "/small", 50,
         "HTTPS, a new connection (TLS handshake) per request, 100 B body, 50 conns",
         close=True),
]

#: The Debian package that brings each binary.
PACKAGES = {"wrk": "wrk", "nginx": "nginx", "haproxy": "haproxy", "apache2": "apache2"}

#: Apache modules the balancer config loads (besides unixd when root).
APACHE_MODULES = [
    "mpm_event",
    "authz_core",
    "proxy",
    "proxy_http",
    "slotmem_shm",
    "proxy_balancer",
    "lbmethod_byrequests",
]

#: Prints an interpreter's versions as JSON (run with --python / --pypy).
VERSIONS_SNIPPET = """\
import json, platform, sys
info = {"python": platform.python_implementation() + " " + platform.python_version(),
        "executable": sys.executable}
try:
    from twisted import version
    info["twisted"] = version.short()
except Exception as e:
    info["twisted"] = "not importable: %s" % (e,)
try:
    from playbalancer._version import __version__
    info["playbalancer"] = __version__
    import playbalancer
    info["playbalancer_file"] = playbalancer.__file__
except Exception as e:
    info["playbalancer"] = "not importable: %s" % (e,)
try:  # the OpenSSL that Twisted's TLS uses (cryptography's own, in a wheel)
    from OpenSSL import SSL
    info["openssl"] = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
except Exception as e:
    info["openssl"] = "not importable: %s" % (e,)
print(json.dumps(info))
"""

#: The TLS listener each balancer gets (only when a "tls" test runs).  One
#: certificate and key (EC P-256, made once per invocation) serve them all;
#: HTTP/1.1 only (no HTTP/2), TLS 1.2 and 1.3 allowed, session caches and
#: tickets at each program's defaults unless --tls-no-resumption.
PLAYBALANCER_TLS = """
[[listen]]
endpoint = "ssl:${tls_port}:interface=127.0.0.1:privateKey=${key}:certKey=${cert}"
balancer = "web"
"""



def routeTables(count):
    """
    The routes rows' C{count} [[listen.route]] tables, as TOML to go in the
    HTTP [[listen]] (they attach to the [[listen]] above them): C{count} /
    len(L{ROUTE_PATHS}) exact host names site0.example, site1.example, ...,
    each with every path of L{ROUTE_PATHS}, all to balancer "web".
    """
    hosts = count // len(ROUTE_PATHS)
    if hosts * len(ROUTE_PATHS) != count or f"site{hosts // 2}.example" != ROUTED_HOST:
        raise ValueError(f"{count} routes: not {len(ROUTE_PATHS)} paths a host around "
                         f"{ROUTED_HOST}")
    return "\n".join(f'[[listen.route]]\nhost = "site{i}.example"\npath = "{path}"\n'
                     f'balancer = "web"\n'
                     for i in range(hosts) for path in ROUTE_PATHS)


HAPROXY_TLS = """
frontend tls_in
    mode http
    bind 127.0.0.1:${tls_port} ssl crt ${pem} alpn http/1.1 ssl-min-ver TLSv1.2${bind_options}
    option http-keep-alive
    default_backend http_members
"""

NGINX_TLS = """
    server {
        listen 127.0.0.1:${tls_port} ssl;
        ssl_certificate ${cert};
        ssl_certificate_key ${key};
        ssl_protocols TLSv1.2 TLSv1.3;${server_options}
        location / {
            proxy_pass http://members;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
"""


def log(text):
    """
    A progress line on stderr (stdout gets the table).
    """
    print(text, file=sys.stderr, flush=True)


def fill(template, path, **values):
    """
    Write the template C{benchmarks/peers/TEMPLATE}, its C{$names} filled in
    from C{values}, to C{path}.
    """
    with open(os.path.join(PEERS, template)) as f:
        text = string.Template(f.read()).substitute(values)
    with open(path, "w") as f:
        f.write(text)
    return path


def appendTo(path, template, **values):
    """
    Append the C{template} string, its C{$names} filled in from C{values},
    to the file at C{path} (a peer's config filled by L{fill}).
    """
    with open(path, "a") as f:
        f.write(string.Template(template).substitute(values))


def findBinary(name):
    """
    The path of the program C{name} on PATH or in /usr/sbin, or L{None}.
    """
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def ensurePackages(names, install):
    """
    Make sure the programs C{names} exist, installing the missing ones with
    apt-get (one C{apt-get update} first) when C{install} is true and we are
    root.  Returns C{{name: path or None}}.
    """
    missing = [n for n in names if findBinary(n) is None]
    if missing and install:
        if os.geteuid() != 0:
            log(f"not root: cannot install {', '.join(missing)}")
        else:
            log(f"installing {', '.join(PACKAGES[n] for n in missing)} with apt-get")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq"] + [PACKAGES[n] for n in missing],
                env=env,
                check=False,
            )
    return {n: findBinary(n) for n in names}


# Processes: only those this script started, each in its own process group.


class Processes:
    """
    Every process this script started.  Each runs in a new session (its own
    process group, with the PID as the group ID), so stopping one stops its
    children too (Apache's, nginx's workers) and nothing else.
    """

    def __init__(self):
        self.running = []

    def spawn(self, argv, logPath, cwd=None, env=None):
        """
        Start C{argv} with its output going to C{logPath} (and C{env}
        added to this environment); returns the L{subprocess.Popen}.
        """
        with open(logPath, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(os.environ, **env) if env else None,
                start_new_session=True,
            )
        self.running.append(proc)
        return proc

    def stop(self, proc, grace=5.0):
        """
        SIGTERM to C{proc}'s process group, then SIGKILL after C{grace}
        seconds if it is still there.  The group is signalled by its ID only
        while C{proc} has not been waited for (until then its PID, the group
        ID, cannot be reused); anything left in the group afterwards is
        killed by its own PID.
        """
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                continue
        for pid in groupMembers(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if proc in self.running:
            self.running.remove(proc)

    def stopAll(self):
        """
        Stop every process still registered, newest first.
        """
        for proc in list(reversed(self.running)):
            self.stop(proc)


class PortPool:
    """
    Free ports on 127.0.0.1 within L{PORTS}, each handed out once.
    """

    def __init__(self):
        self.taken = set()

    def take(self):
        """
        A port that nothing listens on now (a test bind succeeds).
        """
        candidates = list(PORTS)
        random.shuffle(candidates)
        for port in candidates:
            if port in self.taken:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            self.taken.add(port)
            return port
        raise RuntimeError("no free port in 20000-20999")


def tail(path, lines=15):
    """
    The last C{lines} lines of the file at C{path} (for error messages).
    """
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def fetch(port, path, timeout=2.0, context=None, host=None):
    """
    GET C{path} from 127.0.0.1:C{port} on a new connection (HTTPS with the
    L{ssl.SSLContext} C{context}, if given), with C{Host: host} if given
    (else 127.0.0.1:PORT); returns C{(status, member header, body
    length)}.
    """
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        response = conn.getresponse()
        body = response.read()
        return response.status, response.getheader("X-Member"), len(body)
    finally:
        conn.close()


def waitReady(proc, port, logPath, timeout=30.0, context=None, host=None):
    """
    Wait until C{GET /small} on C{port} (over TLS with C{context}; with
    C{Host: host} if given) gives a complete 200.  Raises L{RuntimeError}
    with the log's tail if the process exits or time runs out.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{tail(logPath)}")
        try:
            status, _, length = fetch(port, "/small", context=context, host=host)
            if status == 200 and length == SMALL:
                return
        except (OSError, http.client.HTTPException):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"not answering on port {port} after {timeout:.0f} s:\n"
                               f"{tail(logPath)}")
        time.sleep(0.1)


def membersSeen(port, tries=6, context=None, host=None):
    """
    Which members answered C{tries} requests on new connections through the
    balancer on C{port} (both should, for a balancer that balances), sent
    with C{Host: host} if given.
    """
    seen = set()
    for _ in range(tries):
        try:
            seen.add(fetch(port, "/small", context=context, host=host)[1])
        except (OSError, http.client.HTTPException):
            pass
    return sorted(str(s) for s in seen)


# TLS: one key and certificate per invocation, and what a handshake gives.


def makeCertificate(ctx, directory):
    """
    Write an EC P-256 key and a self-signed certificate for localhost and
    127.0.0.1 into C{directory} with the openssl command, or else with
    C{playbalancer.testing.writeSelfSigned} under --python (the
    C{cryptography} package), plus the two in one file for HAProxy.
    Returns C{{"key", "cert", "pem", "made_by"}}; raises L{RuntimeError}.
    """
    os.makedirs(directory)
    key, cert = os.path.join(directory, "key.pem"), os.path.join(directory, "cert.pem")
    openssl = findBinary("openssl")
    madeBy = None
    if openssl:
        result = subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "7", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", key, "-out", cert], capture_output=True, text=True, timeout=60)
        if result.returncode == 0:
            madeBy = firstLine([openssl, "version"])
    if madeBy is None:
        code = ("import sys; from playbalancer.testing import writeSelfSigned; "
                "writeSelfSigned(sys.argv[1])")
        result = subprocess.run([ctx.args.python, "-c", code, directory],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"no certificate: openssl {'failed' if openssl else 'not found'}, "
                               f"and writeSelfSigned gave:\n{result.stderr[-600:]}")
        madeBy = "playbalancer.testing.writeSelfSigned (cryptography)"
    pem = os.path.join(directory, "haproxy.pem")
    with open(pem, "w") as out:
        for path in (cert, key):
            with open(path) as f:
                out.write(f.read())
    # The peers' workers may run as another user; they read the files as
    # root at start, but keep the directory readable anyway (127.0.0.1 only).
    for path in (key, cert, pem):
        os.chmod(path, 0o644)
    return {"key": key, "cert": cert, "pem": pem, "made_by": madeBy}


def clientContext(certPath):
    """
    The benchmark's own TLS client context: it trusts only the invocation's
    certificate (so every balancer must present it) and checks 127.0.0.1.
    """
    context = ssl.create_default_context(cafile=certPath)
    context.set_alpn_protocols(["http/1.1"])
    return context


def tlsInfo(port, context):
    """
    What a TLS client gets from 127.0.0.1:C{port}: the protocol version,
    cipher, ALPN answer, and whether a second connection that offers the
    first one's session (as wrk does when it reconnects) resumed it.
    """
    def once(session=None):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1",
                                     session=session) as s:
                s.sendall(b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Connection: close\r\n\r\n")
                # Reading to the end also takes in TLS 1.3 session tickets.
                while True:
                    try:
                        if not s.recv(65536):
                            break
                    except ssl.SSLError:
                        break
                return {"version": s.version(), "cipher": s.cipher()[0],
                        "alpn": s.selected_alpn_protocol(),
                        "resumed": s.session_reused}, s.session

    try:
        first, session = once()
        second, _ = once(session)
    except (OSError, ssl.SSLError) as e:
        return {"error": str(e)}
    first["resumes_sessions"] = bool(second["resumed"])
    del first["resumed"]
    return first


# CPU accounting from /proc.


def readStat(pid):
    """
    C{(ppid, cpu seconds, process group)} of C{pid} from /proc/PID/stat.
    The CPU seconds are utime + stime, plus cutime + cstime (children that
    ended and were waited for, so a worker replaced in the middle of a run
    still counts).  L{None} if the process is gone.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after it.
    fields = data[data.rindex(")") + 2:].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return int(fields[1]), ticks / CLOCK_TICKS, int(fields[2])


def allStats():
    """
    L{readStat} of every process in /proc, by PID.
    """
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = readStat(int(name))
            if stat is not None:
                stats[int(name)] = stat
    return stats


def groupMembers(pgid):
    """
    The PIDs of the processes in the process group C{pgid}.
    """
    return [pid for pid, stat in allStats().items() if stat[2] == pgid]


def treeCpu(root):
    """
    CPU seconds used so far by C{root} and all its descendants (found
    through the ppid of every process in /proc).
    """
    stats = allStats()
    children = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo.extend(children.get(pid, ()))
    return total


def machineCpu():
    """
    C{(busy, total)} jiffies of the whole machine from /proc/stat.
    """
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# wrk.


def wrkCommand(wrk, port, test, seconds, timeout, host=None):
    """
    The wrk command line for one C{test} against 127.0.0.1:C{port}: HTTPS
    for a "tls" test, C{Connection: close} (a new connection for every
    request) for a C{close} test, and C{Host: host} instead of wrk's
    127.0.0.1:PORT when C{host} is given.
    """
    scheme = "https" if test.mode == "tls" else "http"
    close = ["-H", "Connection: close"] if test.close else []
    hostHeader = ["-H", f"Host: {host}"] if host else []
    return [wrk, "-t1", f"-c{test.connections}", f"-d{seconds}s", "--latency",
            f"--timeout={timeout}s"] + close + hostHeader + [
                f"{scheme}://127.0.0.1:{port}{test.path}"]


TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
SIZE_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}


def parseWrk(text):
    """
    The figures in wrk's C{--latency} output: requests, seconds, bytes read,
    p50/p99 in ms, socket errors, non-2xx/3xx responses.  Raises
    L{ValueError} if the summary is missing.
    """
    done = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", text)
    if done is None:
        raise ValueError("no summary in wrk output:\n" + text[-800:])
    latency = dict(
        (pct, float(value) * TIME_UNITS[unit])
        for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(\w+)\s*$", text, re.M)
    )
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                        text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "requests": int(done.group(1)),
        "seconds": float(done.group(2)) * TIME_UNITS[done.group(3)] / 1e3,
        "bytes": float(done.group(4)) * SIZE_UNITS[done.group(5)],
        "p50_ms": latency.get("50"),
        "p99_ms": latency.get("99"),
        "socket_errors": sum(int(v) for v in sockets.groups()) if sockets else 0,
        "socket_errors_detail": sockets.group(0) if sockets else "",
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def runWrk(procs, wrk, port, test, seconds, timeout, logPath, host=None):
    """
    Run wrk to the end (with C{Host: host} if given) and return its output.
    It is started like the servers (own process group, registered) so that
    Ctrl-C stops it too.
    """
    with open(logPath, "w"):
        pass
    proc = procs.spawn(wrkCommand(wrk, port, test, seconds, timeout, host), logPath)
    try:
        proc.wait(seconds + timeout + 30)
    finally:
        procs.stop(proc)
    with open(logPath, errors="replace") as f:
        return f.read()


def measure(ctx, balancer, test):
    """
    One measured run of C{test} through C{balancer}: a warm-up, then wrk
    with the balancer's CPU time (and wrk's, and the machine's) sampled
    around it.  Returns the run's figures.
    """
    port = balancer.ports[test.mode]
    host = balancer.hostFor(test.mode)
    wrkLog = os.path.join(ctx.workdir, "wrk.log")
    if ctx.args.warmup > 0:
        runWrk(ctx.procs, ctx.binaries["wrk"], port, test, ctx.args.warmup,
               ctx.args.wrk_timeout, wrkLog, host)
    cpuBefore = treeCpu(balancer.proc.pid)
    boxBefore = machineCpu()
    wrkBefore = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = runWrk(ctx.procs, ctx.binaries["wrk"], port, test, ctx.args.duration,
                    ctx.args.wrk_timeout, wrkLog, host)
    wrkAfter = resource.getrusage(resource.RUSAGE_CHILDREN)
    boxAfter = machineCpu()
    cpu = treeCpu(balancer.proc.pid) - cpuBefore
    if balancer.proc.poll() is not None:
        raise RuntimeError(f"balancer exited with {balancer.proc.returncode} during the run:\n"
                           f"{tail(balancer.logPath)}")
    figures = parseWrk(output)
    seconds = figures["seconds"] or ctx.args.duration
    mib = figures["bytes"] / MIB
    busy = (boxAfter[0] - boxBefore[0]) / max(1, boxAfter[1] - boxBefore[1])
    figures.update(
        rps=figures["requests"] / seconds,
        mib_s=mib / seconds,
        errors=figures["socket_errors"] + figures["non_2xx"],
        cpu_s=cpu,
        cpu_cores=cpu / seconds,
        req_per_cpu_s=figures["requests"] / cpu if cpu > 0 else None,
        mib_per_cpu_s=mib / cpu if cpu > 0 else None,
        wrk_cpu_s=(wrkAfter.ru_utime + wrkAfter.ru_stime)
        - (wrkBefore.ru_utime + wrkBefore.ru_stime),
        machine_busy_cores=busy * (os.cpu_count() or 1),
    )
    return figures


# Members.


class Member:
    """
    One nginx member serving /small and /big, in its own directory.
    """

    def __init__(self, name):
        self.name = name
        self.port = None
        self.proc = None

    def start(self, ctx):
        """
        Write the member's files and config, start nginx, wait until it answers.
        """
        workdir = os.path.join(ctx.workdir, self.name)
        os.makedirs(os.path.join(workdir, "html"))
        os.makedirs(os.path.join(workdir, "tmp"))
        with open(os.path.join(workdir, "html", "small"), "wb") as f:
            f.write(b"s" * (SMALL - 1) + b"\n")
        with open(os.path.join(workdir, "html", "big"), "wb") as f:
            f.write(os.urandom(BIG))
        self.port = ctx.ports.take()
        config = fill("member-nginx.conf", os.path.join(workdir, "nginx.conf"),
                      workdir=workdir, port=self.port, name=self.name)
        logPath = os.path.join(workdir, "stdout.log")
        self.proc = ctx.procs.spawn(
            [ctx.binaries["nginx"], "-p", workdir, "-c", config,
             "-e", os.path.join(workdir, "error.log")], logPath)
        waitReady(self.proc, self.port, os.path.join(workdir, "error.log"))
        status, member, length = fetch(self.port, "/big", timeout=10)
        if (status, member, length) != (200, self.name, BIG):
            raise RuntimeError(f"member {self.name}: /big gave {status} {member} {length}")


# Balancers.  Each writes its config into its own directory and starts one
# process (whose tree is what the CPU figures count).


class Balancer:
    """
    A balancer under test: C{modes} says which tests it takes ("http",
    "tcp"); C{ports} maps a mode to the port it listens on for it.
    """

    name = ""
    label = ""
    modes = ("http",)
    note = ""
    binary = None
    #: Seconds of load on every test right after start (a JIT's warm-up).
    startWarmup = 0
    #: Environment variables the balancer is started with.
    env = {}
    #: Whether it can take the "tls" tests (a TLS listener is then added
    #: when the invocation runs any).
    tls = False
    #: The Host its HTTP tests send (L{None}: wrk's own, 127.0.0.1:PORT).
    httpHost = None
    #: Whether it is in the default --only (every row but the routes rows).
    inDefault = True
    #: For a pair measured back to back (ABBA): the other row, and whether
    #: this one goes first in odd runs (see L{runOrder}).
    partner = None
    leadsPair = False

    def __init__(self):
        self.ports = {}
        self.proc = None
        self.logPath = None
        self.workdir = None
        self.members = []
        self.restarts = 0
        self.tlsInfo = None

    def hostFor(self, mode):
        """
        The Host that requests on the listener of C{mode} send (L{None}:
        the default, C{127.0.0.1:PORT}).
        """
        return self.httpHost if mode == "http" else None

    def unavailable(self, ctx):
        """
        Why this balancer cannot run here, or L{None}.
        """
        if self.binary and not ctx.binaries.get(self.binary):
            return f"{self.binary} not found"
        return None

    def version(self, ctx):
        """
        A version string for the JSON record.
        """
        return ""

    def command(self, ctx):
        """
        Write the config into C{self.workdir}; return the command line.
        """
        raise NotImplementedError

    def start(self, ctx):
        """
        Take ports (the first time), start the process, wait until every
        listener answers through it.
        """
        if self.workdir is None:
            self.workdir = os.path.join(ctx.workdir, self.name)
            os.makedirs(os.path.join(self.workdir, "tmp"))
            os.makedirs(os.path.join(self.workdir, "run"))
            if self.tls and ctx.tls is not None:
                self.modes = tuple(self.modes) + ("tls",)
            self.ports = {mode: ctx.ports.take() for mode in self.modes}
        self.logPath = os.path.join(self.workdir, "output.log")
        self.proc = ctx.procs.spawn(self.command(ctx), self.logPath, cwd=self.workdir,
                                    env=self.env)
        for mode in self.modes:
            waitReady(self.proc, self.ports[mode], self.logPath, timeout=ctx.args.start_timeout,
                      context=ctx.clientContext(mode), host=self.hostFor(mode))
        self.members = {mode: membersSeen(self.ports[mode], context=ctx.clientContext(mode),
                                          host=self.hostFor(mode))
                        for mode in self.modes}
        self.checkStarted(ctx)
        if "tls" in self.modes:
            self.tlsInfo = tlsInfo(self.ports["tls"], ctx.clientContext("tls"))
        if self.startWarmup > 0:
            log(f"{self.name}: warming up, {self.startWarmup} s per test")
            for test in ctx.tests:
                if test.mode in self.modes:
                    runWrk(ctx.procs, ctx.binaries["wrk"], self.ports[test.mode], test,
                           self.startWarmup, ctx.args.wrk_timeout,
                           os.path.join(self.workdir, "warmup.log"), self.hostFor(test.mode))

    def checkStarted(self, ctx):
        """
        Once it answers: check what the row is about, raising
        L{RuntimeError} if it is not so (nothing to check by default).
        """

    def ensureRunning(self, ctx):
        """
        Restart the balancer if it has died since the last test.  Returns a
        note saying so, or L{None}.
        """
        if self.proc is not None and self.proc.poll() is None:
            return None
        code = self.proc.returncode if self.proc else None
        note = f"{self.name} had exited ({code}); restarted: {tail(self.logPath, 5).strip()}"
        if self.proc is not None:
            ctx.procs.stop(self.proc)
        self.restarts += 1
        self.start(ctx)
        return note


class PlayBalancer(Balancer):
    """
    playbalancer under C{python -m twisted playbalancer --config FILE}.
    """

    modes = ("http", "tcp")
    #: Every playbalancer row sends the same Host in the HTTP tests, so
    #: that the routes rows compare with the others like for like.
    httpHost = ROUTED_HOST

    #: With --ab: "new" or "old", and the source tree put first on
    #: PYTHONPATH (the row of the same configuration on the other tree is
    #: its C{partner}).
    side = None
    tree = None

    def __init__(self, name, python, label, startWarmup=0, accessLog=False, workers=1,
                 tls=False, routes=0):
        Balancer.__init__(self)
        self.name = name
        self.tls = tls
        self.python = python
        self.label = label
        self.startWarmup = startWarmup
        self.accessLog = accessLog
        self.workers = workers
        #: 0: the HTTP listener has C{balancer = "web"} (one route that
        #: takes every request); else that many [[listen.route]] tables
        #: (L{routeTables}) instead.  A routes row takes the HTTP tests only
        #: (routes are an HTTP listener's), and is left out of the default
        #: --only.
        self.routes = routes
        #: For a routes row, what L{checkConfig} and L{checkStarted} found.
        self.routingCheck = None
        if routes:
            self.modes = ("http",)
            self.inDefault = False
            target = (f"{routes:,} [[listen.route]] ({routes // len(ROUTE_PATHS)} hosts x "
                      f"{len(ROUTE_PATHS)} paths) to balancer web, no catch-all")
            listeners = "HTTP listener measured (the TCP one is configured, not measured)"
        else:
            target = "balancer = web (one route, any host)"
            listeners = "HTTP and TCP listeners"
        # As the README says to run it on PyPy (CPython ignores it).
        self.env = {"PYPY_GC_NURSERY": "16M"}
        self.note = (
            f"round-robin, no health checks, access log {'on' if accessLog else 'off'}, "
            f"{workers} worker(s); {listeners}; PYPY_GC_NURSERY=16M; HTTP listener: "
            f"{target}; HTTP tests send Host: {self.httpHost}"
        )

    def onTree(self, side, tree, commit):
        """
        This row, for --ab, renamed for its C{side} ("new" or "old") and
        running playbalancer from the source C{tree} (first on
        C{PYTHONPATH}, ahead of whatever the interpreter has installed).
        """
        self.side, self.tree = side, os.path.realpath(tree)
        self.name = f"{self.name}-{side}"
        self.label = f"{self.label} ({side}: {self.tree} at {commit})"
        pythonPath = [self.tree] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                    if p]
        self.env = dict(self.env, PYTHONPATH=os.pathsep.join(pythonPath))
        self.note += f"; PYTHONPATH starts with {self.tree}"
        return self

    def importCheckDirectory(self, ctx):
        """
        The working directory the interpreter is asked from: the row's own
        (made here if need be), since C{python -m} puts it first on
        C{sys.path}.
        """
        directory = os.path.join(ctx.workdir, self.name)
        os.makedirs(directory, exist_ok=True)
        return directory

    def interpreterInfo(self, ctx):
        if self.tree is None:
            return ctx.interpreter(self.python)
        return ctx.interpreter(self.python, env=self.env, cwd=self.importCheckDirectory(ctx))

    def unavailable(self, ctx):
        if not self.python:
            return "no interpreter given (--pypy)"
        if not os.path.exists(self.python):
            return f"{self.python} not found"
        info = self.interpreterInfo(ctx)
        if "not importable" in info.get("playbalancer", "not importable"):
            return f"playbalancer not importable by {self.python}"
        if self.tree is not None:
            imported = os.path.realpath(info.get("playbalancer_file", ""))
            if not imported.startswith(os.path.join(self.tree, "playbalancer") + os.sep):
                return (f"{self.python} with PYTHONPATH={self.env['PYTHONPATH']} imports "
                        f"playbalancer from {imported}, not from {self.tree}")
        return None

    def version(self, ctx):
        info = self.interpreterInfo(ctx)
        commit = ctx.gitCommit if self.tree is None else gitCommit(self.tree)
        imported = f", imported from {info.get('playbalancer_file')}" if self.tree else ""
        return (f"playbalancer {info.get('playbalancer')} ({commit}){imported}, "
                f"{info.get('python')}, Twisted {info.get('twisted')}")

    def command(self, ctx):
        accessLog = os.path.join(self.workdir, "access.log") if self.accessLog else ""
        if "tcp" not in self.ports:
            # A routes row: the TCP listener stays in the config, unmeasured.
            self.ports["tcp"] = ctx.ports.take()
        config = fill("playbalancer.toml", os.path.join(self.workdir, "playbalancer.toml"),
                      http_port=self.ports["http"], tcp_port=self.ports["tcp"],
                      member1=ctx.members[0].port, member2=ctx.members[1].port,
                      access_log=(f'access_log = "{accessLog}"' if accessLog else ""),
                      http_routes=(routeTables(self.routes) if self.routes
                                   else 'balancer = "web"'),
                      workers=self.workers)
        if "tls" in self.modes:
            appendTo(config, PLAYBALANCER_TLS, tls_port=self.ports["tls"], key=ctx.tls["key"],
                     cert=ctx.tls["cert"])
        if self.routes and self.routingCheck is None:
            self.routingCheck = self.checkConfig(ctx, config)
        return [self.python, "-m", "twisted", "--log-format=text", "playbalancer",
                "--config", config]

    def checkConfig(self, ctx, config):
        """
        For a routes row, before it starts: the config file at C{config}
        has exactly C{self.routes} [[listen.route]] tables, all after the
        HTTP [[listen]] and before the next one, and C{playbalancer check}
        (run by the row's interpreter, with its environment) lists that
        many routes on the HTTP listener, each to balancer web, one of them
        L{ROUTED_HOST}'s "/".  Returns what it found; raises
        L{RuntimeError} otherwise.
        """
        with open(config) as f:
            text = f.read()
        listens = [m.start() for m in re.finditer(r"^\[\[listen\]\]\s*$", text, re.M)]
        tables = [m.start() for m in re.finditer(r"^\[\[listen\.route\]\]\s*$", text, re.M)]
        if len(listens) < 2 or len(tables) != self.routes or not all(
                listens[0] < t < listens[1] for t in tables):
            raise RuntimeError(f"{config}: {len(tables)} [[listen.route]] tables, not "
                               f"{self.routes} all in the first (HTTP) [[listen]]")
        if re.search(r"^balancer\s*=", text[listens[0]:tables[0]], re.M):
            raise RuntimeError(f"{config}: the HTTP [[listen]] has a balancer = as well")
        try:
            result = subprocess.run(
                [self.python, "-m", "playbalancer.ctl.cli", "check", config],
                capture_output=True, text=True, timeout=300, cwd=self.workdir,
                env=dict(os.environ, **self.env))
        except (OSError, subprocess.TimeoutExpired) as e:
            raise RuntimeError(f"playbalancer check {config}: {e}")
        if result.returncode != 0:
            raise RuntimeError(f"playbalancer check {config} failed:\n"
                               f"{(result.stdout + result.stderr)[-800:]}")
        routes, current = {}, None
        for line in result.stdout.splitlines():
            listener = re.match(r"listen\[\d+\] (\S+) \(", line)
            if listener:
                current = listener.group(1)
                routes[current] = []
            elif line.startswith("  ") and current is not None:
                routes[current].append(line.strip())
            else:
                current = None
        onHTTP = [v for k, v in routes.items() if k.startswith(f"tcp:{self.ports['http']}:")]
        listed = onHTTP[0] if len(onHTTP) == 1 else []
        wanted = f": {ROUTED_HOST} / -> balancer web"
        if (len(listed) != self.routes
                or not all(route.endswith(" -> balancer web") for route in listed)
                or not any(route.endswith(wanted) for route in listed)):
            raise RuntimeError(f"playbalancer check {config}: the HTTP listener lists "
                               f"{len(listed)} routes, not {self.routes} to balancer web "
                               f"with {ROUTED_HOST} /:\n{result.stdout[:800]}")
        return {"config": f"{len(tables)} [[listen.route]] tables, all in the HTTP [[listen]], "
                          f"no balancer = on it",
                "playbalancer_check": f"{len(listed)} routes on the HTTP listener, each "
                                      f"to balancer web, {ROUTED_HOST} / among them"}

    def checkStarted(self, ctx):
        """
        For a routes row, once it answers: GET /small with the Host of the
        first, middle and last routed host names each gives a member's
        complete 200, and with L{UNROUTED_HOST} playbalancer's own 404 (no
        route takes it, and there is no catch-all), so requests are routed
        by their host.  Raises L{RuntimeError} otherwise.
        """
        if not self.routes:
            return
        port = self.ports["http"]
        hosts = ["site0.example", ROUTED_HOST,
                 f"site{self.routes // len(ROUTE_PATHS) - 1}.example"]
        names = {m.name for m in ctx.members}
        answers = {}
        try:
            for host in hosts:
                answers[host] = fetch(port, "/small", host=host)
            answers[UNROUTED_HOST] = fetch(port, "/small", host=UNROUTED_HOST)
        except (OSError, http.client.HTTPException) as e:
            raise RuntimeError(f"routing check: {e}")
        routed = all(answers[h][0] == 200 and answers[h][1] in names and answers[h][2] == SMALL
                     for h in hosts)
        status, member, _ = answers[UNROUTED_HOST]
        if not routed or status != 404 or member is not None:
            raise RuntimeError("routing check failed: GET /small by Host gave (status, member, "
                               f"bytes) {answers}")
        self.routingCheck["requests"] = (
            f"GET /small with Host {', '.join(hosts)}: 200 from a member; with Host "
            f"{UNROUTED_HOST}: {status} of playbalancer's own")


class HAProxy(Balancer):
    """
    HAProxy 1 thread, HTTP and TCP front ends (C{haproxy -db}).
    """

    name = "haproxy"
    label = "HAProxy, 1 thread"
    binary = "haproxy"
    modes = ("http", "tcp")
    tls = True
    note = "mode http (roundrobin, http-keep-alive, http-reuse always) and mode tcp"

    def version(self, ctx):
        return firstLine([ctx.binaries["haproxy"], "-v"])

    def command(self, ctx):
        config = fill("haproxy.cfg", os.path.join(self.workdir, "haproxy.cfg"),
                      http_port=self.ports["http"], tcp_port=self.ports["tcp"],
                      member1=ctx.members[0].port, member2=ctx.members[1].port)
        if "tls" in self.modes:
            # No resumption: no tickets, and no session cache (a global).
            noResumption = ctx.args.tls_no_resumption
            appendTo(config, HAPROXY_TLS, tls_port=self.ports["tls"], pem=ctx.tls["pem"],
                     bind_options=" no-tls-tickets" if noResumption else "")
            if noResumption:
                with open(config) as f:
                    text = f.read()
                with open(config, "w") as f:
                    f.write(text.replace("\nglobal\n", "\nglobal\n    tune.ssl.cachesize 0\n", 1))
        return [ctx.binaries["haproxy"], "-db", "-f", config]


class Nginx(Balancer):
    """
    nginx, 1 worker, upstream keep-alive pool of 256.
    """

    name = "nginx"
    label = "nginx, 1 worker, keepalive 256"
    binary = "nginx"
    tls = True
    note = "upstream keepalive 256, proxy_http_version 1.1"

    def version(self, ctx):
        return firstLine([ctx.binaries["nginx"], "-v"])

    def command(self, ctx):
        config = fill("balancer-nginx.conf", os.path.join(self.workdir, "nginx.conf"),
                      workdir=self.workdir, http_port=self.ports["http"],
                      member1=ctx.members[0].port, member2=ctx.members[1].port)
        if "tls" in self.modes:
            # A second server block, inside http { }: before its last brace.
            with open(config) as f:
                text = f.read().rstrip()
            if not text.endswith("}"):
                raise RuntimeError(f"{config}: does not end with the http block's brace")
            server = string.Template(NGINX_TLS).substitute(
                tls_port=self.ports["tls"], cert=ctx.tls["cert"], key=ctx.tls["key"],
                server_options=("\n        ssl_session_tickets off;  # and ssl_session_cache "
                                "none, the default" if ctx.args.tls_no_resumption else ""))
            with open(config, "w") as f:
                f.write(text[:-1] + server + "}\n")
        return [ctx.binaries["nginx"], "-p", self.workdir, "-c", config,
                "-e", os.path.join(self.workdir, "error.log")]


class Apache(Balancer):
    """
    Apache httpd 2.4, event MPM, mod_proxy_balancer, run with its own
    ServerRoot and config (not the system service).
    """

    name = "apache"
    label = "Apache 2.4 event, mod_proxy_balancer"
    binary = "apache2"
    note = "event MPM 2 x 128 threads, lbmethod=byrequests"

    def unavailable(self, ctx):
        reason = Balancer.unavailable(self, ctx)
        if reason:
            return reason
        for module in APACHE_MODULES:
            if not os.path.exists(self.module(ctx, module)):
                return f"{self.module(ctx, module)} not found"
        return None

    def module(self, ctx, name):
        """
        The path of the Apache module C{name}.
        """
        return os.path.join(ctx.args.apache_modules, f"mod_{name}.so")

    def version(self, ctx):
        return firstLine([ctx.binaries["apache2"], "-v"])

    def command(self, ctx):
        modules = list(APACHE_MODULES)
        user = ""
        if os.geteuid() == 0:
            # Apache refuses to serve as root: its children switch to this
            # user (mod_unixd, often compiled in: then it must not be loaded).
            if "mod_unixd.c" not in firstLine([ctx.binaries["apache2"], "-l"], whole=True):
                modules.append("unixd")
            account = next(n for n in ("www-data", "nobody") if accountExists(n))
            user = f"User {account}\nGroup #{pwd.getpwnam(account).pw_gid}"
        load = "\n".join(f"LoadModule {m}_module {self.module(ctx, m)}" for m in modules)
        config = fill("apache2.conf", os.path.join(self.workdir, "apache2.conf"),
                      modules=load, user=user, workdir=self.workdir,
                      http_port=self.ports["http"],
                      member1=ctx.members[0].port, member2=ctx.members[1].port)
        return [ctx.binaries["apache2"], "-d", self.workdir, "-f", config, "-DFOREGROUND"]


class TwistedFloor(Balancer):
    """
    A Twisted script from benchmarks/peers/ in front of the first member
    only: the stock proxies have no balancing.

    @param python: the interpreter to run it with (L{None}: the
        benchmark's own, C{--python}).
    """

    def __init__(self, name, script, mode, label, note, python=None, startWarmup=0):
        Balancer.__init__(self)
        self.name = name
        self.script = script
        self.modes = (mode,)
        self.label = label
        self.note = note
        self.python = python
        self.startWarmup = startWarmup
        self.env = {"PYPY_GC_NURSERY": "16M"}  # as playbalancer gets it

    def interpreter(self, ctx):
        return self.python or ctx.args.python

    def unavailable(self, ctx):
        python = self.interpreter(ctx)
        if not python:
            return "no interpreter given (--pypy)"
        info = ctx.interpreter(python)
        if "not importable" in info.get("twisted", "not importable"):
            return f"Twisted not importable by {python}"
        return None

    def version(self, ctx):
        info = ctx.interpreter(self.interpreter(ctx))
        return f"{info.get('python')}, Twisted {info.get('twisted')}"

    def command(self, ctx):
        return [self.interpreter(ctx), os.path.join(PEERS, self.script),
                str(self.ports[self.modes[0]]), str(ctx.members[0].port)]


class Direct(Balancer):
    """
    No balancer: wrk straight to member m1, the machine's ceiling (the CPU
    figures are then the member's own, nginx master and worker).
    """

    name = "direct"
    label = "no balancer (wrk straight to m1)"
    note = "calibration: wrk straight to one nginx member"

    def version(self, ctx):
        return firstLine([ctx.binaries["nginx"], "-v"])

    def start(self, ctx):
        member = ctx.members[0]
        self.proc, self.ports = member.proc, {"http": member.port}
        self.logPath = os.path.join(ctx.workdir, member.name, "error.log")
        self.members = {"http": membersSeen(member.port)}

    def ensureRunning(self, ctx):
        if self.proc.poll() is not None:
            raise RuntimeError("member m1 has exited")
        return None


def accountExists(name):
    """
    Whether the user account C{name} exists.
    """
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def firstLine(argv, whole=False):
    """
    The first non-empty line a version command prints (stdout or stderr),
    or all of its output with C{whole}.
    """
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    if whole:
        return result.stdout + result.stderr
    lines = [l.strip() for l in (result.stdout + result.stderr).splitlines() if l.strip()]
    return lines[0] if lines else "unknown"


def allBalancers(args):
    """
    Every balancer this script knows, in table order.
    """
    return [
        PlayBalancer("playbalancer", args.python, "playbalancer, CPython", tls=True),
        PlayBalancer(f"playbalancer-routes{ROUTES}", args.python,
                     f"playbalancer, CPython, {ROUTES:,} routes", routes=ROUTES),
        PlayBalancer("playbalancer-pypy", args.pypy, "playbalancer, PyPy",
                     startWarmup=args.pypy_warmup, tls=True),
        PlayBalancer(f"playbalancer-pypy-routes{ROUTES}", args.pypy,
                     f"playbalancer, PyPy, {ROUTES:,} routes", startWarmup=args.pypy_warmup,
                     routes=ROUTES),
        PlayBalancer("playbalancer-log", args.python, "playbalancer, CPython, access log on",
                     accessLog=True),
        PlayBalancer(f"playbalancer-{args.workers}w", args.python,
                     f"playbalancer, CPython, {args.workers} workers", workers=args.workers),
        HAProxy(),
        Nginx(),
        Apache(),
        TwistedFloor("twisted", "twisted_proxy.py", "http",
                     "Twisted stock ReverseProxyResource",
                     "floor: one member only (no balancing), Site.log a no-op"),
        TwistedFloor("portforward", "portforward.py", "tcp",
                     "Twisted portforward, TCP_NODELAY",
                     "TCP floor: one member only (no balancing)"),
        TwistedFloor("portforward-pypy", "portforward.py", "tcp",
                     "Twisted portforward, TCP_NODELAY, PyPy",
                     "TCP floor for PyPy: one member only (no balancing)",
                     python=args.pypy, startWarmup=args.pypy_warmup),
        Direct(),
    ]


def abPairs(balancers, oldTree):
    """
    For --ab: each playbalancer row in C{balancers} becomes two, NAME-new
    on this script's tree and NAME-old on C{oldTree}, side by side (each
    the other's C{partner}); the other rows stay as they are.
    """
    rows = []
    newCommit, oldCommit = gitCommit(REPO), gitCommit(oldTree)
    for balancer in balancers:
        if not isinstance(balancer, PlayBalancer):
            rows.append(balancer)
            continue
        old = PlayBalancer(balancer.name, balancer.python, balancer.label,
                           startWarmup=balancer.startWarmup, accessLog=balancer.accessLog,
                           workers=balancer.workers, tls=balancer.tls, routes=balancer.routes)
        new = balancer.onTree("new", REPO, newCommit)
        old.onTree("old", oldTree, oldCommit)
        new.partner, old.partner = old, new
        new.leadsPair = True
        rows += [new, old]
    return rows


def routesBase(name):
    """
    The name of the row a routes row compares with (the same row with its
    one route: playbalancer for playbalancer-routes1000,
    playbalancer-pypy-new for playbalancer-pypy-routes1000-new), or
    L{None} for a row that is not a routes row.
    """
    suffix = f"-routes{ROUTES}"
    return name.replace(suffix, "", 1) if suffix in name else None


def routesPairs(balancers):
    """
    Without --ab: each routes row in C{balancers} whose one-route row is
    there too is paired with it, to be measured back to back (ABBA), the
    one-route row first in odd runs.
    """
    byName = {b.name: b for b in balancers}
    for balancer in balancers:
        base = byName.get(routesBase(balancer.name) or "")
        if base is not None and base.partner is None and balancer.partner is None:
            base.partner, balancer.partner = balancer, base
            base.leadsPair = True


def runOrder(balancers, run):
    """
    The order of C{balancers} in run number C{run}: as given, except that
    each pair (--ab: new and old; else a routes row and its one-route row)
    is measured back to back, the leading row (new; the one-route row)
    first in odd runs and the other first in even runs (ABBA).  A row whose
    partner did not start runs alone, where it stands.
    """
    order = []
    for balancer in balancers:
        partner = balancer.partner
        if partner is None or partner not in balancers:
            order.append(balancer)
        elif balancer.leadsPair:
            order += [balancer, partner] if run % 2 == 1 else [partner, balancer]
    return order


# The run as a whole.


class Context:
    """
    What one invocation shares: options, temp dir, processes, ports,
    binaries, members, interpreter versions.
    """

    def __init__(self, args):
        self.args = args
        self.procs = Processes()
        self.ports = PortPool()
        self.workdir = None
        self.binaries = {}
        self.members = []
        self.tests = []
        self.interpreters = {}
        self.gitCommit = gitCommit()
        #: The TLS key and certificate (L{makeCertificate}), when a "tls"
        #: test runs, and the benchmark's client context that trusts it.
        self.tls = None
        self.tlsContext = None

    def clientContext(self, mode):
        """
        The TLS client context for a listener of C{mode}, or L{None} (plain).
        """
        return self.tlsContext if mode == "tls" else None

    def interpreter(self, python, env=None, cwd=None):
        """
        Versions of the interpreter C{python} (asked once), run with C{env}
        added to this environment and in the directory C{cwd}, if given
        (then recorded as C{"python with PYTHONPATH=..."}).
        """
        key = python
        if env and env.get("PYTHONPATH"):
            key = f"{python} with PYTHONPATH={env['PYTHONPATH']}"
        if key not in self.interpreters:
            try:
                out = subprocess.run([python, "-c", VERSIONS_SNIPPET], capture_output=True,
                                     text=True, timeout=60, cwd=cwd or tempfile.gettempdir(),
                                     env=dict(os.environ, **env) if env else None)
                self.interpreters[key] = json.loads(out.stdout)
            except (OSError, ValueError, subprocess.TimeoutExpired) as e:
                self.interpreters[key] = {"python": f"not runnable: {e}"}
        return self.interpreters[key]


def gitCommit(tree=REPO):
    """
    The commit of the checkout C{tree} (default: this script's), with
    "+dirty" when its playbalancer/ has changes.
    """
    try:
        head = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", tree, "status", "--porcelain", "--", "playbalancer"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def machineInfo():
    """
    CPU count and model, kernel, load average: what the figures depend on.
    """
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "loadavg_start": os.getloadavg()}


def median(values):
    """
    The median of the values that are not L{None}, or L{None}.
    """
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


METRICS = ("rps", "mib_s", "p50_ms", "p99_ms", "errors", "cpu_s", "cpu_cores",
           "req_per_cpu_s", "mib_per_cpu_s", "machine_busy_cores", "wrk_cpu_s")


def summarise(results):
    """
    Add the medians over runs, and the ratios to Apache and to the Twisted
    floor of the same test (HTTP: stock ReverseProxyResource; TCP:
    portforward), to every result.
    """
    for result in results:
        good = [run for run in result["runs"] if "error" not in run]
        result["median"] = {m: median([run.get(m) for run in good]) for m in METRICS}
        result["runs_ok"] = len(good)
    byKey = {(r["balancer"], r["test"]): r for r in results}
    for result in results:
        if result["balancer"] == "direct":
            result["vs_apache"] = result["vs_twisted"] = None  # not a balancer
            result["vs_nginx"] = result["vs_haproxy"] = None
            continue
        test = next(t for t in TESTS if t.name == result["test"])
        floor = "twisted" if test.mode == "http" else "portforward"
        if "pypy" in result["balancer"] and (floor + "-pypy", test.name) in byKey:
            floor += "-pypy"  # TCP mode is held to portforward on the same runtime
        for key, ref in (("vs_apache", "apache"), ("vs_twisted", floor),
                         ("vs_nginx", "nginx"), ("vs_haproxy", "haproxy")):
            other = byKey.get((ref, result["test"]))
            result[key] = None
            if other is not None:
                result[key] = {"reference": ref,
                               "rps": ratio(result["median"]["rps"], other["median"]["rps"]),
                               "per_cpu_s": ratio(result["median"]["req_per_cpu_s"],
                                                  other["median"]["req_per_cpu_s"])}


#: The figures an --ab comparison compares (MiB per CPU-second is printed
#: for the big-body tests only, where it is the figure that matters).
AB_METRICS = ("req_per_cpu_s", "mib_per_cpu_s", "rps")


def abSummary(record):
    """
    For --ab: per pair (NAME-new, NAME-old) and test, per metric in
    L{AB_METRICS}: the medians old and new, new/old of the medians, the
    per-run new/old ratios (the two rows of a run were measured back to
    back) with their median and range, each side's range over the runs,
    and whether the ranges overlap.  A list, in table order.
    """
    byKey = {(r["balancer"], r["test"]): r for r in record["results"]}
    summary = []
    for (name, test), new in byKey.items():
        if not name.endswith("-new"):
            continue
        old = byKey.get((name[:-len("-new")] + "-old", test))
        if old is None:
            continue
        entry = {"balancer": name[:-len("-new")], "test": test}
        for metric in AB_METRICS:
            figures = pairFigures(old, new, metric, ("old", "new"))
            if figures is not None:
                entry[metric] = figures
        summary.append(entry)
    order = [t.name for t in TESTS]
    summary.sort(key=lambda e: (order.index(e["test"]), e["balancer"]))
    return summary


def pairFigures(before, after, metric, names):
    """
    One C{metric} of two results of the same test, C{before} and C{after}
    (named C{names[0]} and C{names[1]} in the keys): the medians,
    after/before of the medians, the per-run after/before ratios (runs of
    the same number) with their median and range, each side's range, and
    whether the ranges overlap.  L{None} if a side has no value.
    """
    a, b = names
    beforeRuns = {r["run"]: r.get(metric) for r in before["runs"] if "error" not in r}
    afterRuns = {r["run"]: r.get(metric) for r in after["runs"] if "error" not in r}
    beforeValues = [v for v in beforeRuns.values() if v is not None]
    afterValues = [v for v in afterRuns.values() if v is not None]
    if not beforeValues or not afterValues:
        return None
    perRun = [afterRuns[run] / beforeRuns[run] for run in sorted(afterRuns)
              if afterRuns[run] is not None and beforeRuns.get(run)]
    return {
        a: median(beforeValues), b: median(afterValues),
        "ratio": ratio(median(afterValues), median(beforeValues)),
        f"{a}_range": [min(beforeValues), max(beforeValues)],
        f"{b}_range": [min(afterValues), max(afterValues)],
        "per_run_ratios": perRun,
        "per_run_ratio_median": median(perRun),
        "per_run_ratio_range": [min(perRun), max(perRun)] if perRun else None,
        "ranges_overlap": (min(afterValues) <= max(beforeValues)
                           and min(beforeValues) <= max(afterValues)),
    }


#: What the routes comparison reports (MiB per CPU-second for the big-body
#: tests only).
ROUTES_METRICS = ("req_per_cpu_s", "mib_per_cpu_s", "rps")


def routesSummary(record):
    """
    Each routes row against its one-route row (L{routesBase}), per test
    and metric in L{ROUTES_METRICS}: L{pairFigures} with the keys
    C{one_route} and C{routes}, and C{cost}, 1 - routes/one route of the
    medians (the share of the figure that routing took).  A list, in
    table order.
    """
    byKey = {(r["balancer"], r["test"]): r for r in record["results"]}
    summary = []
    for (name, test), routed in byKey.items():
        base = byKey.get((routesBase(name) or "", test))
        if base is None:
            continue
        entry = {"balancer": name, "against": base["balancer"], "test": test}
        for metric in ROUTES_METRICS:
            figures = pairFigures(base, routed, metric, ("one_route", "routes"))
            if figures is not None:
                figures["cost"] = 1 - figures["ratio"] if figures["ratio"] is not None else None
                entry[metric] = figures
        summary.append(entry)
    order = [t.name for t in TESTS]
    balancers = list(record["balancers"])
    summary.sort(key=lambda e: (order.index(e["test"]), balancers.index(e["balancer"])))
    return summary


def routesReport(record, kind):
    """
    The printed routes section, a table of C{kind} ("md" or "rst"): a row
    per routes row, test and figure.
    """
    entries = record.get("routes")
    if not entries:
        return []
    lines = [f"Routes: each ROW-routes{ROUTES} (its HTTP listener with {ROUTES:,} "
             f"[[listen.route]] tables, {ROUTES // len(ROUTE_PATHS)} hosts x "
             f"{len(ROUTE_PATHS)} paths) against ROW (balancer = \"web\", one route); every "
             f"playbalancer row's HTTP tests send Host: {ROUTED_HOST}.  Medians over the runs; "
             f"routes/one of the medians and the cost (1 - that); the per-run routes/one "
             f"ratios, median [min-max]; each side's [min-max] and whether they overlap.  "
             f"Without --ab each pair is measured back to back, one route first in odd runs "
             f"(ABBA).", ""]
    header = ["test", "balancer", "figure", "1 route", f"{ROUTES:,} routes", "routes/one",
              "cost", "per-run routes/one", "1-route range", "routes range", "overlap"]
    rows = []
    units = {"req_per_cpu_s": ("req/CPU-s", 0), "mib_per_cpu_s": ("MiB/CPU-s", 1),
             "rps": ("req/s", 0)}
    for entry in entries:
        for metric in ROUTES_METRICS:
            m = entry.get(metric)
            if m is None or (metric == "mib_per_cpu_s" and "big" not in entry["test"]):
                continue
            unit, digits = units[metric]
            low, high = m["per_run_ratio_range"] or (None, None)
            cost = f"{m['cost'] * 100:.1f}%" if m["cost"] is not None else "-"
            rows.append([entry["test"], entry["balancer"], unit, fmt(m["one_route"], digits),
                         fmt(m["routes"], digits), fmt(m["ratio"], 3), cost,
                         f"{fmt(m['per_run_ratio_median'], 3)} [{fmt(low, 3)}-{fmt(high, 3)}]",
                         f"{fmt(m['one_route_range'][0], digits)}-"
                         f"{fmt(m['one_route_range'][1], digits)}",
                         f"{fmt(m['routes_range'][0], digits)}-{fmt(m['routes_range'][1], digits)}",
                         "yes" if m["ranges_overlap"] else "no"])
    return lines + [rstTable(header, rows) if kind == "rst" else markdownTable(header, rows),
                    ""]


def abReport(record, kind):
    """
    The printed --ab section, a table of C{kind} ("md" or "rst"): a row
    per pair, test and figure.
    """
    ab = record.get("settings", {}).get("ab")
    if not ab:
        return []
    lines = [f"A/B: new = {ab['new_tree']} at {ab['new_commit']}, old = {ab['old_tree']} at "
             f"{ab['old_commit']}; each pair back to back, {ab['order']}.  Medians over the "
             f"runs; new/old of the medians; the per-run new/old ratios, median [min-max]; "
             f"each side's [min-max] and whether they overlap.", ""]
    header = ["test", "balancer", "figure", "old", "new", "new/old", "per-run new/old",
              "old range", "new range", "overlap"]
    rows = []
    units = {"req_per_cpu_s": ("req/CPU-s", 0), "mib_per_cpu_s": ("MiB/CPU-s", 1),
             "rps": ("req/s", 0)}
    for entry in record.get("ab", []):
        for metric in AB_METRICS:
            m = entry.get(metric)
            if m is None or (metric == "mib_per_cpu_s" and "big" not in entry["test"]):
                continue
            unit, digits = units[metric]
            low, high = m["per_run_ratio_range"] or (None, None)
            rows.append([entry["test"], entry["balancer"], unit, fmt(m["old"], digits),
                         fmt(m["new"], digits), fmt(m["ratio"], 3),
                         f"{fmt(m['per_run_ratio_median'], 3)} [{fmt(low, 3)}-{fmt(high, 3)}]",
                         f"{fmt(m['old_range'][0], digits)}-{fmt(m['old_range'][1], digits)}",
                         f"{fmt(m['new_range'][0], digits)}-{fmt(m['new_range'][1], digits)}",
                         "yes" if m["ranges_overlap"] else "no"])
    return lines + [rstTable(header, rows) if kind == "rst" else markdownTable(header, rows),
                    ""]


def ratio(a, b):
    """
    C{a / b}, or L{None} when either is missing.
    """
    return a / b if a is not None and b else None


def startAll(ctx, balancers, record):
    """
    Start every balancer that can run here; the others get a skip reason.
    Returns those that started.
    """
    started = []
    for balancer in balancers:
        entry = record["balancers"][balancer.name]
        reason = balancer.unavailable(ctx)
        if reason is None:
            try:
                balancer.start(ctx)
            except RuntimeError as e:
                reason = f"did not start: {e}"
        versionKnown = reason is None or ctx.binaries.get(balancer.binary or "")
        entry["version"] = balancer.version(ctx) if versionKnown else ""
        if reason is not None:
            entry["skipped"] = reason
            log(f"{balancer.name}: skipped: {reason}")
            continue
        entry["ports"] = balancer.ports
        entry["modes"] = list(balancer.modes)
        entry["members_seen"] = balancer.members
        if getattr(balancer, "routingCheck", None):
            entry["routing_check"] = balancer.routingCheck
            log(f"{balancer.name}: routing check: "
                + "; ".join(balancer.routingCheck.values()))
        if balancer.tlsInfo is not None:
            entry["tls"] = balancer.tlsInfo
            log(f"{balancer.name}: TLS {balancer.tlsInfo}")
        log(f"{balancer.name}: ready on {balancer.ports}, members seen {balancer.members}")
        started.append(balancer)
    return started


def runAll(ctx, balancers, tests, record):
    """
    The measurements: for each run, each test, each balancer that takes it
    (interleaved, so that noise from the rest of the machine spreads over
    every balancer alike).  Results go into C{record["results"]} as they
    come, so an interrupted benchmark still reports what it measured.
    """
    results = {}
    for run in range(1, ctx.args.runs + 1):
        for test in tests:
            for balancer in runOrder(balancers, run):
                if test.mode not in balancer.modes:
                    continue
                key = (balancer.name, test.name)
                if key not in results:
                    results[key] = {"balancer": balancer.name, "test": test.name, "runs": []}
                    record["results"].append(results[key])
                result = results[key]
                try:
                    note = balancer.ensureRunning(ctx)
                    if note:
                        record["notes"].append(f"run {run}, {test.name}: {note}")
                        log(note)
                    figures = measure(ctx, balancer, test)
                except (RuntimeError, ValueError, OSError) as e:
                    figures = {"error": str(e)}
                    log(f"[run {run}] {test.name:12} {balancer.name:24} ERROR {e}")
                else:
                    log(f"[run {run}] {test.name:12} {balancer.name:24} "
                        f"{figures['rps']:10,.0f} req/s {figures['mib_s']:8.1f} MiB/s "
                        f"p99 {fmt(figures['p99_ms'], 2)} ms  cpu {figures['cpu_s']:.2f} s "
                        f"{fmt(figures['req_per_cpu_s'], 0)} req/CPU-s  errors {figures['errors']}")
                figures["run"] = run
                result["runs"].append(figures)


def fmt(value, digits, thousands=True):
    """
    A number for a table, "-" for none.
    """
    if value is None:
        return "-"
    if thousands:
        return f"{value:,.{digits}f}"
    return f"{value:.{digits}f}"


def tableRows(record):
    """
    The table's header and rows (medians), in test order then balancer order.
    """
    header = ["test", "balancer", "req/s", "MiB/s", "p50 ms", "p99 ms", "errors",
              "CPU-s", "req/CPU-s", "MiB/CPU-s", "x Apache",
              "x Twisted", "x nginx", "x HAProxy"]
    order = list(record["balancers"])
    rows = []
    results = sorted(record["results"], key=lambda r: (
        [t.name for t in TESTS].index(r["test"]), order.index(r["balancer"])))
    for r in results:
        m = r["median"]
        label = r["balancer"]
        if r["runs_ok"] < len(r["runs"]):
            label += f" ({len(r['runs']) - r['runs_ok']} of {len(r['runs'])} runs failed)"
        rows.append([r["test"], label, fmt(m["rps"], 0), fmt(m["mib_s"], 1),
                     fmt(m["p50_ms"], 2), fmt(m["p99_ms"], 2), fmt(m["errors"], 0),
                     fmt(m["cpu_s"], 2), fmt(m["req_per_cpu_s"], 0),
                     fmt(m["mib_per_cpu_s"], 1), ratioCell(r["vs_apache"]),
                     ratioCell(r["vs_twisted"]), ratioCell(r.get("vs_nginx")),
                     ratioCell(r.get("vs_haproxy"))])
    return header, rows


def ratioCell(ratios):
    """
    "2.10 / 1.50" for a ratio entry (throughput / per CPU-second).
    """
    if not ratios or ratios["rps"] is None:
        return "-"
    return f"{fmt(ratios['rps'], 2)} / {fmt(ratios['per_cpu_s'], 2)}"


def markdownTable(header, rows):
    """
    A Markdown table.
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def rstTable(header, rows):
    """
    A reStructuredText simple table.
    """
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    rule = "  ".join("=" * w for w in widths)
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([rule, line(header), rule] + [line(r) for r in rows] + [rule])


def setupLines(record, extra=""):
    """
    The lines that say how a run was made: when, where, how long, and each
    balancer's version and state (C{extra}: more for the first line).
    """
    s = record["settings"]
    lines = [f"{record['date']}, {record['machine']['cpus']} CPUs "
             f"({record['machine']['cpu_model']}), {s['runs']} run(s) x {s['duration']} s "
             f"after {s['warmup']} s warm-up, medians; playbalancer {record['git_commit']}"
             f"{extra}", ""]
    for name, entry in record["balancers"].items():
        state = entry["note"]
        if entry.get("skipped"):
            state = "skipped: " + entry["skipped"].splitlines()[0]
        version = entry.get("version")
        lines.append(f"- {name} ({entry['label']}): {version + '; ' if version else ''}{state}")
        tls = entry.get("tls")
        if tls:
            lines.append("  TLS: " + ", ".join(f"{k} {v}" for k, v in tls.items()))
    return lines


def report(record, kind):
    """
    The printed report: the setup, then the table of medians.
    """
    header, rows = tableRows(record)
    table = rstTable(header, rows) if kind == "rst" else markdownTable(header, rows)
    s = record["settings"]
    lines = setupLines(record)
    if s.get("tls"):
        lines.append(f"- TLS: {s['tls']}")
    lines += ["", table, "",
              "x Apache, x Twisted, x nginx, x HAProxy: this row's median over the "
              "reference's, as requests/s / requests per CPU-second, same test, same "
              "invocation.  Twisted means the stock ReverseProxyResource for HTTP tests and "
              "portforward for TCP tests.", ""]
    lines += routesReport(record, kind)
    lines += abReport(record, kind)
    lines += [f"Note: {n}" for n in record["notes"]]
    return "\n".join(lines)


def parseArgs(argv):
    """
    The command line.
    """
    def balancerNames(workers, default=False):
        return [b.name for b in allBalancers(argparse.Namespace(
            python="", pypy=None, pypy_warmup=0, workers=workers))
            if b.inDefault or not default]

    names = balancerNames(2)
    defaults = balancerNames(2, default=True)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="measured runs of each test (default 3)")
    p.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    p.add_argument("--warmup", type=int, default=2, help="seconds of warm-up before each run")
    p.add_argument("--only", default=None,
                   help=f"balancers, comma-separated (default all but the routes rows: "
                        f"{','.join(defaults)}; also: "
                        f"{','.join(n for n in names if n not in defaults)})")
    p.add_argument("--workers", type=int, default=2,
                   help="worker processes of the multi-worker row, playbalancer-Nw "
                        "(default 2; this machine's cores is the natural choice)")
    p.add_argument("--tests", default=",".join(t.name for t in TESTS),
                   help="tests, comma-separated (default all: %(default)s)")
    p.add_argument("--python", default=sys.executable, type=interpreterPath,
                   help="interpreter with playbalancer and Twisted (default: this one)")
    p.add_argument("--pypy", default=DEFAULT_PYPY, type=interpreterPath,
                   help="a PyPy venv's python with playbalancer: adds playbalancer-pypy "
                        "(default: the Makefile's .venv-pypy/bin/python if it exists; "
                        "--pypy '' for none)")
    p.add_argument("--pypy-warmup", type=int, default=10,
                   help="seconds of load per test on the PyPy row once, right after it "
                        "starts, for the JIT (default 10)")
    p.add_argument("--json", help="write every run and the medians to this file")
    p.add_argument("--table", choices=("md", "rst"), default="md", help="printed table format")
    p.add_argument("--report", metavar="JSON", help="only print the table of an earlier --json")
    p.add_argument("--no-install", action="store_true", help="never run apt-get")
    p.add_argument("--apache-modules", default="/usr/lib/apache2/modules")
    p.add_argument("--wrk-timeout", type=int, default=5, help="wrk's --timeout in seconds")
    p.add_argument("--start-timeout", type=float, default=60,
                   help="seconds a balancer may take to answer after start")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--ab", metavar="OLD_TREE",
                   help="compare with another checkout of playbalancer: every playbalancer "
                        "row runs as NAME-new (this script's tree first on PYTHONPATH) and "
                        "NAME-old (OLD_TREE first), back to back, order alternating by run "
                        "(ABBA); the report adds new/old per pair and test")
    p.add_argument("--tls-no-resumption", action="store_true",
                   help="turn off TLS session resumption on nginx (ssl_session_tickets off) "
                        "and HAProxy (no-tls-tickets, tune.ssl.cachesize 0), so that every "
                        "new connection is a full handshake, as on playbalancer")
    args = p.parse_args(argv)
    if args.workers < 2:
        p.error("--workers must be at least 2 (the playbalancer row has 1)")
    names = balancerNames(args.workers)
    defaults = balancerNames(args.workers, default=True)
    args.only = [n.strip() for n in (args.only or ",".join(defaults)).split(",") if n.strip()]
    args.tests = [n.strip() for n in args.tests.split(",") if n.strip()]
    for n in args.only:
        if n not in names:
            p.error(f"unknown balancer {n!r}; known: {', '.join(names)}")
    for n in args.tests:
        if n not in [t.name for t in TESTS]:
            p.error(f"unknown test {n!r}; known: {', '.join(t.name for t in TESTS)}")
    if args.ab is not None:
        if not os.path.isdir(os.path.join(args.ab, "playbalancer")):
            p.error(f"--ab {args.ab}: no playbalancer/ package in that directory")
        if os.path.realpath(args.ab) == os.path.realpath(REPO):
            p.error("--ab names this script's own tree: give the other checkout")
        if not any(n.startswith("playbalancer") for n in args.only):
            p.error("--ab needs at least one playbalancer row in --only")
    return args


def newRecord(args, ctx, balancers, tests):
    """
    The JSON record, before any measurement.
    """
    return {
        "benchmark": "playbalancer throughput (benchmarks/throughput.py)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "git_commit": ctx.gitCommit,
        "settings": {"runs": args.runs, "duration": args.duration, "warmup": args.warmup,
                     "pypy_warmup_on_start": args.pypy_warmup,
                     "wrk": "wrk -t1 --latency, keep-alive",
                     "wrk_timeout": args.wrk_timeout, "small_bytes": SMALL, "big_bytes": BIG,
                     "members": "2 x nginx, worker_processes 1, sendfile on, access_log off",
                     "tls": tlsSettings(args, ctx),
                     "playbalancer_http_host": ROUTED_HOST,
                     "routes": (f"ROW-routes{ROUTES}: the HTTP listener has {ROUTES} "
                                f"[[listen.route]] tables ({ROUTES // len(ROUTE_PATHS)} hosts "
                                f"site0.example.. x paths {', '.join(ROUTE_PATHS)}, each to "
                                f"balancer web) instead of balancer = \"web\"; HTTP tests "
                                f"only"),
                     "ab": abSettings(args)},
        "machine": machineInfo(),
        "versions": {"wrk": firstLine([ctx.binaries["wrk"], "--version"]) if ctx.binaries.get("wrk")
                     else "not found",
                     "member nginx": firstLine([ctx.binaries["nginx"], "-v"])
                     if ctx.binaries.get("nginx") else "not found",
                     "benchmark python": f"{platform.python_implementation()} "
                                         f"{platform.python_version()}",
                     "openssl command": firstLine([findBinary("openssl"), "version"])
                     if findBinary("openssl") else "not found"},
        "tests": {t.name: t._asdict() for t in tests},
        "balancers": {b.name: {"label": b.label, "note": b.note, "modes": list(b.modes)}
                      for b in balancers},
        "results": [],
        "notes": [],
    }


def abSettings(args):
    """
    The --ab comparison, for the record (L{None} without it).
    """
    if args.ab is None:
        return None
    return {"new_tree": os.path.realpath(REPO), "new_commit": gitCommit(REPO),
            "old_tree": os.path.realpath(args.ab), "old_commit": gitCommit(args.ab),
            "order": "new first in odd runs, old first in even runs (ABBA)"}


def tlsSettings(args, ctx):
    """
    How the "tls" tests are set up, for the record (L{None} without them).
    """
    if ctx.tls is None:
        return None
    resumption = ("off on nginx (ssl_session_tickets off) and HAProxy (no-tls-tickets, "
                  "tune.ssl.cachesize 0)" if args.tls_no_resumption else
                  "each balancer's defaults")
    return (f"one EC P-256 self-signed certificate for localhost/127.0.0.1 ({ctx.tls['made_by']}); "
            f"nginx ssl_protocols TLSv1.2 TLSv1.3, no http2; HAProxy alpn http/1.1, "
            f"ssl-min-ver TLSv1.2; playbalancer ssl: endpoint (Twisted CertificateOptions); "
            f"session resumption: {resumption}; wrk resumes the session of a connection's "
            f"previous handshake when the server allows it")


def onSigterm(signum, frame):
    """
    SIGTERM ends the benchmark like Ctrl-C, through the cleanup.
    """
    raise KeyboardInterrupt(f"signal {signum}")


def interpreterPath(value):
    """
    An interpreter given as a path is made absolute: the balancers and the
    import checks run in other directories (a bare name is looked up on
    PATH, and '' means none).
    """
    return os.path.abspath(value) if os.sep in value else value


def main(argv=None):
    """
    Install what is missing, start the members and balancers, measure,
    summarise, print, write the JSON; stop everything started and remove
    the temporary directory whatever happens.
    """
    args = parseArgs(argv)
    if args.report:
        with open(args.report) as f:
            print(report(json.load(f), args.table))
        return 0
    signal.signal(signal.SIGTERM, onSigterm)
    ctx = Context(args)
    balancers = [b for b in allBalancers(args) if b.name in args.only]
    if args.ab is not None:
        balancers = abPairs(balancers, args.ab)
    else:
        routesPairs(balancers)
    tests = [t for t in TESTS if t.name in args.tests]
    ctx.tests = tests
    needed = {"wrk", "nginx"} | {b.binary for b in balancers if b.binary}
    ctx.binaries = ensurePackages(sorted(needed), not args.no_install)
    for name in ("wrk", "nginx"):
        if not ctx.binaries[name]:
            log(f"{name} is needed and was not found")
            return 2
    ctx.workdir = tempfile.mkdtemp(prefix="pb-throughput-")
    # The members' and peers' workers run as another user when we are root.
    os.chmod(ctx.workdir, 0o755)
    tlsNote = None
    if any(t.mode == "tls" for t in tests) and any(b.tls for b in balancers):
        try:
            ctx.tls = makeCertificate(ctx, os.path.join(ctx.workdir, "tls"))
            ctx.tlsContext = clientContext(ctx.tls["cert"])
        except (RuntimeError, OSError, subprocess.SubprocessError, ssl.SSLError) as e:
            tlsNote = f"TLS tests skipped: {e}"
            log(tlsNote)
    record = newRecord(args, ctx, balancers, tests)
    if tlsNote:
        record["notes"].append(tlsNote)
    try:
        ctx.members = [Member("m1"), Member("m2")]
        for member in ctx.members:
            member.start(ctx)
        log(f"members: {', '.join(f'{m.name} on {m.port}' for m in ctx.members)}")
        started = startAll(ctx, balancers, record)
        runAll(ctx, started, tests, record)
        for balancer in started:
            record["balancers"][balancer.name]["restarts"] = balancer.restarts
    except KeyboardInterrupt as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}): stopping, then reporting what was measured")
        record["notes"].append("interrupted: not every run was made")
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        ctx.procs.stopAll()
        if args.keep:
            log(f"kept {ctx.workdir}")
        else:
            shutil.rmtree(ctx.workdir, ignore_errors=True)
    record["machine"]["loadavg_end"] = os.getloadavg()
    record["results"] = [r for r in record["results"] if r["runs"]]
    record["versions"]["interpreters"] = ctx.interpreters
    summarise(record["results"])
    if args.ab is not None:
        record["ab"] = abSummary(record)
    record["routes"] = routesSummary(record)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
    print(report(record, args.table))
    return 130 if "interrupted: not every run was made" in record["notes"] else 0


if __name__ == "__main__":
    sys.exit(main())
