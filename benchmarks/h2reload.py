#!/usr/bin/env python3
"""
Reloads, binary upgrades and certificate renewals under an HTTP/2 load:
does a balancer fail a request of an h2 client (h2load, TLS, ALPN h2) while
its configuration changes, while a new process takes over, or while its
certificate is renewed?

The sibling of benchmarks/reload.py, and built from it: the same four demo
members, the same config states (each reload moves the window of three
members by one, changes every kept member's weight and the response
timeout), the same way of reloading and upgrading each balancer.  What
differs:

- the balancer listens on TLS and speaks h2 (playbalancer's ssl: listener,
  nginx ``listen ... ssl http2``, HAProxy ``alpn h2,http/1.1``);
- the load is h2load: batches of ``h2load -c C -m M -n N`` back to back
  (new connections at every batch), each batch's counts kept with its
  start and end;
- three kinds of event, spread evenly over the run in turn: ``reload``
  (kill -HUP; nginx -s reload; a new HAProxy with -sf), ``renew`` (a new
  self-signed key and certificate written over the old files, then the
  same reload; the script then checks that new connections get the new
  certificate) and ``upgrade`` (kill -USR2, playbalancer only; the peers
  skip those slots).

A request failed when h2load counted it as not succeeded (failed, errored,
timed out, a status other than 2xx/3xx, or never done); those it never
started are counted apart (after a GOAWAY h2load opens no new stream on
that connection and does not reconnect, so its unsent share counts as
failed).  Each batch is put against the first event under way while it
ran, so the report gives the failures per kind of event.  playbalancer's access log (on here) and h2load's
output of every batch with failures go in the JSON.

    python benchmarks/h2reload.py --pypy .venv-pypy/bin/python --json out.json
    python benchmarks/h2reload.py --only playbalancer,nginx --runs 2

Everything listens on 127.0.0.1 (ports from the kernel); configs, keys
and logs go in a temporary directory per row, removed at the end (--keep
keeps them); every process is stopped by its PID.  Peers are found on PATH
(and /usr/sbin); a missing one is skipped with a note.  Peer configs:
benchmarks/peers/h2reload-*.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import reload as rl  # noqa: E402  (members, states, balancers, log watching)
from h2throughput import parseH2load  # noqa: E402
from rolling_upgrade import (  # noqa: E402
    findBinary,
    freePort,
    log,
    now,
    startMember,
    stopAllMembers,
    stopPid,
    waitFor,
)

KINDS = ("reload", "renew", "upgrade")


# Certificates: a new self-signed one over the same files.


def writeCertificate(directory, serial):
    """
    Write a new EC P-256 key and self-signed certificate for localhost and
    127.0.0.1 as C{directory}/key.pem and cert.pem (and both in
    haproxy.pem), each through a temporary file and a rename, so that a
    reader sees the old file or the new one.  Returns the certificate's
    SHA-256 fingerprint.
    """
    key, cert = os.path.join(directory, "key.new"), os.path.join(directory, "cert.new")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "7", "-subj", f"/CN=localhost/OU=renewal {serial}",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True, timeout=60)
    with open(os.path.join(directory, "haproxy.new"), "w") as out:
        for path in (cert, key):
            with open(path) as f:
                out.write(f.read())
    for new, final in (("key.new", "key.pem"), ("cert.new", "cert.pem"),
                       ("haproxy.new", "haproxy.pem")):
        os.chmod(os.path.join(directory, new), 0o644)
        os.replace(os.path.join(directory, new), os.path.join(directory, final))
    with open(os.path.join(directory, "cert.pem")) as f:
        return fingerprint(ssl.PEM_cert_to_DER_cert(f.read()))


def fingerprint(der):
    return hashlib.sha256(der).hexdigest()[:16]


def servedFingerprints(port, tries=4):
    """
    The fingerprints of the certificates C{tries} new TLS connections to
    127.0.0.1:C{port} were given (several: each worker serves its own).
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    seen = []
    for _ in range(tries):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as s:
                    seen.append(fingerprint(s.getpeercert(binary_form=True)))
        except (OSError, ssl.SSLError) as e:
            seen.append(f"error: {e}")
    return seen


