#!/usr/bin/env python3
"""
Run the HTTP/2 conformance corpus (playbalancer.testing.h2corpus) against
nginx and HAProxy from Debian, each terminating TLS with ALPN h2 in front
of one small HTTP/1.1 member, and print a side-by-side table: case, RFC
section, level, expected outcome, and per server its outcome and mark.

    python benchmarks/h2conformance.py                     # nginx and HAProxy
    python benchmarks/h2conformance.py --playbalancer      # and playbalancer
    python benchmarks/h2conformance.py --target 127.0.0.1:8443 [--h2c]
    python benchmarks/h2conformance.py --json out.json --match hpack/

Everything listens on ephemeral ports of 127.0.0.1; config files, the
self-signed certificate and logs go in a temporary directory (removed
unless --keep); every process the script starts is stopped by its PID.
It installs nothing: a missing nginx/haproxy gives a "skipped" column.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from playbalancer.testing.certs import writeSelfSigned  # noqa: E402
from playbalancer.testing.client import freePort  # noqa: E402
from playbalancer.testing.h2corpus import CASES, runCorpus  # noqa: E402

DEFAULT_TWISTD = "/work/main/.venv/bin/twistd"


def log(text):
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The member: HTTP/1.1, one thread per connection, 200 "ok" to everything
# once the request body (content-length or chunked) has been read.


class MemberHandler(socketserver.StreamRequestHandler):
    """
    Answers every request 200 with the body C{ok}, keep-alive.
    """

    def handle(self):
        while True:
            head = self._readHead()
            if head is None:
                return
            fields = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip().lower()
            if "chunked" in fields.get("transfer-encoding", ""):
                if not self._readChunked():
                    return
            else:
                length = int(fields.get("content-length", "0") or "0")
                if length and len(self.rfile.read(length)) < length:
                    return
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: 3\r\n\r\nok\n")
            self.wfile.flush()
            if fields.get("connection") == "close":
                return

    def _readHead(self):
        lines = []
        while True:
            line = self.rfile.readline(65537)
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                return lines or None
            lines.append(line.decode("latin-1").rstrip("\r\n"))

    def _readChunked(self):
        while True:
            sizeLine = self.rfile.readline(1024)
            if not sizeLine:
                return False
            size = int(sizeLine.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return True
            if len(self.rfile.read(size + 2)) < size + 2:
                return False


class Member(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        """
        Connections the servers under test reset are expected: say nothing.
        """


def startMember():
    member = Member(("127.0.0.1", 0), MemberHandler)
    threading.Thread(target=member.serve_forever, name="member", daemon=True).start()
    return member


# ---------------------------------------------------------------------------
# Servers under test


def findBinary(name):
    found = shutil.which(name)
    if found:
        return found
    candidate = os.path.join("/usr/sbin", name)
    return candidate if os.access(candidate, os.X_OK) else None


def waitListening(port, child, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def stopChild(child, timeout=10.0):
    """
    SIGTERM the child by its PID, SIGKILL it if still there after C{timeout}.
    """
    if child is None or child.poll() is not None:
        return
    try:
        os.kill(child.pid, signal.SIGTERM)
        child.wait(timeout)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(5)


def version(command):
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (done.stdout + done.stderr).strip().splitlines()[0]


def nginxConfig(directory, port, memberPort, cert, key, versionText):
    """
    The nginx config: TLS with h2 (C{http2 on;} from 1.25.1, else the
    C{listen ... http2} parameter), proxying to the member over HTTP/1.1.
    """
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", versionText)
    modern = found is not None and tuple(map(int, found.groups())) >= (1, 25, 1)
    listen = ("listen 127.0.0.1:%d ssl;\n        http2 on;" % port if modern
              else "listen 127.0.0.1:%d ssl http2;" % port)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
        os.chmod(os.path.join(directory, sub), 0o777)
    return """
