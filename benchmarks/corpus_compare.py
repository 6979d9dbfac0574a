#!/usr/bin/env python3
"""
Run the malformed-request corpus (tests/corpus.py) against playbalancer,
HAProxy and nginx, each in front of the same kind of recording member, and
print a side-by-side table: what the policy expects, and per balancer the
first final status, whether it closed the connection, and how many requests
reached the member.

    python benchmarks/corpus_compare.py                      # all three
    python benchmarks/corpus_compare.py --only playbalancer,haproxy --json out.json
    python benchmarks/corpus_compare.py --match chunk -v     # vectors whose name has "chunk"

Run it with the Python that has playbalancer installed (it imports
tests.corpus and tests.recording from this checkout, and starts
playbalancer as ``PYTHON -m twisted playbalancer --config FILE``).
Everything listens on 127.0.0.1, on ports 21000-21999; config files and
logs go in a temporary directory (removed unless --keep); every process
the script starts is a child, stopped by its PID when the script ends.
It installs nothing: a missing haproxy/nginx gives a "skipped" column.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.corpus import VECTORS  # noqa: E402
from tests.recording import (  # noqa: E402
    OK_RESPONSE,
    OK_RESPONSE_CLOSE,
    CONTINUE,
    ParseError,
    RequestParser,
    ResponseParser,
)

PORT_RANGE = range(21000, 22000)
BALANCERS = ("playbalancer", "haproxy", "nginx")
#: After the expected responses: how long to wait for a close when one is
#: expected, and how long to watch for one when it is not (as the test).
CLOSE_WAIT = 1.0
OPEN_WAIT = 0.3
SETTLE = 0.15
MAX_BODY = 16


def log(text):
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Ports and processes


class Ports:
    """
    Hands out ports of C{portRange} (21000-21999 by default) that were free
    a moment ago.
    """

    def __init__(self, portRange=PORT_RANGE):
        self._range = portRange
        self._next = iter(portRange)

    def take(self):
        for port in self._next:
            s = socket.socket()
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
            finally:
                s.close()
        raise RuntimeError(
            f"no free port left in {self._range.start}-{self._range.stop - 1}"
        )


def waitListening(port, timeout, child=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and child.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def stopChild(child, timeout=10.0):
    """
    SIGTERM the child by its PID, SIGKILL it if it is still there after
    C{timeout} seconds.
    """
    if child is None or child.poll() is not None:
        return
    try:
        os.kill(child.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(5)


def findBinary(name, given=None):
    if given:
        return given if os.access(given, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    candidate = os.path.join("/usr/sbin", name)
    return candidate if os.access(candidate, os.X_OK) else None


def tail(path, lines=8):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------
# The recording member: blocking sockets, one thread per connection.


class Recorder:
    """
    A member on 127.0.0.1:C{port} that records every request it reads
    (L{tests.recording.RecordedRequest}) and answers 200 "ok".
    """

    def __init__(self, port):
        self.port = port
        self.requests = []
        self.errors = []
        self._lock = threading.Lock()
        self._sockets = []
        self._stopping = False
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self._thread = threading.Thread(target=self._accept, name="recorder", daemon=True)
        self._thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def reset(self):
        with self._lock:
            self.requests = []
            self.errors = []

    def snapshot(self):
        with self._lock:
            return list(self.requests), list(self.errors)

    def _accept(self):
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        state = {"close": False}

        def onHead(request):
            with self._lock:
                self.requests.append(request)
            if request.expectsContinue and parser.bodyPending:
                conn.sendall(CONTINUE)

        def onComplete(request):
            if request.wantsClose:
                conn.sendall(OK_RESPONSE_CLOSE)
                parser.stopped = True
                state["close"] = True
            else:
                conn.sendall(OK_RESPONSE)

        parser = RequestParser(onHead, onComplete)
        try:
            while not state["close"]:
                data = conn.recv(65536)
                if not data:
                    break
                parser.feed(data)
        except ParseError as e:
            with self._lock:
                self.errors.append(str(e))
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def stop(self):
        self._stopping = True
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._thread.join(2)


# ---------------------------------------------------------------------------
# Balancers


class Balancer:
    name = "?"
    setup = ""

    def __init__(self, options):
        self.options = options
        self.child = None
        self.port = None
        self.maxBodyPort = None
        self.logPath = None

    def missing(self):
        return None

    def version(self):
        return ""

    def spawn(self, argv, workdir, logname, env=None):
        self.logPath = os.path.join(workdir, logname)
        with open(self.logPath, "wb") as out:
            self.child = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=workdir, env=env,
            )

    def start(self, workdir, ports, memberPort):
        raise NotImplementedError

    def ready(self):
        return waitListening(self.port, 15, self.child)

    def stop(self):
        stopChild(self.child)
        self.child = None


class Playbalancer(Balancer):
    name = "playbalancer"
    setup = "python -m twisted playbalancer, round-robin, one member; a second listener with max_body = 16"

    def version(self):
        source = self.options.playbalancer_path
        env = dict(os.environ, PYTHONPATH=os.path.abspath(source)) if source else None
        try:
            out = subprocess.run(
                [self.options.python, "-c",
                 "import playbalancer; print(playbalancer.__version__, playbalancer.__file__)"],
                capture_output=True, text=True, timeout=30, env=env, cwd=tempfile.gettempdir(),
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            out = "?"
        if source:
            return f"playbalancer {out}"
        out = out.split(" ")[0]
        try:
            commit = subprocess.run(
                ["git", "-C", ROOT, "describe", "--always", "--dirty"],
                capture_output=True, text=True, timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            commit = ""
        return f"playbalancer {out}" + (f" ({commit})" if commit else "")

    def start(self, workdir, ports, memberPort):
        self.port = ports.take()
        self.maxBodyPort = ports.take()
        config = os.path.join(workdir, "playbalancer.toml")
        with open(config, "w") as f:
            f.write(
                f"""
