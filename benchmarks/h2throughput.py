#!/usr/bin/env python3
"""
HTTP/2 throughput and TLS handshake rate: playbalancer (CPython and PyPy)
side by side with nginx (http2), HAProxy (alpn h2) and Apache (mod_http2 +
mod_proxy_balancer), each terminating TLS in front of the same two nginx
members as benchmarks/throughput.py, driven by h2load over TLS (ALPN h2).

Tests (--tests):

  h2-c4-m100   h2load -c 4 -m 100 -n N: 4 connections with 100 streams
               each, GET /small (100 B); N is about --duration s of
               requests at the rate of the warm-up just before
  h2-c64-m10   h2load -c 64 -m 10 -n N: more connections, fewer streams
  h2-newconn   h2load -c 100 -n 100 -m 1, again and again for --duration s:
               a new TLS connection (full handshake, h2 preface, SETTINGS)
               for every request; the figure is new connections per
               balancer CPU-second

For every run: requests per second, requests per balancer CPU-second (user
+ system time of the balancer's process tree from /proc, as throughput.py
counts it), h2load's failed / errored / timeout counts and non-2xx
statuses, and the ratios of the medians to Apache mod_http2 and HAProxy.

    python benchmarks/h2throughput.py --pypy .venv-pypy/bin/python --runs 3 --json out.json
    python benchmarks/h2throughput.py --only playbalancer,haproxy --tests h2-c4-m100 --runs 1

It reuses throughput.py's plumbing (members, processes, ports, CPU
accounting, certificate, the balancers' configs) and changes only what
HTTP/2 needs: the TLS listeners speak h2 (playbalancer's ssl: listener does
by default), and the load is h2load.  With --pin (the default) every
balancer runs on CPU 1 and the members and h2load on CPU 0 (taskset), so
the balancer has a core of its own.  Everything listens on 127.0.0.1;
configs and logs go in one temporary directory, removed at the end; every
process is stopped by its PID.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import namedtuple
from contextlib import contextmanager

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import throughput as tp  # noqa: E402  (members, processes, CPU accounting, peers)

#: A test: C{clients} connections with C{streams} concurrent streams each;
#: C{newconn}: C{clients} connections with one request each, h2load
#: started again and again for the run's duration.
H2Test = namedtuple("H2Test", "name clients streams newconn title")

TESTS = [
    H2Test("h2-c4-m100", 4, 100, False, "h2, 4 connections x 100 streams, 100 B"),
    H2Test("h2-c64-m10", 64, 10, False, "h2, 64 connections x 10 streams, 100 B"),
    H2Test("h2-newconn", 100, 1, True,
           "a new TLS connection per request (h2, 100 at a time), 100 B"),
]

#: The Apache modules for the TLS/h2 virtual host, on top of throughput's.
APACHE_H2_MODULES = ["ssl", "socache_shmcb", "http2"]

#: Appended to throughput.py's Apache config: a TLS virtual host that
#: speaks h2 (mod_http2) and proxies through the same balancer (the
#: ProxyPass of the main server applies to virtual hosts too).
APACHE_H2 = """
${modules}
Listen 127.0.0.1:${tls_port}
SSLSessionCache shmcb:${workdir}/run/ssl_scache(512000)
<VirtualHost 127.0.0.1:${tls_port}>
    SSLEngine on
    SSLCertificateFile ${cert}
    SSLCertificateKeyFile ${key}
    SSLProtocol -all +TLSv1.2 +TLSv1.3
    Protocols h2 http/1.1
