"""
Slow clients and many connections against a real ``twistd playbalancer``
on 127.0.0.1, with figures for the README and the closing note.

Phase 1 (``--seconds``, default 60): ``--slow`` (default 1000) slow-header
connections (a head sent one short header line every few seconds, never
finished: slowloris) and as many slow-body connections (a complete head with
``Content-Length: 8192`` and one body byte every few seconds: R-U-Dead-Yet),
each reopened when the balancer closes it, as slowhttptest does.  Meanwhile
a probe sends a normal GET on a new connection every 0.2 s and times it.

Phase 2: ``--idle`` (default 10000) keep-alive connections each send one
request and then stay idle; the balancer's memory is read, and the script
waits for the idle timeout to close them all.

Usage::

    python benchmarks/slowclients.py [--slow 1000] [--seconds 60] [--idle 10000]

Everything runs on 127.0.0.1; the balancer and member processes started here
are ended by their PIDs on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from playbalancer.testing import freePorts  # noqa: E402

CONFIG = """
[[listen]]
endpoint = "tcp:{front}:interface=127.0.0.1:backlog=4096"
balancer = "web"
header_timeout = {headerTimeout}
body_timeout = {bodyTimeout}
idle_timeout = {idleTimeout}
max_connections = 30000

[balancer.web]

