#!/usr/bin/env python3
"""
What the parent process of ``workers = N`` costs as N grows, for the
README's model of 16 and 64 cores (which this 2-core machine cannot
measure directly).

For each N in ``--workers`` it starts ``twistd playbalancer`` with
``workers = N`` in front of one member (``playbalancer-demo serve``) and
measures, from /proc, the CPU seconds of the parent and of the workers:

idle
    ``--idle-seconds`` with no traffic: the control channel's own cost
    (state pushes, the workers' reports, health checks);
load
    ``--seconds`` of openloop.c at ``--rate`` GET / per second, a rate
    every N serves on 2 cores: the parent's cost per second and per
    request under traffic, and the workers' CPU per request (at a fixed
    rate below saturation, and with more workers than cores, so it is
    higher than throughput.py's figure: use that one for capacity).

Each N is measured ``--runs`` times; the medians go to stdout as JSON
(and ``--json FILE``).

    python benchmarks/workerscale.py --python .venv/bin/python \\
        --workers 1,2,4,8,16 --rate 1000 --seconds 10 --idle-seconds 10 --runs 3

Standard library only (plus the interpreter's playbalancer); needs a C
compiler for openloop.c.  Listens on 127.0.0.1 ports 20000-20999 only;
every process it starts is stopped by its PID.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import latency  # noqa: E402
import throughput  # noqa: E402

TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"

CONFIG = """\
workers = {workers}

[[listen]]
endpoint = "tcp:{port}:interface=127.0.0.1"
balancer = "web"

[balancer.web]
scheduler = "round-robin"

[[balancer.web.member]]
name = "m1"
url = "http://127.0.0.1:{member}"

[manager]
endpoint = "tcp:{manager}:interface=127.0.0.1"
"""


def cpuOf(pid):
    """
    CPU seconds of C{pid} alone (not its children), or 0.0 if gone.
    """
    stat = throughput.readStat(pid)
    if stat is None:
        return 0.0
    # readStat adds the waited-for children: none for a running parent
    # whose workers all live, which the caller checks.
    return stat[1]


def workersOf(pid):
    return sorted(p for p, stat in throughput.allStats().items() if stat[0] == pid)


def sample(parent):
    """
    C{(parent CPU, [worker CPU, ...], worker PIDs)} now.
    """
    workers = workersOf(parent)
    return cpuOf(parent), [cpuOf(w) for w in workers], workers


def answers(port):
    try:
        return throughput.fetch(port, "/")[0] == 200
    except OSError:
        return False


def waitFor(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def oneRun(python, program, workers, ports, directory, args):
    port, manager = ports.take(), ports.take()
    config = os.path.join(directory, f"workers-{workers}.toml")
    with open(config, "w") as f:
        f.write(CONFIG.format(workers=workers, port=port, member=args.memberPort, manager=manager))
    logPath = os.path.join(directory, f"twistd-{workers}.log")
    with open(logPath, "wb") as log:
        child = subprocess.Popen([python, "-c", TWISTD, "-n", "--pidfile=", "playbalancer",
                                  "--config", config], stdout=log, stderr=subprocess.STDOUT)
    try:
        if workers > 1:
            waitFor(lambda: len(workersOf(child.pid)) == workers, 300, f"{workers} workers")
        waitFor(lambda: answers(port), 300, "the balancer to answer")
        time.sleep(args.settle)
        parent0, workers0, pids0 = sample(child.pid)
        time.sleep(args.idle_seconds)
        parent1, workers1, pids1 = sample(child.pid)
        if pids1 != pids0:
            raise RuntimeError("a worker was replaced during the idle phase")
        generated = latency.runOpenLoop(program, f"http://127.0.0.1:{port}/", args.rate,
                                        args.seconds, args.connections)
        parent2, workers2, pids2 = sample(child.pid)
        if pids2 != pids0:
            raise RuntimeError("a worker was replaced during the load phase")
        answered = generated["answered"]
        return {
            "workers": workers,
            "idle_parent_cpu_per_s": (parent1 - parent0) / args.idle_seconds,
            "idle_workers_cpu_per_s": (sum(workers1) - sum(workers0)) / args.idle_seconds,
            "load_parent_cpu_per_s": (parent2 - parent1) / args.seconds,
            "load_parent_us_per_request": 1e6 * (parent2 - parent1) / answered,
            "load_workers_us_per_request": 1e6 * (sum(workers2) - sum(workers1)) / answered,
            "answered": answered,
            "errors": generated["errors"],
            "achieved_rate": generated["achieved_rate"],
            "p99_ms": generated["p99_ms"],
        }
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--workers", default="1,2,4,8,16")
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    python = os.path.abspath(args.python)
    counts = [int(n) for n in args.workers.split(",")]
    directory = tempfile.mkdtemp(prefix="pb-workerscale-")
    program = latency.buildOpenLoop(directory)
    ports = throughput.PortPool()
    args.memberPort = ports.take()
    member = subprocess.Popen([python, "-m", "playbalancer.demo", "serve", "--port",
                               str(args.memberPort), "--name", "m1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = []
    try:
        waitFor(lambda: answers(args.memberPort), 30, "the member")
        for run in range(args.runs):
            for workers in counts:
                result = oneRun(python, program, workers, ports, directory, args)
                result["run"] = run + 1
                print(json.dumps(result), file=sys.stderr, flush=True)
                runs.append(result)
    finally:
        os.kill(member.pid, signal.SIGTERM)
        member.wait(30)
    keys = [k for k in runs[0] if k not in ("workers", "run")]
    medians = []
    for workers in counts:
        mine = [r for r in runs if r["workers"] == workers]
        medians.append({"workers": workers,
                        **{k: round(statistics.median(r[k] for r in mine), 4) for k in keys}})
    record = {
        "benchmark": "workerscale",
        "date": time.strftime("%Y-%m-%d"),
        "command": sys.argv,
        "git_commit": throughput.gitCommit(),
        "machine": throughput.machineInfo(),
        "python": subprocess.run([python, "-c", "import sys; print(sys.version.split()[0], "
                                  "sys.implementation.name)"], capture_output=True,
                                 text=True).stdout.strip(),
        "rate": args.rate,
        "medians": medians,
        "runs": runs,
    }
    print(json.dumps(medians, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