[[listen]]
endpoint = "tcp:{self.port}:interface=127.0.0.1"
balancer = "corpus"

[[listen]]
endpoint = "tcp:{self.maxBodyPort}:interface=127.0.0.1"
balancer = "corpus"
max_body = {MAX_BODY}

[balancer.corpus]
scheduler = "round-robin"

[[balancer.corpus.member]]
name = "recorder"
url = "http://127.0.0.1:{memberPort}"
"""
            )
        env = None
        if self.options.playbalancer_path:
            env = dict(os.environ, PYTHONPATH=os.path.abspath(self.options.playbalancer_path))
        self.spawn(
            [self.options.python, "-m", "twisted", "playbalancer", "--config", config],
            workdir, "playbalancer.log", env,
        )

    def ready(self):
        return waitListening(self.port, 30, self.child) and waitListening(
            self.maxBodyPort, 5, self.child
        )


class HAProxy(Balancer):
    name = "haproxy"
    setup = "haproxy -db, mode http, timeouts only (connect 2s, client/server 5s), one server"

    def missing(self):
        self.binary = findBinary("haproxy", self.options.haproxy)
        return None if self.binary else "haproxy not found (apt-get install haproxy)"

    def version(self):
        out = subprocess.run([self.binary, "-v"], capture_output=True, text=True).stdout
        return out.splitlines()[0] if out else "haproxy ?"

    def start(self, workdir, ports, memberPort):
        self.port = ports.take()
        config = os.path.join(workdir, "haproxy.cfg")
        with open(config, "w") as f:
            f.write(
                f"""
global
    maxconn 256

defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s

frontend fe
    bind 127.0.0.1:{self.port}
    default_backend be

backend be
    server recorder 127.0.0.1:{memberPort}
