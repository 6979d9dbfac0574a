"""
Latency a balancer adds at a given load: an open-loop load generator that
sends requests at a fixed rate (not as fast as answers come back, so a slow
answer cannot hide the requests that should have been sent meanwhile) and
reports latency percentiles, measured from each request's scheduled time.

Give it the member's URL and the balancer's URL in front of that member,
and a rate of half the balancer's capacity (from ``throughput.py``); runs
alternate between the URLs and the medians of the runs are compared::

    python benchmarks/latency.py http://127.0.0.1:9999/ http://127.0.0.1:8080/ \
        --rate 2800 --seconds 10 --runs 3 [--connections 32] [--json FILE]

With one URL it measures that one.  Everything it sends goes to the URLs
given (use 127.0.0.1).

``--generator c`` sends with ``openloop.c`` (built with ``cc`` into a
temporary directory) instead of this process's Twisted loop: it needs a
few percent of a core where the Python generator needs a third to a half,
so it takes less CPU from what it measures.  ``--cpu N`` pins the
generator to CPU N.  Each run reports the generator's own CPU seconds and
the rate it achieved, beside the percentiles (p99.9 included).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from urllib.parse import urlsplit

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from playbalancer.memory import settleHeap


class _Connection(Protocol):
    """
    One keep-alive connection that sends a GET and reads the answer (a
    Content-Length body) before it is free again.
    """

    def __init__(self, generator):
        self.generator = generator
        self.buffer = b""
        self.scheduled = None
        self.expected = None

    def send(self, scheduled):
        self.scheduled = scheduled
        self.buffer = b""
        self.expected = None
        self.transport.write(self.generator.request)

    def dataReceived(self, data):
        self.buffer += data
        if self.expected is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end == -1:
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            self.expected = end + 4 + length
        if len(self.buffer) >= self.expected:
            ok = self.buffer.startswith(b"HTTP/1.1 200")
            self.generator.done(self, self.scheduled, ok)

    def connectionLost(self, reason):
        self.generator.lost(self)


class OpenLoop:
    """
    Sends C{rate} requests per second for C{seconds} over a pool of
    connections.
    """

    def __init__(self, reactor, url, rate, seconds, connections):
        parts = urlsplit(url)
        self.reactor = reactor
        self.host = parts.hostname
        self.port = parts.port or 80
        path = parts.path or "/"
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode("ascii")
        )
        self.rate = rate
        self.seconds = seconds
        self.connections = connections
        self.idle = []
        self.backlog = []
        self.latencies = []
        self.errors = 0
        self.finished = defer.Deferred()
        self.outstanding = 0

    async def run(self):
        endpoint = TCP4ClientEndpoint(self.reactor, self.host, self.port)
        for _ in range(self.connections):
            self.idle.append(await connectProtocol(endpoint, _Connection(self)))
        self.cpuBefore = _cpuSeconds()
        start = self.start = time.perf_counter()
        total = int(self.rate * self.seconds)
        interval = 1.0 / self.rate
        sent = 0
        while sent < total:
            now = time.perf_counter()
            due = int((now - start) / interval) + 1
            while sent < min(due, total):
                self._dispatch(start + sent * interval)
                sent += 1
            await task.deferLater(self.reactor, 0.001, lambda: None)
        while self.outstanding or self.backlog:
            await task.deferLater(self.reactor, 0.01, lambda: None)
        self.elapsed = time.perf_counter() - start
        self.cpu = _cpuSeconds() - self.cpuBefore
        for connection in self.idle:
            connection.transport.loseConnection()
        return self.report()

    def _dispatch(self, scheduled):
        self.outstanding += 1
        if self.idle:
            self.idle.pop().send(scheduled)
        else:
            self.backlog.append(scheduled)

    def done(self, connection, scheduled, ok):
        self.latencies.append(time.perf_counter() - scheduled)
        self.errors += not ok
        self.outstanding -= 1
        if self.backlog:
            connection.send(self.backlog.pop(0))
        else:
            self.idle.append(connection)

    def lost(self, connection):
        if connection in self.idle:
            self.idle.remove(connection)

    def report(self):
        ordered = sorted(self.latencies)

        def percentile(p):
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 3)

        return {
            "generator": "python",
            "rate": self.rate,
            "requests": len(ordered),
            "errors": self.errors,
            "achieved_rate": round(len(ordered) / self.elapsed, 1),
            "p50_ms": percentile(0.50),
            "p90_ms": percentile(0.90),
            "p99_ms": percentile(0.99),
            "p999_ms": percentile(0.999),
            "max_ms": round(ordered[-1] * 1000, 3),
            "generator_cpu_s": round(self.cpu, 3),
            "elapsed_s": round(self.elapsed, 3),
        }


def _cpuSeconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


OPENLOOP_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openloop.c")


def buildOpenLoop(directory):
    """
    Compile L{OPENLOOP_SOURCE} into C{directory}; the program's path.
    """
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("--generator c needs a C compiler (cc or gcc)")
    program = os.path.join(directory, "openloop")
    subprocess.run([compiler, "-O2", "-o", program, OPENLOOP_SOURCE], check=True)
    return program


def runOpenLoop(program, url, rate, seconds, connections, cpu=None):
    """
    One run of the C generator against C{url}; its JSON answer.
    """
    parts = urlsplit(url)
    argv = [program, parts.hostname, str(parts.port or 80), parts.path or "/", str(rate),
            str(seconds), str(connections), parts.netloc]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + argv
    done = subprocess.run(argv, check=True, stdout=subprocess.PIPE, timeout=seconds + 60)
    return json.loads(done.stdout)


PERCENTILES = ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")


def summarise(urls, runs):
    """
    Medians over runs for each URL, and with two URLs what the second adds
    to the first.
    """
    summary = {"urls": {}}
    for url in urls:
        mine = [run for run in runs if run["url"] == url]
        summary["urls"][url] = {
            key: statistics.median(run[key] for run in mine)
            for key in PERCENTILES + ("errors", "achieved_rate", "generator_cpu_s")
        }
    if len(urls) == 2:
        first, second = (summary["urls"][url] for url in urls)
        summary["added_ms"] = {key: round(second[key] - first[key], 3) for key in PERCENTILES}
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("urls", nargs="+", metavar="URL",
                        help="the member, then the balancer in front of it")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="per run")
    parser.add_argument("--runs", type=int, default=1, help="runs per URL, alternating")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", help="also write every run and the medians here")
    parser.add_argument("--generator", choices=("python", "c"), default="python",
                        help="this process's Twisted loop, or openloop.c")
    parser.add_argument("--cpu", type=int, help="pin the generator to this CPU")
    args = parser.parse_args()
    if args.generator == "python" and args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    program = None
    if args.generator == "c":
        built = tempfile.mkdtemp(prefix="openloop-")
        atexit.register(shutil.rmtree, built, True)
        program = buildOpenLoop(built)

    async def run(reactor):
        # The generator's own collector pauses would count as latency.
        settleHeap()
        runs = []
        for number in range(1, args.runs + 1):
            for url in args.urls:
                if program is not None:
                    result = runOpenLoop(program, url, args.rate, args.seconds, args.connections,
                                         args.cpu)
                    print(json.dumps(dict(result, url=url, run=number)), flush=True)
                    runs.append(dict(result, url=url, run=number))
                    continue
                result = await OpenLoop(
                    reactor, url, args.rate, args.seconds, args.connections
                ).run()
                result.update(url=url, run=number)
                print(json.dumps(result), flush=True)
                runs.append(result)
        summary = summarise(args.urls, runs)
        print(json.dumps(summary))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"rate": args.rate, "seconds": args.seconds,
                           "connections": args.connections, "generator": args.generator,
                           "cpu": args.cpu, "runs": runs,
                           "summary": summary}, f, indent=1)

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