def readyTls(port, timeout):
    """
    Wait until a GET / over TLS (HTTP/1.1, which every listener here also
    speaks) on C{port} gets a demo member's answer.
    """
    import http.client
    context = ssl._create_unverified_context()

    def answers():
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=context)
        try:
            conn.request("GET", "/")
            return conn.getresponse().read().startswith(b"Hello from ")
        finally:
            conn.close()

    waitFor(answers, timeout, f"port {port} to answer over TLS")


# The balancers: reload.py's, on TLS and h2.


class TlsRow:
    """
    What the h2 rows add to reload.py's: the certificate directory (set by
    L{runOne} before start), a TLS readiness check, a renewal (new
    certificate files, then the row's own reload) and h2 in the setup.
    """

    tlsDir = None

    def renew(self, state, serial):
        expected = writeCertificate(self.tlsDir, serial)
        outcome = self.reload(state)
        outcome["certificate"] = expected
        return outcome

    def certPaths(self):
        return {name: os.path.join(self.tlsDir, f"{name}.pem")
                for name in ("key", "cert", "haproxy")}


class H2Playbalancer(TlsRow, rl.Playbalancer):
    def __init__(self, options, name, python, workers, label, env=None):
        rl.Playbalancer.__init__(self, options, name, python, workers, label, env)
        self.setup = self.setup.replace(", round-robin", ", ssl: listener (h2 by ALPN), "
                                        "access log on, round-robin")

    def writeConfig(self, state):
        members = "".join(
            f'\n[[balancer.bench.member]]\nname = "{n}"\nurl = "http://127.0.0.1:{p}"\n'
            f'weight = {w}\n' for n, p, w in state["members"])
        paths = self.certPaths()
        rl.fill("h2reload-playbalancer.toml", self.config, workers=self.workers,
                http_port=self.port, manager_port=self.managerPort, timeout=state["timeout"],
                members=members, key=paths["key"], cert=paths["cert"],
                access_log=os.path.join(os.path.dirname(self.config), "access.log"))

    def ready(self, timeout=60):
        readyTls(self.port, timeout)
        self.tracked.add(self.pid)


class H2Nginx(TlsRow, rl.Nginx):
    setup = ("1 worker, listen ssl http2, upstream keepalive 32; reload: nginx -s reload; "
             "no binary upgrade step")

    def writeConfig(self, state):
        servers = "".join(f"        server 127.0.0.1:{p} weight={w};\n"
                          for _, p, w in state["members"])
        user = ""
        if os.geteuid() == 0 and rl.unprivileged():
            user = "user %s %s;\n" % rl.unprivileged()
        paths = self.certPaths()
        rl.fill("h2reload-nginx.conf", self.config, user=user, workdir=self.workdir,
                http_port=self.port, servers=servers, timeout=state["timeout"],
                cert=paths["cert"], key=paths["key"])

    def ready(self, timeout=30):
        readyTls(self.port, timeout)


class H2HAProxy(TlsRow, rl.HAProxy):
    setup = ("nbthread 1, bind ssl alpn h2,http/1.1, round robin; reload: a new haproxy -db "
             "-f CFG -sf OLDPID; no binary upgrade step")

    def writeConfig(self, state):
        servers = "".join(f"    server {n} 127.0.0.1:{p} weight {w}\n"
                          for n, p, w in state["members"])
        rl.fill("h2reload-haproxy.cfg", self.config, stats="", http_port=self.port,
                servers=servers, timeout=state["timeout"], pem=self.certPaths()["haproxy"])

    def ready(self, timeout=30):
        readyTls(self.port, timeout)


def balancers(options):
    return [
        H2Playbalancer(options, "playbalancer", options.python, 1, "CPython"),
        H2Playbalancer(options, "playbalancer-pypy", options.pypy, 1, "PyPy", rl.PYPY_ENV),
        H2Playbalancer(options, "playbalancer-w2", options.python, 2, "CPython"),
        H2Playbalancer(options, "playbalancer-pypy-w2", options.pypy, 2, "PyPy", rl.PYPY_ENV),
        H2Nginx(options),
        H2HAProxy(options),
    ]