"""
            )
        self.spawn([self.binary, "-db", "-f", config], workdir, "haproxy.log")


class Nginx(Balancer):
    name = "nginx"
    setup = ("nginx, 1 worker, upstream with keepalive 8, proxy_http_version 1.1, "
             "Connection \"\", Host $host")

    def missing(self):
        self.binary = findBinary("nginx", self.options.nginx)
        return None if self.binary else "nginx not found (apt-get install nginx)"

    def version(self):
        out = subprocess.run([self.binary, "-v"], capture_output=True, text=True)
        return (out.stderr or out.stdout).strip() or "nginx ?"

    def start(self, workdir, ports, memberPort):
        self.port = ports.take()
        temp = os.path.join(workdir, "nginx-temp")
        os.makedirs(temp, exist_ok=True)
        config = os.path.join(workdir, "nginx.conf")
        user = "user root root;" if os.geteuid() == 0 else ""
        with open(config, "w") as f:
            f.write(
                f"""
{user}
worker_processes 1;
daemon off;
error_log {workdir}/nginx-error.log info;
pid {workdir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    upstream recorder {{
        server 127.0.0.1:{memberPort};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
            proxy_pass http://recorder;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
    }}
}}
"""
            )
        self.spawn(
            [self.binary, "-e", os.path.join(workdir, "nginx-early.log"), "-p", workdir,
             "-c", config],
            workdir, "nginx.log",
        )


# ---------------------------------------------------------------------------
# Running one vector


def exchange(port, vector, timeout):
    """
    Send the vector on a fresh connection; return the response parser,
    whether the server closed (or reset) the connection, and a note.
    """
    parser = ResponseParser()
    note = ""
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.setblocking(False)
    pending = vector.request
    closed = False
    deadline = time.monotonic() + timeout
    answeredAt = None
    linger = CLOSE_WAIT if vector.closes else OPEN_WAIT
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                note = note or "timeout"
                break
            if answeredAt is None and len(parser.completeFinals) >= vector.responses:
                answeredAt = now
            if answeredAt is not None and now - answeredAt >= linger:
                break
            wantWrite = [sock] if pending else []
            readable, writable, _ = select.select([sock], wantWrite, [], 0.02)
            if writable and pending:
                try:
                    sent = sock.send(pending)
                    pending = pending[sent:]
                except BlockingIOError:
                    pass
                except OSError as e:
                    pending = b""
                    note = f"send: {e.strerror or e}"
            if readable:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    closed = True
                    note = "reset"
                    break
                if not data:
                    closed = True
                    break
                parser.feed(data)
    finally:
        sock.close()
    if closed:
        parser.close()
    return parser, closed, note


def judge(vector, parser, closed, requests):
    """
    The outcome against the vector's expectations: a dict for the JSON and
    the table.
    """
    finals = parser.finals
    status = parser.firstStatus
    forwarded = len(requests)
    problems = []
    if status != vector.status:
        problems.append("status")
    if vector.statuses is not None and tuple(r.status for r in finals) != vector.statuses:
        problems.append("statuses")
    if closed != vector.closes:
        problems.append("close")
    if forwarded != vector.forwarded:
        problems.append("forwarded")
    if (vector.status is not None and vector.status >= 400 and vector.forwarded == 0
            and finals and finals[0].status == vector.status and not finals[0].closes):
        problems.append("no Connection: close")
    normalization = []
    if forwarded == vector.forwarded and vector.normalized is not None:
        normalization = vector.normalized(requests)
    return {
        "status": status,
        "statuses": [r.status for r in parser.responses],
        "closed": closed,
        "forwarded": forwarded,
        "mismatch": problems,
        "normalization": normalization,
        "refused": forwarded == 0 and (status is None or status >= 400),
        "heads": [r.head.decode("latin-1") for r in parser.responses][:3],
        "member": [
            {"method": r.method.decode("latin-1"), "target": r.target[:200].decode("latin-1"),
             "headers": [[n.decode("latin-1"), v[:200].decode("latin-1")] for n, v in r.headers],
             "body": r.body[:200].decode("latin-1"), "complete": r.complete}
            for r in requests
        ],
    }


def runBalancer(balancer, vectors, options, ports, root):
    reason = balancer.missing()
    if reason:
        log(f"{balancer.name}: skipped: {reason}")
        return {"skipped": reason}
    workdir = os.path.join(root, balancer.name)
    os.makedirs(workdir)
    os.chmod(workdir, 0o755)
    recorder = Recorder(ports.take())
    results = {}
    try:
        balancer.start(workdir, ports, recorder.port)
        if not balancer.ready():
            log(f"{balancer.name}: did not start; log:\n{tail(balancer.logPath)}")
            return {"skipped": "did not start: " + tail(balancer.logPath, 3).strip()}
        log(f"{balancer.name}: listening on {balancer.port}, member on {recorder.port}")
        for vector in vectors:
            port = balancer.port
            if vector.maxBody:
                if balancer.maxBodyPort is None or vector.maxBody != MAX_BODY:
                    results[vector.name] = None
                    continue
                port = balancer.maxBodyPort
            recorder.reset()
            try:
                parser, closed, note = exchange(port, vector, options.timeout)
            except OSError as e:
                results[vector.name] = {"error": str(e), "mismatch": ["error"], "refused": False,
                                        "status": None, "forwarded": None, "closed": None,
                                        "normalization": []}
                continue
            time.sleep(SETTLE if not note else SETTLE + 0.3)
            requests, errors = recorder.snapshot()
            result = judge(vector, parser, closed, requests)
            result["note"] = note
            if errors:
                result["memberErrors"] = errors
            results[vector.name] = result
            if options.verbose:
                log(f"  {vector.name:45} {cell(vector, result)}")
            if balancer.child is not None and balancer.child.poll() is not None:
                log(f"{balancer.name}: exited during {vector.name}; log:\n{tail(balancer.logPath)}")
                break
    finally:
        balancer.stop()
        recorder.stop()
    return {"results": results}


# ---------------------------------------------------------------------------
# Output


def cell(vector, result):
    """
    C{"400 c 0"}: status, c(losed) or k(ept open), requests forwarded; then
    C{!} if that differs from the vector's expectation, C{~} if only the
    forwarded request's normalization does.
    """
    if result is None:
        return "n/a"
    if "error" in result:
        return "error"
    status = "-" if result["status"] is None else str(result["status"])
    if vector.statuses is not None:
        status = ",".join(str(s) for s in result["statuses"] if not 100 <= s < 200) or "-"
    text = f"{status} {'c' if result['closed'] else 'k'} {result['forwarded']}"
    if result["mismatch"]:
        text += " !"
    elif result["normalization"]:
        text += " ~"
    return text


def expectedCell(vector):
    status = "-" if vector.status is None else str(vector.status)
    if vector.statuses:
        status = ",".join(str(s) for s in vector.statuses)
    return f"{status} {'c' if vector.closes else 'k'} {vector.forwarded}"


def table(vectors, columns):
    names = [name for name, _ in columns]
    header = ["vector", "expected"] + names
    rows = []
    for vector in vectors:
        row = [vector.name, expectedCell(vector)]
        for name, outcome in columns:
            if "skipped" in outcome:
                row.append("skipped")
            else:
                row.append(cell(vector, outcome["results"].get(vector.name)))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(), rule]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    lines.append(rule)
    return "\n".join(lines)


def summary(vectors, columns):
    """
    Per balancer: vectors run, as the policy expects, refused (nothing
    forwarded; an error status or no response), forwarded although the
    policy refuses, refused although the policy accepts, normalization
    problems.
    """
    header = ["balancer", "run", "as expected", "refused", "forwarded, policy refuses",
              "refused, policy accepts", "normalization differs"]
    rows = []
    for name, outcome in columns:
        if "skipped" in outcome:
            rows.append([name, "skipped: " + outcome["skipped"]] + [""] * (len(header) - 2))
            continue
        results = outcome["results"]
        run = ok = refusedCount = leaked = overRefused = normal = 0
        for vector in vectors:
            result = results.get(vector.name)
            if result is None or "error" in result:
                continue
            run += 1
            if not result["mismatch"] and not result["normalization"]:
                ok += 1
            if result["refused"]:
                refusedCount += 1
            if vector.forwarded == 0 and result["forwarded"]:
                leaked += 1
            if vector.forwarded and result["forwarded"] == 0:
                overRefused += 1
            if result["normalization"]:
                normal += 1
        rows.append([name, str(run), str(ok), str(refusedCount), str(leaked), str(overRefused),
                     str(normal)])
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(), rule]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    lines.append(rule)
    return "\n".join(lines)


def parseArguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--only", default=",".join(BALANCERS),
        help="comma-separated balancers to run (default: %(default)s)")
    add("--match", default="", help="only vectors whose name contains this")
    add("--timeout", type=float, default=3.0,
        help="longest wait for the response(s) to one vector, seconds (default: %(default)s)")
    add("--python", default=sys.executable,
        help="the interpreter that has playbalancer (default: this one)")
    add("--playbalancer-path", metavar="DIR",
        help="run playbalancer from this source tree (put first on PYTHONPATH), e.g. "
             "another commit's files from git archive")
    add("--haproxy", metavar="PATH")
    add("--nginx", metavar="PATH")
    add("--json", metavar="FILE", help="write every result here")
    add("--keep", action="store_true", help="keep the temporary directory")
    add("-v", "--verbose", action="store_true", help="one line per vector as it runs")
    options = parser.parse_args(argv)
    options.only = [n.strip() for n in options.only.split(",") if n.strip()]
    unknown = set(options.only) - set(BALANCERS)
    if unknown:
        parser.error(f"unknown balancer(s): {', '.join(sorted(unknown))}")
    return options


def main(argv=None):
    options = parseArguments(argv)
    vectors = [v for v in VECTORS if options.match in v.name]
    classes = {"playbalancer": Playbalancer, "haproxy": HAProxy, "nginx": Nginx}
    ports = Ports()
    root = tempfile.mkdtemp(prefix="corpus-compare-")
    os.chmod(root, 0o755)
    columns = []
    versions = {}
    began = time.monotonic()
    try:
        for name in options.only:
            balancer = classes[name](options)
            if balancer.missing() is None:
                versions[name] = balancer.version()
            log(f"{name}: {len(vectors)} vectors")
            started = time.monotonic()
            outcome = runBalancer(balancer, vectors, options, ports, root)
            outcome["seconds"] = round(time.monotonic() - started, 1)
            outcome["setup"] = balancer.setup
            columns.append((name, outcome))
    finally:
        if options.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(table(vectors, columns))
    print()
    print("cells: first final status (- none), c = connection closed by the balancer, "
          "k = left open, requests the member saw; ! differs from the policy (also: a "
          "refusal without Connection: close), "
          "~ only the forwarded request's normalization differs; n/a = needs max_body")
    print()
    print(summary(vectors, columns))
    for name, version in versions.items():
        print(f"{name}: {version}")
    print(f"{len(vectors)} vectors, {time.monotonic() - began:.0f} s")
    if options.json:
        data = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "versions": versions,
            "vectors": [
                {
                    "name": v.name, "category": v.category, "expected": v.expected,
                    "status": v.status, "closes": v.closes, "forwarded": v.forwarded,
                    "note": v.note, "request": v.request.decode("latin-1"),
                    "normalized": v.normalized.describe if v.normalized else None,
                    "results": {
                        name: (None if "skipped" in outcome
                               else outcome["results"].get(v.name))
                        for name, outcome in columns
                    },
                }
                for v in vectors
            ],
            "balancers": {
                name: {k: outcome[k] for k in ("setup", "seconds", "skipped") if k in outcome}
                for name, outcome in columns
            },
        }
        with open(options.json, "w") as f:
            json.dump(data, f, indent=1)
        log(f"wrote {options.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
