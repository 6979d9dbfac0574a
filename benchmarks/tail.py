#!/usr/bin/env python3
"""
Where the latency tail comes from: the latency a balancer adds at a fixed
rate, measured under each load generator (latency.py's Python loop, and
openloop.c) and each placement of the processes on the CPUs, side by side
with HAProxy in the same set-up.

Two nginx members (throughput.py's) serve /small; playbalancer (CPython,
and PyPy with --pypy) and HAProxy stand in front of them with
throughput.py's configs.  For each generator and layout, each run sends
--rate GET /small per second for --seconds to member m1 directly, then to
each balancer, in turn; every figure is the median over --runs.  Layouts:

shared
    no pinning: the generator, the members and the balancer share both
    CPUs as the scheduler likes;
pinned
    the balancer's process (all its threads) on CPU 1; the members and
    the generator on CPU 0.

Each row says the generator's own CPU (percent of one CPU) and the rate
it achieved, and the balancer's CPU, so a generator short of CPU or a
balancer near saturation shows.

    python benchmarks/tail.py --python .venv/bin/python --pypy .venv-pypy/bin/python \\
        --rate 2500 --seconds 8 --runs 3 --json results/tail-DATE.json
    python benchmarks/tail.py --generators c --layouts pinned --runs 1 --seconds 4

Standard library only; needs nginx, haproxy (optional), taskset and a C
compiler.  Listens on 127.0.0.1 ports 20000-20999 only; every process it
starts is stopped by its PID at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import latency  # noqa: E402
import throughput  # noqa: E402

LAYOUTS = {
    "shared": None,
    "pinned": {"balancer": 1, "members": 0, "generator": 0},
}
FIGURES = ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")


def pin(pgid, cpus):
    """
    Every thread of every process in the group C{pgid} on C{cpus} (a
    string for taskset, such as C{"0"} or C{"0,1"}).
    """
    for pid in throughput.groupMembers(pgid):
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=True,
                       stdout=subprocess.DEVNULL)


def place(ctx, balancers, layout):
    """
    Put the members and balancers where C{layout} says (every CPU for
    "shared").
    """
    everyCPU = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    where = LAYOUTS[layout]
    for member in ctx.members:
        pin(member.proc.pid, str(where["members"]) if where else everyCPU)
    for balancer in balancers:
        pin(balancer.proc.pid, str(where["balancer"]) if where else everyCPU)


def generate(generator, program, python, url, args, cpu):
    """
    One run of C{generator} ("python" or "c") against C{url}; its figures.
    """
    if generator == "c":
        return latency.runOpenLoop(program, url, args.rate, args.seconds, args.connections, cpu)
    argv = [python, latency.__file__, url, "--rate", str(args.rate), "--seconds",
            str(args.seconds), "--connections", str(args.connections)]
    if cpu is not None:
        argv += ["--cpu", str(cpu)]
    done = subprocess.run(argv, check=True, stdout=subprocess.PIPE, timeout=args.seconds + 60)
    return json.loads(done.stdout.splitlines()[0])


def measureRun(ctx, target, generator, program, layout, args):
    """
    One run against C{target} (a balancer, or L{None} for member m1
    directly), with the balancer's CPU over it.
    """
    if target is None:
        url = f"http://127.0.0.1:{ctx.members[0].port}/small"
    else:
        url = f"http://127.0.0.1:{target.ports['http']}/small"
    where = LAYOUTS[layout]
    cpu = where["generator"] if where else None
    before = throughput.treeCpu(target.proc.pid) if target else None
    result = generate(generator, program, args.python, url, args, cpu)
    if target is not None:
        used = throughput.treeCpu(target.proc.pid) - before
        result["balancer_cpu_pct"] = round(100 * used / result["elapsed_s"], 1)
    result["generator_cpu_pct"] = round(100 * result["generator_cpu_s"] / result["elapsed_s"], 1)
    return result


def summarise(runs):
    """
    Medians per (generator, layout, target), and what each balancer adds
    to the direct figures of the same generator and layout.
    """
    groups = {}
    for run in runs:
        groups.setdefault((run["generator"], run["layout"], run["target"]), []).append(run)
    rows = []
    for (generator, layout, target), mine in groups.items():
        row = {"generator": generator, "layout": layout, "target": target, "runs": len(mine)}
        for key in FIGURES + ("achieved_rate", "generator_cpu_pct", "balancer_cpu_pct", "errors"):
            values = [run[key] for run in mine if key in run]
            if values:
                row[key] = round(statistics.median(values), 3)
        row["p99_range"] = [min(run["p99_ms"] for run in mine), max(run["p99_ms"] for run in mine)]
        rows.append(row)
    direct = {(r["generator"], r["layout"]): r for r in rows if r["target"] == "direct"}
    for row in rows:
        base = direct.get((row["generator"], row["layout"]))
        if base is not None and row["target"] != "direct":
            row["added_ms"] = {key: round(row[key] - base[key], 3) for key in FIGURES}
    return rows


def table(rows):
    header = ("generator", "layout", "target", "p50", "p90", "p99", "p99.9", "max",
              "added p50/p99/p99.9", "gen CPU%", "achieved/s", "bal CPU%")
    lines = ["  ".join(f"{h:>10}" for h in header)]
    for r in rows:
        added = r.get("added_ms")
        addedText = (f"{added['p50_ms']:+.2f}/{added['p99_ms']:+.2f}/{added['p999_ms']:+.2f}"
                     if added else "-")
        lines.append("  ".join(f"{str(v):>10}" for v in (
            r["generator"], r["layout"], r["target"], r["p50_ms"], r["p90_ms"], r["p99_ms"],
            r["p999_ms"], r["max_ms"], addedText, r["generator_cpu_pct"], r["achieved_rate"],
            r.get("balancer_cpu_pct", "-"))))
    return "\n".join(lines)


def parseArgs(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable,
                        help="runs playbalancer and latency.py's generator")
    parser.add_argument("--pypy", default="", help="adds a playbalancer-pypy row")
    parser.add_argument("--pypy-warmup", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=2500.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--generators", default="python,c")
    parser.add_argument("--layouts", default="shared,pinned")
    parser.add_argument("--no-haproxy", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    # Asked from other directories (throughput.py's interpreter check).
    args.python = throughput.interpreterPath(args.python)
    args.pypy = throughput.interpreterPath(args.pypy) if args.pypy else ""
    # What throughput.py's balancers read of the options.
    args.start_timeout, args.wrk_timeout, args.tls_no_resumption = 60.0, 5, False
    args.generators = args.generators.split(",")
    args.layouts = args.layouts.split(",")
    for layout in args.layouts:
        if layout not in LAYOUTS:
            parser.error(f"unknown layout {layout!r}")
    if "pinned" in args.layouts and len(os.sched_getaffinity(0)) < 2:
        parser.error("the pinned layout needs two CPUs")
    return args


def main(argv=None):
    args = parseArgs(argv)
    signal.signal(signal.SIGTERM, throughput.onSigterm)
    ctx = throughput.Context(args)
    ctx.tests = [t for t in throughput.TESTS if t.name == "small-50"]
    balancers = [throughput.PlayBalancer("playbalancer", args.python, "playbalancer, CPython")]
    if args.pypy:
        balancers.append(throughput.PlayBalancer("playbalancer-pypy", args.pypy,
                                                 "playbalancer, PyPy",
                                                 startWarmup=args.pypy_warmup))
    if not args.no_haproxy:
        balancers.append(throughput.HAProxy())
    needed = {"nginx", "wrk"} | {b.binary for b in balancers if b.binary}
    ctx.binaries = throughput.ensurePackages(sorted(needed), False)
    ctx.workdir = tempfile.mkdtemp(prefix="pb-tail-")
    os.chmod(ctx.workdir, 0o755)
    program = latency.buildOpenLoop(ctx.workdir) if "c" in args.generators else None
    record = {"args": {k: v for k, v in vars(args).items()}, "machine": throughput.machineInfo(),
              "commit": ctx.gitCommit, "runs": [], "skipped": {}}
    try:
        ctx.members = [throughput.Member("m1"), throughput.Member("m2")]
        for member in ctx.members:
            member.start(ctx)
        started = []
        for balancer in balancers:
            reason = balancer.unavailable(ctx)
            if reason is None:
                balancer.start(ctx)
                started.append(balancer)
            else:
                record["skipped"][balancer.name] = reason
                throughput.log(f"{balancer.name}: skipped: {reason}")
        for layout in args.layouts:
            place(ctx, started, layout)
            for generator in args.generators:
                for number in range(1, args.runs + 1):
                    for target in [None] + started:
                        result = measureRun(ctx, target, generator, program, layout, args)
                        result.update(layout=layout, run=number,
                                      target=target.name if target else "direct")
                        throughput.log(json.dumps(result))
                        record["runs"].append(result)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        ctx.procs.stopAll()
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    record["summary"] = summarise(record["runs"])
    record["interpreters"] = ctx.interpreters
    record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
    print(table(record["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
