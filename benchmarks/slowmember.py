#!/usr/bin/env python3
"""
Slow member benchmark: one member of three answers ten times slower, and
playbalancer runs in front of them with each scheduler in turn
(round-robin, least-conn, peak-ewma).  For each: the slow member's share
of the requests and the latency the client sees (p50, p90, p99).

Three members listen on free ports of 127.0.0.1, all in one child process
(this script with --members, asyncio, standard library only): every
request gets a 3-byte body after a delay, 2 ms for m1 and m2 and 20 ms for
slow (--fast-delay, --slow-delay), and each member counts its requests
(GET /__hits on a member answers its count; it is not sent through the
balancer).  For each scheduler a new ``twistd playbalancer`` (run as
``PYTHON -m twisted playbalancer --config FILE``, with the tree above
benchmarks/ first on PYTHONPATH) listens on a free port with one balancer
over the three members, no health checks, no manager, no access log.  wrk
(``-t1 -cCONNECTIONS --latency``) drives it: a warm-up (--warmup seconds,
not counted), then the measured run (--duration seconds), closed loop.
The members' counts before and after the measured run give each member's
share.

    python benchmarks/slowmember.py --python .venv/bin/python --json out.json
    python benchmarks/slowmember.py --schedulers peak-ewma --duration 5

Needs wrk on PATH.  Everything the script starts is stopped by its PID
(each child in its own process group) when it ends, also on Ctrl-C; the
config and logs live in a temporary directory, removed at the end unless
--keep.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import throughput as tp  # noqa: E402  (its Processes)
SCHEDULERS = ("round-robin", "least-conn", "peak-ewma")
MEMBERS = ("m1", "m2", "slow")

CONFIG = """\
[[listen]]
endpoint = "tcp:{port}:interface=127.0.0.1"
balancer = "web"