daemon off;
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    upstream member { server 127.0.0.1:%(member)d; keepalive 16; }
    server {
        %(listen)s
        ssl_certificate %(cert)s;
        ssl_certificate_key %(key)s;
        location / {
            proxy_pass http://member;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
""" % {"d": directory, "member": memberPort, "listen": listen, "cert": cert, "key": key}


HAPROXY_CONFIG = """
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend h2_in
    bind 127.0.0.1:%(port)d ssl crt %(pem)s alpn h2,http/1.1
    default_backend member
backend member
    server m1 127.0.0.1:%(member)d
"""

PLAYBALANCER_CONFIG = """
[[listen]]
endpoint = "ssl:%(port)d:interface=127.0.0.1:privateKey=%(key)s:certKey=%(cert)s"
balancer = "web"

[balancer.web]
scheduler = "round-robin"

[[balancer.web.member]]
name = "m1"
url = "http://127.0.0.1:%(member)d"
"""


def startServer(name, directory, memberPort, key, cert, args):
    """
    Start server C{name} on a free port.

    @return: C{(child, port, versionText)}, or C{(None, None, reason)}.
    """
    port = freePort()
    work = os.path.join(directory, name)
    os.makedirs(work)
    os.chmod(directory, 0o755)
    os.chmod(work, 0o777)
    logFile = open(os.path.join(work, "output.log"), "wb")
    if name == "nginx":
        binary = findBinary("nginx")
        if binary is None:
            return None, None, "skipped: nginx not found"
        versionText = version([binary, "-v"])
        path = os.path.join(work, "nginx.conf")
        with open(path, "w") as f:
            f.write(nginxConfig(work, port, memberPort, cert, key, versionText))
        command = [binary, "-p", work, "-c", path, "-e", os.path.join(work, "nginx-error.log")]
    elif name == "haproxy":
        binary = findBinary("haproxy")
        if binary is None:
            return None, None, "skipped: haproxy not found"
        versionText = version([binary, "-v"])
        pem = os.path.join(work, "haproxy.pem")
        with open(pem, "w") as f:
            f.write(open(cert).read() + open(key).read())
        path = os.path.join(work, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(HAPROXY_CONFIG % {"port": port, "pem": pem, "member": memberPort})
        command = [binary, "-db", "-f", path]
    else:
        if not os.access(args.twistd, os.X_OK):
            return None, None, "skipped: %s not found" % (args.twistd,)
        versionText = "playbalancer (%s)" % (args.twistd,)
        path = os.path.join(work, "playbalancer.toml")
        with open(path, "w") as f:
            f.write(PLAYBALANCER_CONFIG % {"port": port, "key": key, "cert": cert,
                                           "member": memberPort})
        command = [args.twistd, "-n", "--pidfile", os.path.join(work, "twistd.pid"),
                   "playbalancer", "--config", path]
    child = subprocess.Popen(command, cwd=work, stdout=logFile, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
    logFile.close()
    if not waitListening(port, child):
        stopChild(child)
        with open(os.path.join(work, "output.log"), errors="replace") as f:
            tail = f.read()[-400:]
        return None, None, "skipped: %s did not start: %s" % (name, tail.strip())
    return child, port, versionText


# ---------------------------------------------------------------------------
# The table


def shortCode(code):
    return code[:-6] if code.endswith("_ERROR") else code


def expectedShort(case):
    """
    The acceptable outcomes in a few words: C{stream X} for a stream error
    (RST_STREAM X, or GOAWAY X, or a close), C{conn X} for a connection
    error (GOAWAY X or a close).
    """
    tokens = list(case.accept)
    rst = [t[4:] for t in tokens if t.startswith("RST:")]
    goaway = [t[7:] for t in tokens if t.startswith("GOAWAY:")]
    parts = ["stream " + shortCode(code) for code in rst]
    parts += ["conn " + shortCode(code) for code in goaway if code not in rst]
    for token in tokens:
        if token.startswith(("RST:", "GOAWAY:")) or (token == "closed" and goaway):
            continue
        parts.append(token.replace("_", " "))
    return " | ".join(parts)


def cell(result):
    if result is None:
        return "-"
    label = result.outcome.label()
    label = re.sub(r"([A-Z_]+)_ERROR", r"\1", label)
    return "%-4s %s" % (result.mark, label[:44])


def table(columns):
    """
    A reStructuredText simple table of C{columns}: C{[(title, results)]}.
    """
    headers = ["case", "section", "level", "expected"] + [title for title, _ in columns]
    byName = [{r.case.name: r for r in results} for _, results in columns]
    names = [c for c in CASES if any(c.name in m for m in byName)]
    rows = [[c.name, c.section, c.level, expectedShort(c)] + [cell(m.get(c.name)) for m in byName]
            for c in names]
    widths = [max(len(str(x)) for x in [h] + [r[i] for r in rows]) for i, h in enumerate(headers)]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(), rule]
    for row in rows:
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    lines.append(rule)
    return "\n".join(lines)


def summary(title, results):
    counts = {"ok": 0, "FAIL": 0, "fail": 0, "n/a": 0}
    for result in results:
        counts[result.mark] += 1
    mustFails = [r.case.name for r in results if r.mark == "FAIL"]
    return "%s: %d cases, %d ok, %d FAIL (MUST), %d fail (SHOULD/record), %d n/a%s" % (
        title, len(results), counts["ok"], counts["FAIL"], counts["fail"], counts["n/a"],
        ("\n    MUST failures: " + ", ".join(mustFails)) if mustFails else "")


# ---------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="servers to start, of nginx,haproxy (default "
                        "both, or none when --target is given)")
    parser.add_argument("--playbalancer", action="store_true",
                        help="also start twistd playbalancer with an ssl listener")
    parser.add_argument("--twistd", default=DEFAULT_TWISTD,
                        help="the twistd that has playbalancer (default %(default)s)")
    parser.add_argument("--target", action="append", default=[], metavar="HOST:PORT",
                        help="also run against this server (repeatable); starts nothing")
    parser.add_argument("--h2c", action="store_true",
                        help="--target speaks prior-knowledge h2c, not TLS")
    parser.add_argument("--authority", help=":authority for --target (default HOST:PORT)")
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds to wait per step and per outcome (default 2)")
    parser.add_argument("--match", help="only the cases whose name contains this")
    parser.add_argument("--json", metavar="FILE", help="write every result here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each case")
    args = parser.parse_args(argv)

    if args.only is None:
        args.only = "" if args.target else "nginx,haproxy"
    names = [n for n in args.only.split(",") if n]
    if args.playbalancer:
        names.append("playbalancer")
    directory = tempfile.mkdtemp(prefix="h2conformance-")
    children, columns, versions = [], [], {}
    member = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        if names:
            key, cert = writeSelfSigned(directory)
            os.chmod(key, 0o644)
            member = startMember()
            memberPort = member.server_address[1]
        for name in names:
            child, port, versionText = startServer(name, directory, memberPort, key, cert, args)
            versions[name] = versionText
            if child is None:
                log("%s: %s" % (name, versionText))
                continue
            children.append(child)
            columns.append(runOne(name, "127.0.0.1", port, True, None, args))
            stopChild(child)
        for target in args.target:
            host, _, port = target.rpartition(":")
            versions[target] = "target"
            columns.append(runOne(target, host.strip("[]"), int(port), not args.h2c,
                                  args.authority, args))
    finally:
        for child in children:
            stopChild(child)
        if member is not None:
            member.shutdown()
            member.server_close()
        if args.keep:
            log("kept %s" % (directory,))
        else:
            shutil.rmtree(directory, ignore_errors=True)

    if not columns:
        log("nothing was run")
        return 2
    print(table(columns))
    print()
    for title, results in columns:
        print(summary(title, results))
        print("    version: %s" % (versions.get(title, "?"),))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"versions": versions,
                       "servers": {title: [r.asDict() for r in results]
                                   for title, results in columns}}, f, indent=1)
    return 0


def runOne(title, host, port, tls, authority, args):
    log("%s: running %s cases on %s:%d" % (title, "matching" if args.match else "all",
                                           host, port))

    def progress(result):
        if args.verbose:
            log("  %-45s %s" % (result.case.name, cell(result)))

    start = time.monotonic()
    results = runCorpus(host, port, tls=tls, authority=authority, timeout=args.timeout,
                        match=args.match, progress=progress)
    log("%s: %d cases in %.1f s" % (title, len(results), time.monotonic() - start))
    return title, results


if __name__ == "__main__":
    sys.exit(main())