</VirtualHost>
"""


def pinned(argv, cpus):
    """
    C{argv} run under C{taskset -c cpus} (unchanged when C{cpus} is empty).
    """
    return ["taskset", "-c", cpus] + list(argv) if cpus else list(argv)


class PinnedProcesses(tp.Processes):
    """
    throughput's L{tp.Processes}, each new process on the CPUs in
    C{self.cpus} (a taskset list, or "" for no pinning); L{onCpus} sets it
    for a block of code.
    """

    cpus = ""

    def spawn(self, argv, logPath, cwd=None, env=None):
        return tp.Processes.spawn(self, pinned(argv, self.cpus), logPath, cwd=cwd, env=env)

    @contextmanager
    def onCpus(self, cpus):
        previous, self.cpus = self.cpus, cpus
        try:
            yield
        finally:
            self.cpus = previous


def editConfig(path, old, new):
    """
    Replace the one occurrence of C{old} in the file at C{path} with C{new};
    L{RuntimeError} if it is not there exactly once (the template changed).
    """
    with open(path) as f:
        text = f.read()
    if text.count(old) != 1:
        raise RuntimeError(f"{path}: expected {old!r} once, found it {text.count(old)} times")
    with open(path, "w") as f:
        f.write(text.replace(old, new))


class H2HAProxy(tp.HAProxy):
    """
    throughput.py's HAProxy (nbthread 1, http-reuse always) with its TLS
    front end offering h2 first.
    """

    label = "HAProxy, 1 thread, alpn h2,http/1.1"
    note = "nbthread 1, roundrobin, http-reuse always; bind ... ssl alpn h2,http/1.1"

    def command(self, ctx):
        argv = tp.HAProxy.command(self, ctx)
        editConfig(argv[-1], " alpn http/1.1 ", " alpn h2,http/1.1 ")
        return argv


class H2Nginx(tp.Nginx):
    """
    throughput.py's nginx (1 worker, upstream keepalive 256) with
    C{listen ... ssl http2} on its TLS server.
    """

    label = "nginx, 1 worker, keepalive 256, listen ssl http2"
    note = "upstream keepalive 256, proxy_http_version 1.1; listen ... ssl http2"

    def command(self, ctx):
        argv = tp.Nginx.command(self, ctx)
        port = self.ports["tls"]
        editConfig(argv[argv.index("-c") + 1], f"listen 127.0.0.1:{port} ssl;",
                   f"listen 127.0.0.1:{port} ssl http2;")
        return argv


class H2Apache(tp.Apache):
    """
    throughput.py's Apache (event MPM, 2 x 128 threads, mod_proxy_balancer)
    with a TLS virtual host: mod_ssl, mod_http2, C{Protocols h2 http/1.1}.
    """

    label = "Apache 2.4 event, mod_http2 + mod_proxy_balancer"
    note = ("event MPM 2 x 128 threads, lbmethod=byrequests; mod_ssl + mod_http2 "
            "(its defaults), Protocols h2 http/1.1")
    tls = True

    def unavailable(self, ctx):
        reason = tp.Apache.unavailable(self, ctx)
        if reason:
            return reason
        for module in APACHE_H2_MODULES:
            if not os.path.exists(self.module(ctx, module)):
                return f"{self.module(ctx, module)} not found"
        return None

    def command(self, ctx):
        argv = tp.Apache.command(self, ctx)
        load = "\n".join(f"LoadModule {m}_module {self.module(ctx, m)}"
                         for m in APACHE_H2_MODULES)
        tp.appendTo(argv[argv.index("-f") + 1], APACHE_H2, modules=load,
                    tls_port=self.ports["tls"], workdir=self.workdir,
                    cert=ctx.tls["cert"], key=ctx.tls["key"])
        return argv


def allBalancers(args):
    """
    Every row, in table order.  The playbalancer rows are throughput.py's,
    whose ssl: listener speaks h2 by default (ALPN h2, http/1.1).
    """
    return [
        tp.PlayBalancer("playbalancer", args.python, "playbalancer, CPython", tls=True),
        tp.PlayBalancer("playbalancer-pypy", args.pypy, "playbalancer, PyPy", tls=True),
        H2HAProxy(),
        H2Nginx(),
        H2Apache(),
    ]


NAMES = ["playbalancer", "playbalancer-pypy", "haproxy", "nginx", "apache"]


def alpnOf(port, certPath):
    """
    What 127.0.0.1:C{port} answers a client offering h2 and http/1.1: the
    ALPN protocol, TLS version and cipher (or C{{"error": ...}}).
    """
    context = ssl.create_default_context(cafile=certPath)
    context.set_alpn_protocols(["h2", "http/1.1"])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                return {"alpn": s.selected_alpn_protocol(), "version": s.version(),
                        "cipher": s.cipher()[0]}
    except (OSError, ssl.SSLError) as e:
        return {"error": str(e)}


# h2load.


def h2loadCommand(h2load, port, test, requests):
    """
    The h2load command line for C{test} against 127.0.0.1:C{port}:
    C{requests} requests over C{clients} connections of up to C{streams}
    concurrent streams (for a "newconn" test, C{requests} is C{clients}:
    one request per connection).

    A fixed count (-n), not a duration (-D): h2load 1.52 with -D, when a
    connection's handshake finished after the duration was over, went on
    sending on it and never exited (seen against playbalancer on CPython,
    whose handshakes took up to 1.2 s under 640 streams).
    """
    return [h2load, "-t1", f"-c{test.clients}", f"-m{test.streams}", f"-n{requests}",
            f"https://127.0.0.1:{port}/small"]


COUNTS = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")


def parseH2load(text):
    """
    h2load's summary: the request counts (L{COUNTS}), status classes, the
    application protocol and the seconds it reports; L{ValueError} when
    the summary is missing.
    """
    finished = re.search(r"^finished in ([\d.]+)(\w+),", text, re.M)
    requests = re.search(r"^requests: " + ", ".join(r"(\d+) " + c for c in COUNTS), text, re.M)
    if finished is None or requests is None:
        raise ValueError("no summary in h2load output:\n" + text[-800:])
    statuses = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx",
                         text, re.M)
    protocol = re.search(r"^Application protocol: (\S+)", text, re.M)
    figures = {c: int(v) for c, v in zip(COUNTS, requests.groups())}
    figures.update(
        seconds=float(finished.group(1)) * tp.TIME_UNITS[finished.group(2)] / 1e3,
        status_2xx=int(statuses.group(1)) if statuses else 0,
        status_other=sum(int(v) for v in statuses.groups()[1:]) if statuses else 0,
        protocol=protocol.group(1) if protocol else None,
    )
    return figures


def runH2load(procs, argv, timeout, logPath):
    """
    Run one h2load to the end (registered like the servers, so Ctrl-C
    stops it) and return its output; L{RuntimeError} if it takes longer
    than C{timeout} seconds.
    """
    with open(logPath, "w"):
        pass
    proc = procs.spawn(argv, logPath)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"h2load still running after {timeout:.0f} s: "
                           f"{' '.join(argv[-5:])}\n{tp.tail(logPath, 5)}")
    finally:
        procs.stop(proc)
    with open(logPath, errors="replace") as f:
        return f.read()


def drive(ctx, port, test, requests, seconds):
    """
    Load C{test} on C{port}: one h2load of C{requests} requests, or for a
    "newconn" test h2load runs of C{test.clients} requests back to back
    until C{seconds} are up.  Returns the summed figures and the number of
    h2load runs.
    """
    h2load, logPath = ctx.binaries["h2load"], os.path.join(ctx.workdir, "h2load.log")
    total, runs, protocols = {}, 0, set()
    deadline = time.monotonic() + seconds
    with ctx.procs.onCpus(ctx.args.load_cpus):
        while True:
            count = test.clients if test.newconn else requests
            output = runH2load(ctx.procs, h2loadCommand(h2load, port, test, count),
                               ctx.args.h2load_timeout, logPath)
            figures = parseH2load(output)
            runs += 1
            protocols.add(figures.pop("protocol"))
            for key, value in figures.items():
                total[key] = total.get(key, 0) + value
            if not test.newconn or time.monotonic() >= deadline:
                break
    total["protocols"] = sorted(str(p) for p in protocols)
    return total, runs


def measure(ctx, balancer, test):
    """
    One measured run of C{test} through C{balancer}: a warm-up of
    L{warmupRequests} (whose rate sizes the run: about --duration seconds
    of requests), then the load with the balancer's CPU time sampled
    around it.
    """
    port = balancer.ports["tls"]
    warm, _ = drive(ctx, port, test, warmupRequests(test), ctx.args.warmup)
    rate = warm["done"] / warm["seconds"] if warm["seconds"] else 0
    requests = max(warmupRequests(test), int(rate * ctx.args.duration))
    cpuBefore, wall = tp.treeCpu(balancer.proc.pid), time.monotonic()
    figures, runs = drive(ctx, port, test, requests, ctx.args.duration)
    wall = time.monotonic() - wall
    cpu = tp.treeCpu(balancer.proc.pid) - cpuBefore
    if balancer.proc.poll() is not None:
        raise RuntimeError(f"balancer exited with {balancer.proc.returncode} during the run:\n"
                           f"{tp.tail(balancer.logPath)}")
    if figures["protocols"] != ["h2"]:
        raise RuntimeError(f"h2load negotiated {figures['protocols']}, not h2")
    ok = figures["status_2xx"]
    figures.update(
        h2load_runs=runs,
        requests_asked=requests if not test.newconn else runs * test.clients,
        wall_s=wall,
        rps=ok / wall,
        # Every request asked for that did not get a 2xx/3xx: h2load's
        # failed (errored and timeout are part of it), non-2xx statuses,
        # and requests never done.
        errors=figures["total"] - figures["succeeded"],
        cpu_s=cpu,
        cpu_cores=cpu / wall,
        req_per_cpu_s=ok / cpu if cpu > 0 else None,
    )
    return figures


def warmupRequests(test):
    """
    The warm-up's request count: 20 rounds of every stream of every
    connection (for a "newconn" test the warm-up runs --warmup seconds).
    """
    return test.clients * test.streams * 20


# The run.


def startAll(ctx, balancers, record):
    """
    Start every balancer that can run here (on the balancer CPUs), check
    that its TLS listener answers h2, warm PyPy up; the others get a skip
    reason.  Returns those that started.
    """
    started = []
    for balancer in balancers:
        entry = record["balancers"][balancer.name]
        reason = balancer.unavailable(ctx)
        if reason is None:
            try:
                with ctx.procs.onCpus(ctx.args.balancer_cpus):
                    balancer.start(ctx)
                entry["alpn"] = alpnOf(balancer.ports["tls"], ctx.tls["cert"])
                if entry["alpn"].get("alpn") != "h2":
                    raise RuntimeError(f"its TLS listener answers {entry['alpn']}, not h2")
            except RuntimeError as e:
                reason = f"did not start: {e}"
        entry["version"] = balancer.version(ctx) if reason is None or ctx.binaries.get(
            balancer.binary or "") else ""
        if reason is not None:
            entry["skipped"] = reason
            tp.log(f"{balancer.name}: skipped: {reason}")
            continue
        entry["ports"] = balancer.ports
        tp.log(f"{balancer.name}: ready on {balancer.ports}, TLS {entry['alpn']}, "
               f"members seen {balancer.members.get('tls')}")
        if "pypy" in balancer.name and ctx.args.pypy_warmup > 0:
            tp.log(f"{balancer.name}: warming up, {ctx.args.pypy_warmup} s per test")
            for test in ctx.tests:
                drive(ctx, balancer.ports["tls"], test, warmupRequests(test) * 5,
                      ctx.args.pypy_warmup)
        started.append(balancer)
    return started


def runAll(ctx, balancers, record):
    """
    Run 1 of every test on every balancer, then run 2, ... (interleaved, so
    noise falls on all alike).  Results go into C{record["results"]} as
    they come.
    """
    results = {}
    for run in range(1, ctx.args.runs + 1):
        for test in ctx.tests:
            for balancer in balancers:
                key = (balancer.name, test.name)
                if key not in results:
                    results[key] = {"balancer": balancer.name, "test": test.name, "runs": []}
                    record["results"].append(results[key])
                try:
                    with ctx.procs.onCpus(ctx.args.balancer_cpus):
                        note = balancer.ensureRunning(ctx)
                    if note:
                        record["notes"].append(f"run {run}, {test.name}: {note}")
                    figures = measure(ctx, balancer, test)
                except (RuntimeError, ValueError, OSError) as e:
                    figures = {"error": str(e)}
                    tp.log(f"[run {run}] {test.name:11} {balancer.name:18} ERROR {e}")
                else:
                    tp.log(f"[run {run}] {test.name:11} {balancer.name:18} "
                           f"{figures['rps']:9,.0f} req/s  cpu {figures['cpu_s']:5.2f} s  "
                           f"{tp.fmt(figures['req_per_cpu_s'], 0):>7} req/CPU-s  "
                           f"failed {figures['failed']} errored {figures['errored']} "
                           f"timeout {figures['timeout']} non-2xx {figures['status_other']}")
                figures["run"] = run
                results[key]["runs"].append(figures)


METRICS = ("rps", "req_per_cpu_s", "cpu_s", "cpu_cores", "errors", "failed", "errored",
           "timeout", "status_other", "succeeded")


def summarise(record):
    """
    Medians over the good runs, and the ratios of the medians (requests
    per CPU-second, requests/s) to Apache and to HAProxy on the same test.
    """
    results = record["results"]
    for r in results:
        good = [run for run in r["runs"] if "error" not in run]
        r["runs_ok"] = len(good)
        r["median"] = {m: tp.median([run.get(m) for run in good]) for m in METRICS}
        r["errors_total"] = sum(run.get("errors", 0) for run in good)
        r["per_cpu_s_range"] = ([min(run["req_per_cpu_s"] for run in good),
                                 max(run["req_per_cpu_s"] for run in good)] if good else None)
    byKey = {(r["balancer"], r["test"]): r for r in results}
    for r in results:
        for key, ref in (("vs_apache", "apache"), ("vs_haproxy", "haproxy")):
            other = byKey.get((ref, r["test"]))
            r[key] = None if other is None else {
                "per_cpu_s": tp.ratio(r["median"]["req_per_cpu_s"],
                                      other["median"]["req_per_cpu_s"]),
                "rps": tp.ratio(r["median"]["rps"], other["median"]["rps"])}


def report(record, kind="md"):
    """
    The printed report: the setup, then one row per test and balancer.
    """
    header = ["test", "balancer", "req/s", "req/CPU-s", "range", "CPU cores", "x Apache",
              "x HAProxy", "errors (all runs)"]
    order = list(record["balancers"])
    tests = [t.name for t in TESTS]
    rows = []
    for r in sorted(record["results"], key=lambda r: (tests.index(r["test"]),
                                                       order.index(r["balancer"]))):
        m = r["median"]
        label = r["balancer"]
        if r["runs_ok"] < len(r["runs"]):
            label += f" ({len(r['runs']) - r['runs_ok']} of {len(r['runs'])} runs failed)"
        low, high = r["per_cpu_s_range"] or (None, None)
        rows.append([r["test"], label, tp.fmt(m["rps"], 0), tp.fmt(m["req_per_cpu_s"], 0),
                     f"{tp.fmt(low, 0)}-{tp.fmt(high, 0)}", tp.fmt(m["cpu_cores"], 2),
                     ratioCell(r["vs_apache"]), ratioCell(r["vs_haproxy"]),
                     str(r["errors_total"])])
    lines = tp.setupLines(record, f"; {record['settings']['pinning']}")
    lines += ["", tp.rstTable(header, rows) if kind == "rst" else tp.markdownTable(header, rows),
              "", "x Apache, x HAProxy: this row's median requests per CPU-second / "
              "requests per second over the reference's, same test, same invocation.  "
              "errors: requests h2load was asked for minus those that succeeded (failed, errored, timeout, non-2xx, never done), summed over the runs.", ""]
    lines += [f"Note: {n}" for n in record["notes"]]
    return "\n".join(lines)


def ratioCell(ratios):
    if not ratios or ratios["per_cpu_s"] is None:
        return "-"
    return f"{tp.fmt(ratios['per_cpu_s'], 2)} / {tp.fmt(ratios['rps'], 2)}"


def parseArgs(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    p.add_argument("--warmup", type=int, default=2,
                   help="seconds of h2-newconn load before each of its runs (the other "
                        "tests warm up with 20 requests per stream)")
    p.add_argument("--only", help="balancers, of " + ",".join(NAMES) + " (default: all)")
    p.add_argument("--tests", default=",".join(t.name for t in TESTS))
    p.add_argument("--python", type=tp.interpreterPath, default=sys.executable,
                   help="interpreter with playbalancer for the CPython row")
    p.add_argument("--pypy", type=tp.interpreterPath, default=tp.DEFAULT_PYPY or "",
                   help="PyPy with playbalancer for playbalancer-pypy ('' for none)")
    p.add_argument("--pypy-warmup", type=int, default=10,
                   help="seconds of each test on the PyPy row once after it starts")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="do not pin: by default balancers run on CPU 1, members and "
                        "h2load on CPU 0 (taskset)")
    p.add_argument("--json", help="write every run, medians and ratios here")
    p.add_argument("--table", choices=("md", "rst"), default="md")
    p.add_argument("--report", metavar="JSON", help="only print the table of an earlier --json")
    p.add_argument("--no-install", action="store_true", help="never run apt-get")
    p.add_argument("--apache-modules", default="/usr/lib/apache2/modules")
    p.add_argument("--start-timeout", type=float, default=60)
    p.add_argument("--h2load-timeout", type=float, default=120,
                   help="seconds one h2load may take before the run counts as an error")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    args.only = [n for n in (args.only or ",".join(NAMES)).split(",") if n]
    args.tests = [n for n in args.tests.split(",") if n]
    for n in args.only:
        if n not in NAMES:
            p.error(f"unknown balancer {n!r}; known: {', '.join(NAMES)}")
    for n in args.tests:
        if n not in [t.name for t in TESTS]:
            p.error(f"unknown test {n!r}; known: {', '.join(t.name for t in TESTS)}")
    pin = args.pin and (os.cpu_count() or 1) >= 2 and tp.findBinary("taskset")
    args.balancer_cpus, args.load_cpus = ("1", "0") if pin else ("", "")
    # What throughput.py's balancers read from the options.
    args.tls_no_resumption = False
    return args


def newRecord(args, ctx, balancers):
    return {
        "benchmark": "playbalancer HTTP/2 throughput (benchmarks/h2throughput.py)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "git_commit": ctx.gitCommit,
        "settings": {
            "runs": args.runs, "duration": args.duration, "warmup": args.warmup,
            "pypy_warmup_on_start": args.pypy_warmup,
            "pinning": (f"balancers on CPU {args.balancer_cpus}, members and h2load on CPU "
                        f"{args.load_cpus} (taskset)" if args.balancer_cpus else "not pinned"),
            "load": "h2load -t1 over TLS (ALPN h2), GET /small (100 B)",
            "members": "2 x nginx, worker_processes 1, sendfile on, access_log off",
            "tls": "one EC P-256 self-signed certificate (throughput.makeCertificate); "
                   "h2load makes a full handshake on every connection"},
        "machine": tp.machineInfo(),
        "versions": {"h2load": tp.firstLine([ctx.binaries["h2load"], "--version"]),
                     "member nginx": tp.firstLine([ctx.binaries["nginx"], "-v"])},
        "tests": {t.name: t._asdict() for t in ctx.tests},
        "balancers": {b.name: {"label": b.label, "note": b.note} for b in balancers},
        "results": [],
        "notes": [],
    }


def main(argv=None):
    """
    Start the members and balancers, measure, summarise, print, write the
    JSON; stop everything started and remove the temporary directory
    whatever happens.
    """
    args = parseArgs(argv)
    if args.report:
        with open(args.report) as f:
            print(report(json.load(f), args.table))
        return 0
    signal.signal(signal.SIGTERM, tp.onSigterm)
    ctx = tp.Context(args)
    ctx.procs = PinnedProcesses()
    ctx.tests = [t for t in TESTS if t.name in args.tests]
    balancers = [b for b in allBalancers(args) if b.name in args.only]
    tp.PACKAGES.setdefault("h2load", "nghttp2-client")
    needed = {"h2load", "nginx"} | {b.binary for b in balancers if b.binary}
    ctx.binaries = tp.ensurePackages(sorted(needed), not args.no_install)
    for name in ("h2load", "nginx"):
        if not ctx.binaries[name]:
            tp.log(f"{name} is needed and was not found")
            return 2
    ctx.workdir = tempfile.mkdtemp(prefix="pb-h2throughput-")
    os.chmod(ctx.workdir, 0o755)
    record = None
    try:
        ctx.tls = tp.makeCertificate(ctx, os.path.join(ctx.workdir, "tls"))
        ctx.tlsContext = tp.clientContext(ctx.tls["cert"])
        record = newRecord(args, ctx, balancers)
        ctx.members = [tp.Member("m1"), tp.Member("m2")]
        with ctx.procs.onCpus(args.load_cpus):
            for member in ctx.members:
                member.start(ctx)
        started = startAll(ctx, balancers, record)
        runAll(ctx, started, record)
    except KeyboardInterrupt as e:
        tp.log(f"interrupted ({str(e) or 'Ctrl-C'}): stopping, then reporting what was measured")
        if record is not None:
            record["notes"].append("interrupted: not every run was made")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        ctx.procs.stopAll()
        if args.keep:
            tp.log(f"kept {ctx.workdir}")
        else:
            shutil.rmtree(ctx.workdir, ignore_errors=True)
    if record is None:
        return 1
    record["machine"]["loadavg_end"] = os.getloadavg()
    record["versions"]["interpreters"] = ctx.interpreters
    record["results"] = [r for r in record["results"] if r["runs"]]
    summarise(record)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
    print(report(record, args.table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