[balancer.web]
scheduler = "{scheduler}"
{members}
"""

MEMBER = """
[[balancer.web.member]]
name = "{name}"
url = "http://127.0.0.1:{port}"
"""


# The members (run in a child: this script with --members).


async def _serveMember(reader, writer, delay, hits, name):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
            if target == b"/__hits":
                body = json.dumps({"name": name, "hits": hits[name]}).encode()
            else:
                hits[name] += 1
                await asyncio.sleep(delay)
                body = b"ok\n"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _members(specs):
    hits = {}
    servers = []
    for name, port, delay in specs:
        hits[name] = 0
        server = await asyncio.start_server(
            lambda r, w, d=delay, n=name: _serveMember(r, w, d, hits, n), "127.0.0.1", port,
            backlog=1024)
        servers.append(server)
    print("members ready", flush=True)
    await asyncio.Event().wait()


def runMembers(argument):
    """
    Serve the members C{NAME:PORT:DELAY,...} until killed.
    """
    specs = []
    for spec in argument.split(","):
        name, port, delay = spec.split(":")
        specs.append((name, int(port), float(delay)))
    asyncio.run(_members(specs))


# Processes: throughput.py's (each in its own process group, stopped by PID).

Processes = tp.Processes


def freePort():
    """
    A port on 127.0.0.1 that nothing listened on a moment ago.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def get(port, path, timeout=2.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def waitReady(proc, port, logPath, path="/", timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{tail(logPath)}")
        try:
            status, _ = get(port, path)
            if status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"not answering on port {port}:\n{tail(logPath)}")
        time.sleep(0.1)


def hits(ports):
    """
    Each member's request count, by name.
    """
    counts = {}
    for name, port in ports.items():
        status, body = get(port, "/__hits")
        counts[name] = json.loads(body)["hits"]
    return counts


# wrk.

TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def runWrk(procs, wrk, port, connections, seconds, logPath):
    with open(logPath, "w"):
        pass
    proc = procs.spawn([wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                        "--timeout=10s", f"http://127.0.0.1:{port}/"], logPath)
    try:
        proc.wait(seconds + 40)
    finally:
        procs.stop(proc)
    with open(logPath, errors="replace") as f:
        return f.read()


def parseWrk(text):
    done = re.search(r"(\d+) requests in ([\d.]+)(\w+),", text)
    if done is None:
        raise ValueError("no summary in wrk output:\n" + text[-800:])
    latency = {
        pct: float(value) * TIME_UNITS[unit]
        for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(\w+)\s*$", text, re.M)
    }
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                        text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    seconds = float(done.group(2)) * TIME_UNITS[done.group(3)] / 1e3
    return {
        "requests": int(done.group(1)),
        "seconds": seconds,
        "requests_per_s": round(int(done.group(1)) / seconds, 1),
        "p50_ms": latency.get("50"),
        "p90_ms": latency.get("90"),
        "p99_ms": latency.get("99"),
        "errors": (sum(int(v) for v in sockets.groups()) if sockets else 0)
        + (int(non2xx.group(1)) if non2xx else 0),
    }


# One run.


def runScheduler(args, procs, workdir, memberPorts, scheduler):
    port = freePort()
    config = os.path.join(workdir, f"{scheduler}.toml")
    members = "".join(MEMBER.format(name=n, port=p) for n, p in memberPorts.items())
    with open(config, "w") as f:
        f.write(CONFIG.format(port=port, scheduler=scheduler, members=members))
    logPath = os.path.join(workdir, f"{scheduler}.log")
    pythonPath = os.pathsep.join([REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(
        os.pathsep) if p])
    proc = procs.spawn([args.python, "-m", "twisted", "--log-format=text",
                        "playbalancer", "--config", config], logPath,
                       env={"PYTHONPATH": pythonPath})
    try:
        waitReady(proc, port, logPath)
        wrkLog = os.path.join(workdir, f"{scheduler}-wrk.log")
        if args.warmup:
            runWrk(procs, args.wrk, port, args.connections, args.warmup, wrkLog)
        before = hits(memberPorts)
        result = parseWrk(runWrk(procs, args.wrk, port, args.connections, args.duration,
                                 wrkLog))
        after = hits(memberPorts)
    finally:
        procs.stop(proc)
    served = {name: after[name] - before[name] for name in memberPorts}
    total = sum(served.values()) or 1
    result.update(
        scheduler=scheduler,
        member_requests=served,
        slow_share=round(served["slow"] / total, 4),
    )
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter that runs playbalancer (default: this one)")
    parser.add_argument("--wrk", default=shutil.which("wrk"))
    parser.add_argument("--schedulers", default=",".join(SCHEDULERS))
    parser.add_argument("--fast-delay", type=float, default=0.002, metavar="S")
    parser.add_argument("--slow-delay", type=float, default=0.020, metavar="S")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3, metavar="S")
    parser.add_argument("--duration", type=int, default=20, metavar="S")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--members", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.members:
        runMembers(args.members)
        return 0
    if not args.wrk:
        parser.error("wrk not found (apt-get install wrk, or --wrk PATH)")
    workdir = tempfile.mkdtemp(prefix="slowmember-")
    procs = Processes()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    results = []
    try:
        memberPorts = {name: freePort() for name in MEMBERS}
        delays = {"m1": args.fast_delay, "m2": args.fast_delay, "slow": args.slow_delay}
        spec = ",".join(f"{n}:{p}:{delays[n]}" for n, p in memberPorts.items())
        membersLog = os.path.join(workdir, "members.log")
        members = procs.spawn([sys.executable, os.path.abspath(__file__), "--members", spec],
                              membersLog)
        for port in memberPorts.values():
            waitReady(members, port, membersLog, "/__hits")
        for scheduler in args.schedulers.split(","):
            result = runScheduler(args, procs, workdir, memberPorts, scheduler)
            results.append(result)
            print(f"{scheduler:12} slow share {result['slow_share']:6.1%}  "
                  f"p50 {result['p50_ms']:7.2f} ms  p90 {result['p90_ms']:7.2f} ms  "
                  f"p99 {result['p99_ms']:7.2f} ms  {result['requests_per_s']:8.1f} req/s  "
                  f"errors {result['errors']}  {result['member_requests']}", flush=True)
    finally:
        procs.stopAll()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        version = subprocess.run([args.python, "--version"], capture_output=True,
                                 text=True).stdout.strip()
        report = {
            "benchmark": "slowmember",
            "date": datetime.date.today().isoformat(),
            "command": " ".join([os.path.basename(sys.argv[0])] + (argv or sys.argv[1:])),
            "git_commit": commit,
            "settings": {
                "fast_delay_s": args.fast_delay,
                "slow_delay_s": args.slow_delay,
                "connections": args.connections,
                "warmup_s": args.warmup,
                "duration_s": args.duration,
                "load": "wrk -t1 --latency, closed loop, keep-alive, GET /",
                "balancer": "twistd playbalancer, one process, no health checks, "
                            "scheduler options at their defaults",
            },
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "python": version},
            "results": results,
        }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