NAMES = ["playbalancer", "playbalancer-pypy", "playbalancer-w2", "playbalancer-pypy-w2",
         "nginx", "haproxy-sf"]


# The load: h2load batches back to back.


class H2Load:
    """
    Batches of C{h2load -t1 -c clients -m streams -n batch} over TLS, one
    after the other until L{stop}; each batch's counts with its start and
    end (seconds since L{start}), and its output when a request failed.
    """

    def __init__(self, h2load, port, options, workdir):
        self.argv = [h2load, "-t1", f"-c{options.clients}", f"-m{options.streams}",
                     f"-n{options.batch}", f"https://127.0.0.1:{port}/"]
        self.timeout = options.batch_timeout
        self.output = os.path.join(workdir, "h2load.out")
        self.batches = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.child = None

    def start(self):
        self.began = now()
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join(self.timeout + 15)
        return self.thread.is_alive()

    def loop(self):
        while not self.stopping.is_set():
            self.batches.append(self.one())

    def one(self):
        started = now() - self.began
        with open(self.output, "wb") as out:
            self.child = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        hung = False
        try:
            self.child.wait(self.timeout)
        except subprocess.TimeoutExpired:
            hung = True
            stopPid(self.child.pid, timeout=5)
            self.child.wait()
        with open(self.output, errors="replace") as f:
            text = f.read()
        batch = {"start": round(started, 3), "end": round(now() - self.began, 3)}
        try:
            figures = parseH2load(text)
        except ValueError:
            figures = {"total": int(self.argv[4][2:]), "succeeded": 0, "done": 0,
                       "failed": 0, "errored": 0, "timeout": 0, "protocol": None}
            batch["no_summary"] = True
        batch.update({k: figures.get(k) for k in ("total", "succeeded", "done", "failed",
                                                  "errored", "timeout", "status_other",
                                                  "protocol")})
        batch["not_ok"] = figures["total"] - figures["succeeded"]
        if hung:
            batch["hung"] = True
        if batch["not_ok"] or hung or batch.get("no_summary"):
            batch["output"] = [line for line in text.splitlines()
                               if not line.startswith(("progress:", "spawning", "starting"))][-25:]
        return batch


# One run of one row.


def timeline(options, upgrades):
    """
    C{[(at, kind, number)]}: the events spread evenly from 2 s to 5 s before
    the end, the kinds in turn (reload, renew, upgrade, reload, ...) as long
    as each has some left; without upgrades their slots stay empty.
    """
    left = {"reload": options.reloads, "renew": options.renewals,
            "upgrade": options.upgrades}
    kinds = []
    while any(left.values()):
        for kind in KINDS:
            if left[kind]:
                left[kind] -= 1
                kinds.append(kind)
    first, last = 2.0, max(2.0, options.duration - 5.0)
    plan, numbers = [], Counter()
    for i, kind in enumerate(kinds):
        numbers[kind] += 1
        if kind == "upgrade" and not upgrades:
            continue
        plan.append((first + (last - first) * i / max(1, len(kinds) - 1), kind, numbers[kind]))
    return plan


def attribute(batches, events, grace):
    """
    Put each batch against the first event under way while it ran (an
    event lasts from its start to C{grace} seconds after it answered; a
    batch that overlaps two events counts for the first only): per event,
    the requests and failures of its batches; and the requests and
    failures of batches that overlapped no event.
    """
    outside = {"requests": 0, "not_ok": 0}
    for e in events:
        e["requests_during"] = e["not_ok_during"] = 0
    for b in batches:
        hit = [e for e in events
               if b["start"] <= e["at_s"] + e["took_s"] + grace and b["end"] >= e["at_s"]]
        b["events"] = [f"{e['event']} {e['index']}" for e in hit]
        if hit:
            hit[0]["requests_during"] += b["total"]
            hit[0]["not_ok_during"] += b["not_ok"]
        else:
            outside["requests"] += b["total"]
            outside["not_ok"] += b["not_ok"]
    return outside