[[balancer.web.member]]
name = "app1"
url = "http://127.0.0.1:{member}"
"""


def rss(pid):
    """
    Resident memory of process C{pid} in MiB.
    """
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


class Slow(Protocol):
    """
    One slow client; C{kind} is "header" or "body".
    """

    def __init__(self, kind, stats):
        self.kind = kind
        self.stats = stats
        self.received = b""

    def connectionMade(self):
        if self.kind == "header":
            self.transport.write(b"GET / HTTP/1.1\r\nHost: slow\r\n")
        else:
            self.transport.write(b"POST / HTTP/1.1\r\nHost: slow\r\nContent-Length: 8192\r\n\r\n")

    def drip(self):
        if self.transport is not None and self.transport.connected:
            self.transport.write(b"X-a: b\r\n" if self.kind == "header" else b"x")

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        status = self.received[9:12].decode() if self.received.startswith(b"HTTP/1.1 ") else "none"
        key = f"{self.kind} closed with {status}"
        self.stats[key] = self.stats.get(key, 0) + 1


class Keeper:
    """
    Keeps C{count} slow clients of one kind open, reopening closed ones.
    """

    def __init__(self, reactor, port, kind, count, stats):
        self.reactor = reactor
        self.endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        self.kind = kind
        self.count = count
        self.stats = stats
        self.open = []
        self.opening = 0

    def fill(self):
        self.open = [p for p in self.open if p.transport is not None and p.transport.connected]
        for _ in range(self.count - len(self.open) - self.opening):
            self.opening += 1
            d = connectProtocol(self.endpoint, Slow(self.kind, self.stats))
            d.addCallbacks(self._opened, self._failed)

    def _opened(self, protocol):
        self.opening -= 1
        self.open.append(protocol)

    def _failed(self, reason):
        self.opening -= 1
        self.stats["connect failures"] = self.stats.get("connect failures", 0) + 1

    def drip(self):
        for protocol in self.open:
            protocol.drip()

    def close(self):
        for protocol in self.open:
            if protocol.transport is not None:
                protocol.transport.abortConnection()


class Probe(Protocol):
    def __init__(self, done):
        self.done = done
        self.received = b""

    def connectionMade(self):
        self.transport.write(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.done.callback(self.received)


async def probe(reactor, port):
    """
    One normal request on a new connection: (seconds, ok).
    """
    started = time.perf_counter()
    done = defer.Deferred()
    try:
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), Probe(done))
        timer = reactor.callLater(10, lambda: done.called or done.callback(b"timeout"))
        answer = await done
        if timer.active():
            timer.cancel()
    except Exception:
        return time.perf_counter() - started, False
    return time.perf_counter() - started, answer.startswith(b"HTTP/1.1 200")


class Idle(Protocol):
    def __init__(self, stats):
        self.stats = stats
        self.answered = False

    def connectionMade(self):
        self.transport.write(b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n")

    def dataReceived(self, data):
        self.answered = True

    def connectionLost(self, reason):
        self.stats["idle closed by balancer"] = self.stats.get("idle closed by balancer", 0) + 1


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def slowPhase(reactor, port, balancerPid, args):
    stats = {}
    keepers = [Keeper(reactor, port, kind, args.slow, stats) for kind in ("header", "body")]
    refill = task.LoopingCall(lambda: [k.fill() for k in keepers])
    refill.start(0.5)
    drip = task.LoopingCall(lambda: [k.drip() for k in keepers])
    drip.start(3.0, now=False)
    latencies, failures = [], 0
    peakMemory = 0.0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        seconds, ok = await probe(reactor, port)
        latencies.append(seconds)
        failures += not ok
        peakMemory = max(peakMemory, rss(balancerPid))
        await task.deferLater(reactor, 0.2, lambda: None)
    openSlow = sum(len(k.open) for k in keepers)
    refill.stop()
    drip.stop()
    for k in keepers:
        k.close()
    return {
        "slow_connections_per_kind": args.slow,
        "slow_connections_open_at_end": openSlow,
        "probes": len(latencies),
        "probe_failures": failures,
        "probe_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "probe_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "probe_max_ms": round(max(latencies) * 1000, 1),
        "balancer_peak_rss_mib": round(peakMemory, 1),
        "closed": dict(sorted(stats.items())),
    }


async def idlePhase(reactor, port, balancerPid, args):
    stats = {}
    before = rss(balancerPid)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    protocols = []
    for start in range(0, args.idle, 500):
        batch = [
            connectProtocol(endpoint, Idle(stats)) for _ in range(min(500, args.idle - start))
        ]
        protocols.extend(await defer.gatherResults(batch))
        await task.deferLater(reactor, 0.05, lambda: None)
    deadline = time.monotonic() + 60
    while sum(p.answered for p in protocols) < len(protocols) and time.monotonic() < deadline:
        await task.deferLater(reactor, 0.2, lambda: None)
    answered = sum(p.answered for p in protocols)
    during = rss(balancerPid)
    opened = time.monotonic()
    deadline = opened + args.idle_timeout + 30
    while stats.get("idle closed by balancer", 0) < len(protocols) and time.monotonic() < deadline:
        await task.deferLater(reactor, 0.5, lambda: None)
    closedAfter = time.monotonic() - opened
    for p in protocols:
        if p.transport is not None and p.transport.connected:
            p.transport.abortConnection()
    return {
        "idle_connections": len(protocols),
        "answered": answered,
        "balancer_rss_before_mib": round(before, 1),
        "balancer_rss_with_all_open_mib": round(during, 1),
        "rss_per_connection_kib": round((during - before) * 1024 / max(1, len(protocols)), 2),
        "closed_by_idle_timeout": stats.get("idle closed by balancer", 0),
        "all_closed_after_s": round(closedAfter, 1),
        "idle_timeout_s": args.idle_timeout,
    }


def start(args, workdir):
    front, member = freePorts(2)
    config = os.path.join(workdir, "slow.toml")
    with open(config, "w") as f:
        f.write(
            CONFIG.format(
                front=front,
                member=member,
                headerTimeout=args.header_timeout,
                bodyTimeout=args.body_timeout,
                idleTimeout=args.idle_timeout,
            )
        )
    memberProcess = subprocess.Popen(
        [sys.executable, "-m", "playbalancer.demo", "serve", "--port", str(member), "--name", "app1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    balancerProcess = subprocess.Popen(
        [sys.executable, "-m", "twisted", "playbalancer", "--config", config],
        stdout=open(os.path.join(workdir, "balancer.log"), "w"),
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    return front, [memberProcess, balancerProcess]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--body-timeout", type=float, default=60.0)
    parser.add_argument("--idle-timeout", type=float, default=15.0)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    workdir = tempfile.mkdtemp(prefix="pb-slow-")
    port, processes = start(args, workdir)

    async def run(reactor):
        for _ in range(100):
            seconds, ok = await probe(reactor, port)
            if ok:
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        pid = processes[1].pid
        figures = {"slow": await slowPhase(reactor, port, pid, args)}
        figures["idle"] = await idlePhase(reactor, port, pid, args)
        print(json.dumps(figures, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(figures, f, indent=2)

    try:
        task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
