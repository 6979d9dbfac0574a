#!/usr/bin/env python3
"""
Where a proxied request's CPU goes on CPython, by layer: system calls,
Twisted (reactor, transports, logging context), playbalancer's own code,
and the rest (standard library, built-ins).  The question it answers:
how much a leaner transport for our own connections could save, and how
much a compiled accelerator for our own code could.

It starts two nginx members (``throughput.py``'s) and ``twistd
--profiler=cprofile playbalancer`` with ``throughput.py``'s config in
front of them, drives ``/small`` (100 B) with wrk for ``--seconds`` after
``--warmup`` seconds, stops the balancer with SIGTERM (twistd writes the
profile then) and sums each function's own time (cProfile's tottime) by
layer::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/layers.py --python .venv/bin/python \\
        --seconds 10 --connections 50 --json out.json

cProfile adds a cost to every Python call and none to a system call, so
the Python layers come out larger than they are without it: read the
shares as an upper bound for Python code and a lower bound for system
calls.  Listens on 127.0.0.1 ports 20000-20999 only; every process it
starts is stopped by its PID.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import throughput  # noqa: E402

TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"

#: Built-in methods that are one system call each (cProfile names them
#: "<method 'NAME' of 'TYPE' objects>").
SYSTEM_CALLS = ("'send' of", "'sendmsg' of", "'recv' of", "'recv_into' of", "'poll' of",
                "'accept' of", "'close' of '_socket", "'shutdown' of", "'connect_ex' of",
                "'setsockopt' of", "'getsockopt' of")


def layerOf(filename, name):
    """
    The layer of a function, from its file and name in cProfile's stats.
    """
    if filename == "~":
        if any(marker in name for marker in SYSTEM_CALLS):
            return "system calls"
        return "built-ins"
    path = filename.replace(os.sep, "/")
    if "/twisted/" in path:
        return "twisted"
    if "/playbalancer/" in path:
        return "playbalancer"
    return "other python"


def summarise(statsPath, requests, top):
    """
    Own time by layer (seconds, share, microseconds per request) and the
    C{top} functions of each layer.
    """
    stats = pstats.Stats(statsPath)
    layers, functions = {}, {}
    for (filename, line, name), (_, calls, tottime, _, _) in stats.stats.items():
        layer = layerOf(filename, name)
        layers[layer] = layers.get(layer, 0.0) + tottime
        where = name if filename == "~" else f"{os.path.basename(filename)}:{line}({name})"
        functions.setdefault(layer, []).append((tottime, calls, where))
    total = sum(layers.values())
    result = {"profiled_seconds": round(total, 3), "requests": requests, "layers": {}}
    for layer, seconds in sorted(layers.items(), key=lambda item: -item[1]):
        result["layers"][layer] = {
            "seconds": round(seconds, 3),
            "share": round(seconds / total, 3),
            "us_per_request": round(1e6 * seconds / requests, 2) if requests else None,
            "top": [{"function": where, "seconds": round(t, 3), "calls": calls}
                    for t, calls, where in sorted(functions[layer], reverse=True)[:top]],
        }
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--json")
    args = parser.parse_args()
    python = os.path.abspath(args.python)
    ctx = throughput.Context(args)
    ctx.workdir = tempfile.mkdtemp(prefix="pb-layers-")
    os.chmod(ctx.workdir, 0o755)  # nginx's workers read the members' files
    ctx.binaries = {"nginx": throughput.findBinary("nginx"), "wrk": throughput.findBinary("wrk")}
    try:
        members = [throughput.Member("m1"), throughput.Member("m2")]
        for member in members:
            member.start(ctx)
        httpPort, tcpPort = ctx.ports.take(), ctx.ports.take()
        config = throughput.fill("playbalancer.toml", os.path.join(ctx.workdir, "pb.toml"),
                                 workers=1, http_port=httpPort, tcp_port=tcpPort,
                                 access_log="", http_routes='balancer = "web"',
                                 member1=members[0].port, member2=members[1].port)
        statsPath = os.path.join(ctx.workdir, "profile.stats")
        logPath = os.path.join(ctx.workdir, "twistd.log")
        balancer = ctx.procs.spawn([python, "-c", TWISTD, "-n", "--pidfile=",
                                    f"--profile={statsPath}", "--profiler=cprofile",
                                    "--savestats", "playbalancer", "--config", config], logPath)
        throughput.waitReady(balancer, httpPort, logPath)
        url = f"http://127.0.0.1:{httpPort}/small"
        wrk = [ctx.binaries["wrk"], "-t1", f"-c{args.connections}"]
        if args.warmup:
            subprocess.run(wrk + [f"-d{args.warmup}s", url], check=True, capture_output=True)
        done = subprocess.run(wrk + [f"-d{args.seconds}s", url], check=True,
                              capture_output=True, text=True)
        measured = throughput.parseWrk(done.stdout)
        ctx.procs.stop(balancer, grace=60.0)
        deadline = time.monotonic() + 30
        while not os.path.exists(statsPath) and time.monotonic() < deadline:
            time.sleep(0.2)
        # wrk's count plus the warm-up's (both were profiled): use the
        # measured run's count over its share of the profiled time.
        warmupRequests = 0
        if args.warmup:
            warmupRequests = round(measured["requests"] * args.warmup / args.seconds)
        result = summarise(statsPath, measured["requests"] + warmupRequests, args.top)
        result.update({
            "benchmark": "layers",
            "date": time.strftime("%Y-%m-%d"),
            "command": sys.argv,
            "git_commit": throughput.gitCommit(),
            "machine": throughput.machineInfo(),
            "python": ctx.interpreter(python),
            "wrk": {"connections": args.connections, "seconds": args.seconds,
                    "requests": measured["requests"], "socket_errors": measured["socket_errors"],
                    "non_2xx": measured["non_2xx"]},
            "note": "requests include an estimate of the warm-up's (same rate)",
        })
    finally:
        ctx.procs.stopAll()
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