def kinds(batches):
    """
    The failures of C{batches} by what h2load did with them: C{never_sent}
    (requests h2load never started: after a GOAWAY it opens no stream on
    that connection and counts the rest of its share as failed, without
    reconnecting) and C{started} (started, that is handed to its HTTP/2
    library, and not answered with a 2xx/3xx).
    """
    return {"never_started": sum(b["total"] - b["done"] for b in batches),
            "started_not_ok": sum(b["done"] - b["succeeded"] for b in batches)}


def runOne(balancer, options, run):
    root = tempfile.mkdtemp(prefix="h2reload-bench-")
    os.chmod(root, 0o755)
    children, events = [], []
    result = {"balancer": balancer.name, "setup": balancer.setup, "run": run}
    load = None
    try:
        balancer.tlsDir = os.path.join(root, "tls")
        os.makedirs(balancer.tlsDir)
        os.chmod(balancer.tlsDir, 0o755)
        current = writeCertificate(balancer.tlsDir, 0)
        ports = [freePort() for _ in range(rl.MEMBERS)]
        for i, port in enumerate(ports):
            children.append(startMember(options.python, root, f"app{i + 1}", port))
        for i in range(rl.MEMBERS):
            waitFor(lambda: os.path.exists(os.path.join(root, f"app{i + 1}.ready")), 30,
                    f"member app{i + 1} to listen")
        configs = rl.states(ports, options.reloads + options.renewals)
        balancer.start(root, configs[0])
        balancer.ready()
        log(f"== {balancer.name} (run {run}): {balancer.setup}")
        load = H2Load(options.h2load, balancer.port, options, root)
        load.start()
        written = 0
        for at, kind, number in timeline(options, balancer.upgrades):
            while now() - load.began < at:
                time.sleep(0.02)
            began = now() - load.began
            if kind == "upgrade":
                outcome = balancer.upgrade()
            else:
                written += 1
                if kind == "renew":
                    outcome = balancer.renew(configs[written], f"{run}.{number}")
                    current = outcome["certificate"]
                else:
                    outcome = balancer.reload(configs[written])
            done = now() - load.began
            outcome.update(event=kind, index=number, at_s=round(began, 2),
                           took_s=round(done - began, 2))
            # New connections must get the certificate in the files; a
            # reload may take a moment to reach the process that accepts.
            deadline = now() + options.cert_wait
            while True:
                served = servedFingerprints(balancer.port)
                if all(f == current for f in served) or now() >= deadline:
                    break
                time.sleep(0.1)
            outcome["certificate_served_ok"] = all(f == current for f in served)
            outcome["certificate_after_s"] = round(now() - load.began - done, 2)
            if not outcome["certificate_served_ok"]:
                outcome["certificate_served"] = served
            events.append(outcome)
            log(f"   t={began:5.1f}s {kind} {number} {'ok' if outcome['ok'] else 'FAILED'} "
                f"({done - began:.2f}s), certificate "
                f"{'as expected' if outcome['certificate_served_ok'] else 'NOT the new one'} "
                f"after {outcome['certificate_after_s']:.2f}s: "
                f"{outcome['detail'][:120]}")
        while now() - load.began < options.duration:
            time.sleep(0.05)
        stuck = load.stop()
        batches = load.batches
        outside = attribute(batches, events, options.grace)
        result.update({
            "requests": sum(b["total"] for b in batches),
            "succeeded": sum(b["succeeded"] for b in batches),
            "not_ok": sum(b["not_ok"] for b in batches),
            "failed": sum(b["failed"] for b in batches),
            "errored": sum(b["errored"] for b in batches),
            "timeout": sum(b["timeout"] for b in batches),
            "batches": len(batches),
            "batches_hung": sum(1 for b in batches if b.get("hung")),
            "protocols": sorted({str(b["protocol"]) for b in batches}),
            "outside_events": outside,
            "events": events,
            "not_ok_kinds": kinds(batches),
            "failed_batches": [b for b in batches if b["not_ok"] or b.get("hung")],
            "batch_list": [{k: b[k] for k in ("start", "end", "total", "succeeded", "not_ok",
                                               "events")} for b in batches],
            "notes": ["the h2load thread was still running at the end"] if stuck else [],
        })
        access = os.path.join(root, "access.log")
        if os.path.exists(access):
            with open(access, errors="replace") as f:
                lines = f.read().splitlines()
            result["access_log_lines"] = len(lines)
            result["access_log_not_200"] = [line for line in lines if '" 200 ' not in line][:50]
        log(f"   requests {result['requests']}, not ok {result['not_ok']} (failed "
            f"{result['failed']}, errored {result['errored']}, timeout {result['timeout']}), "
            f"batches {len(batches)}, events ok "
            f"{sum(1 for e in events if e['ok'])}/{len(events)}")
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        result["skipped"] = str(e)
        result["events"] = events
        log(f"   {balancer.name}: {e}")
    finally:
        try:
            if load is not None and load.thread.is_alive():
                load.stop()
            if load is not None and load.child is not None and load.child.poll() is None:
                stopPid(load.child.pid, timeout=5)
            balancer.stop()
        finally:
            stopAllMembers(root, children)
        if options.keep:
            log(f"   kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return result


# Output.


def table(results):
    """
    One line per row and run: events done, requests, failures in all and
    per kind of event, certificate checks.
    """
    header = ("balancer", "run", "events ok", "requests", "not ok", "never started",
              "during reload", "during renew", "during upgrade", "outside", "new cert served")
    rows = [header]
    for r in results:
        if "skipped" in r:
            rows.append((r["balancer"], str(r["run"]), "skipped: " + r["skipped"][:60])
                        + ("",) * (len(header) - 3))
            continue
        events = r["events"]

        def during(kind):
            mine = [e for e in events if e["event"] == kind]
            if not mine:
                return "n/a"
            return (f"{sum(e['not_ok_during'] for e in mine)} in {len(mine)} "
                    f"({sum(e['requests_during'] for e in mine)} req)")

        renewals = [e for e in events if e["event"] == "renew"]
        rows.append((
            r["balancer"], str(r["run"]),
            f"{sum(1 for e in events if e['ok'])}/{len(events)}",
            str(r["requests"]), str(r["not_ok"]),
            str(r.get("not_ok_kinds", {}).get("never_started", "-")),
            during("reload"), during("renew"), during("upgrade"),
            f"{r['outside_events']['not_ok']} ({r['outside_events']['requests']} req)",
            f"{sum(1 for e in renewals if e['certificate_served_ok'])}/{len(renewals)}",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip(), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows[1:]]
    lines.append(rule)
    legend = sorted({f"  {r['balancer']}: {r['setup']}" for r in results})
    return "\n".join(lines + [""] + legend)


def details(results):
    out = []
    for r in results:
        tag = f"{r['balancer']} (run {r['run']})"
        for e in r.get("events", []):
            if not e["ok"]:
                out.append(f"{tag}: {e['event']} {e['index']} at {e['at_s']:.1f}s failed: "
                           f"{e['detail']}")
            if not e.get("certificate_served_ok", True):
                out.append(f"{tag}: after {e['event']} {e['index']} the certificates served "
                           f"were {e.get('certificate_served')}")
        for b in r.get("failed_batches", [])[:5]:
            out.append(f"{tag}: batch {b['start']:.1f}-{b['end']:.1f}s ({', '.join(b['events']) or 'no event'}): "
                       f"{b['not_ok']} not ok (failed {b['failed']}, errored {b['errored']}, "
                       f"timeout {b['timeout']}){', HUNG' if b.get('hung') else ''}")
        for note in r.get("notes", []):
            out.append(f"{tag}: note: {note}")
    return "\n".join(out)


def parseArguments(argv):
    parser = argparse.ArgumentParser(prog="h2reload.py", description=__doc__.split("\n\n")[0],
                                     epilog="balancers: " + ", ".join(NAMES))
    add = parser.add_argument
    add("--only", metavar="NAME,NAME", help="run only these rows (default: all)")
    add("--runs", type=int, default=1)
    add("--duration", type=float, default=40.0, help="seconds of load (default 40)")
    add("--reloads", type=int, default=4, help="plain reloads per run (default 4)")
    add("--renewals", type=int, default=4,
        help="certificate renewals (new files, then a reload) per run (default 4)")
    add("--upgrades", type=int, default=3, help="binary upgrades, playbalancer only (default 3)")
    add("--clients", type=int, default=4, help="h2load connections per batch (default 4)")
    add("--streams", type=int, default=50, help="h2load streams per connection (default 50)")
    add("--batch", type=int, default=2000, help="requests per h2load batch (default 2000)")
    add("--batch-timeout", type=float, default=60.0,
        help="seconds after which a batch counts as hung and is stopped (default 60)")
    add("--grace", type=float, default=1.0,
        help="seconds after an event answered that it still owns a batch's failures")
    add("--upgrade-timeout", type=float, default=30.0)
    add("--cert-wait", type=float, default=5.0,
        help="seconds after an event's answer that new connections may take to get the "
             "certificate in the files (default 5)")
    add("--json", metavar="FILE")
    add("--report", metavar="JSON", help="only print the tables of an earlier --json")
    add("--keep", action="store_true", help="keep the temporary directories")
    add("--python", default=sys.executable,
        help="interpreter with playbalancer, for the members and the CPython rows")
    add("--pypy", default=rl.DEFAULT_PYPY, help="PyPy with playbalancer, for the -pypy rows")
    add("--haproxy", metavar="PATH")
    add("--nginx", metavar="PATH")
    options = parser.parse_args(argv)
    if options.report:
        return options
    # What reload.py's rows read from the options.
    options.reload_via = "signal"
    options.apache2 = None
    options.apache_modules = "/usr/lib/apache2/modules"
    options.h2load = findBinary("h2load")
    if options.h2load is None:
        parser.error("h2load not found (apt-get install nghttp2-client)")
    if findBinary("openssl") is None:
        parser.error("openssl not found (it makes the certificates)")
    return options


def main(argv=None):
    options = parseArguments(sys.argv[1:] if argv is None else argv)
    if options.report:
        with open(options.report) as f:
            results = json.load(f)["results"]
        print(table(results))
        print()
        print(details(results))
        return 0
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    wanted = options.only.split(",") if options.only else NAMES
    unknown = [n for n in wanted if n not in NAMES]
    if unknown:
        raise SystemExit(f"h2reload: unknown row {', '.join(unknown)}; choose from "
                         f"{', '.join(NAMES)}")
    found = rl.versions(options)
    found["h2load"] = subprocess.run([options.h2load, "--version"], capture_output=True,
                                     text=True).stdout.strip()
    log(time.strftime("%Y-%m-%d %H:%M:%S") + "  " + "; ".join(f"{k} {v}" for k, v in found.items()))
    results = []
    for run in range(1, options.runs + 1):
        for balancer in balancers(options):
            if balancer.name not in wanted:
                continue
            why = balancer.missing()
            if why:
                log(f"== {balancer.name}: skipped: {why}")
                results.append({"balancer": balancer.name, "setup": balancer.setup,
                                "run": run, "skipped": why})
                continue
            results.append(runOne(balancer, options, run))
            if options.json:
                save(options, found, results)
    print()
    print(table(results))
    extra = details(results)
    if extra:
        print()
        print(extra)
    if options.json:
        save(options, found, results)
    return 0


def save(options, found, results):
    with open(options.json, "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": found,
                   "command": " ".join(sys.argv), "settings": {
                       k: getattr(options, k) for k in (
                           "duration", "reloads", "renewals", "upgrades", "clients",
                           "streams", "batch", "grace", "runs")},
                   "results": results}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
