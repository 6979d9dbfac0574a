"""
Slow clients against playbalancer (CPython and PyPy), HAProxy and nginx on
127.0.0.1, each in front of one nginx member, with figures for the README.

Modes (``--modes``, default ``slowread,drip``; every balancer in ``--only``
runs each mode in a fresh process of its own):

``slowread``
    ``--readers`` (default 1,000) connections, each with ``SO_RCVBUF`` set to
    ``--rcvbuf`` (1024) before it connects, send ``--pipeline`` (3)
    pipelined ``GET /big`` (a 1 MiB static file) and then read ``--read-bytes``
    (32) every ``--read-every`` (5) seconds, as ``slowhttptest -X`` does;
    ``--read-every 0`` never reads at all.  The balancer's memory (the RSS
    of its process tree) is read before, while the readers are held (after
    it settles) and ``--after`` seconds after they are closed.
``drip``
    ``--drippers`` (default 100) connections each send a ``--drip-prefix``
    (60,000) byte request head at once and then one more byte of an
    unfinished header line every ``--drip-interval`` (0.02) seconds, with
    ``TCP_NODELAY`` (one byte a segment); the ones the balancer closes are
    reopened (at most ``--reopen-rate`` a second) for ``--drip-seconds``
    (30).  The balancer's CPU seconds over the run come from
    /proc/PID/stat of its process tree.
``slow``, ``idle`` (playbalancer rows only)
    The earlier phases: ``--slow`` slowloris and as many slow-body
    connections for ``--seconds``, each reopened when closed; then
    ``--idle`` keep-alive connections left idle until the idle timeout
    closes them.

In every mode a probe sends a normal ``GET /small`` on a new connection
every ``--probe-interval`` seconds and times it (success count, p50, p99,
max).  For each phase the JSON also holds the CPU the rest of the machine
used (busy time from /proc/stat less the balancer, the member and this
script), to tell a disturbed run from a clean one.

Usage::

    python benchmarks/slowclients.py --runs 2 --json benchmarks/results/slowclients-DATE.json
    python benchmarks/slowclients.py --only playbalancer,haproxy --modes slowread --readers 200
    python benchmarks/slowclients.py --only playbalancer --modes slow,idle   # the earlier run
    python benchmarks/slowclients.py --report FILE.json                    # the table again

The script runs under an interpreter with Twisted (the client side is
Twisted); ``--python`` (default: this one) and ``--pypy`` (default
``.venv-pypy/bin/python``, run with ``PYPY_GC_NURSERY=16M``) run the
playbalancer rows.  It reuses ``throughput.py``'s helpers: the nginx
member, free ports in 20000-20999 on 127.0.0.1, processes started in their
own process groups and stopped by PID, CPU from /proc.  Peer configs are
written here (one member, settings as in ``peers/``).  It installs nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time

from twisted.internet import defer, task, threads
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from throughput import (  # noqa: E402
    CLOCK_TICKS,
    DEFAULT_PYPY,
    Member,
    PortPool,
    Processes,
    allStats,
    findBinary,
    firstLine,
    gitCommit,
    log,
    machineCpu,
    machineInfo,
    tail,
    treeCpu,
    waitReady,
)

BIG = "/big"      # 1 MiB, from throughput.Member
SMALL = "/small"  # 100 bytes

PLAYBALANCER = """\
# playbalancer: defaults (buffer_size, send_timeout, header_timeout, ...)
# but for what the mode sets below; one member.
[[listen]]
endpoint = "tcp:{port}:interface=127.0.0.1:backlog=4096"
balancer = "web"
{extra}
[balancer.web]

[[balancer.web.member]]
name = "m1"
url = "http://127.0.0.1:{member}"
"""

HAPROXY = """\
# HAProxy as in peers/haproxy.cfg, one member.
global
    nbthread 1
    maxconn 4096

defaults
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend http_in
    mode http
    bind 127.0.0.1:{port}
    option http-keep-alive
    default_backend http_members

backend http_members
    mode http
    balance roundrobin
    option http-keep-alive
    http-reuse always
    server m1 127.0.0.1:{member}
"""

NGINX = """\
# nginx as in peers/balancer-nginx.conf, one member.
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path {workdir}/tmp/client;
    proxy_temp_path {workdir}/tmp/proxy;
    fastcgi_temp_path {workdir}/tmp/fastcgi;
    uwsgi_temp_path {workdir}/tmp/uwsgi;
    scgi_temp_path {workdir}/tmp/scgi;

    upstream members {{
        server 127.0.0.1:{member};
        keepalive 256;
        keepalive_requests 10000000;
    }}

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://members;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

PEER_SETTINGS = {
    "playbalancer": "defaults (buffer_size 16 KiB, send_timeout 60 s, header_timeout 10 s, "
                    "max_header_bytes 64 KiB, max_header_line 8 KiB), 1 worker, access log off, "
                    "backlog 4096",
    "playbalancer-pypy": "as playbalancer, under PyPy with PYPY_GC_NURSERY=16M",
    "haproxy": "nbthread 1, maxconn 4096, mode http, http-keep-alive, http-reuse always, "
               "timeouts connect 5s / client 60s / server 60s, bufsize default (16 KiB)",
    "nginx": "1 worker, worker_connections 4096, upstream keepalive 256, proxy_http_version 1.1, "
             "access_log off, other settings default (proxy_buffering on, send_timeout 60s, "
             "client_header_timeout 60s, large_client_header_buffers 4 8k)",
}


# Measuring a process tree.


def treePids(root):
    """
    C{root} and every descendant of it (by ppid, from /proc).
    """
    children = {}
    for pid, (ppid, _, _) in allStats().items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def statusKib(pid, field):
    """
    The C{field} (e.g. C{"VmRSS"}) of /proc/PID/status in KiB, 0 if gone.
    """
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def treeRss(root):
    """
    Resident memory of C{root}'s process tree in MiB (the sum of VmRSS: pages
    shared between nginx's master and worker count twice, which cancels out
    in the differences the table shows).
    """
    return sum(statusKib(pid, "VmRSS") for pid in treePids(root)) / 1024.0


def treeFds(root):
    """
    Open file descriptors of C{root}'s process tree (sockets mostly): shows
    whether the balancer has let go of closed connections.
    """
    total = 0
    for pid in treePids(root):
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return total


def kernelTcpPages():
    """
    Pages of memory the kernel holds for all TCP sockets (/proc/net/sockstat,
    machine-wide: other programs' sockets count too).
    """
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    parts = line.split()
                    return int(parts[parts.index("mem") + 1])
    except (OSError, ValueError):
        pass
    return 0


class CpuWatch:
    """
    CPU seconds of the balancer's tree, of the member's and of this script,
    and the machine's busy seconds, between L{start} and L{stop}.
    """

    def __init__(self, balancerPid, memberPid):
        self.pids = (balancerPid, memberPid)

    def _now(self):
        own = os.times()
        busy, _ = machineCpu()
        return (treeCpu(self.pids[0]), treeCpu(self.pids[1]), own.user + own.system,
                busy / CLOCK_TICKS, time.monotonic())

    def start(self):
        self.first = self._now()
        self.loadavg = os.getloadavg()

    def stop(self):
        last = self._now()
        balancer, member, own, busy, wall = (b - a for a, b in zip(self.first, last))
        return {
            "seconds": round(wall, 1),
            "balancer_cpu_s": round(balancer, 2),
            "balancer_cpu_share": round(balancer / wall, 3) if wall else None,
            "member_cpu_s": round(member, 2),
            "client_cpu_s": round(own, 2),
            "other_cpu_s": round(max(0.0, busy - balancer - member - own), 2),
            "loadavg_1min_before": round(self.loadavg[0], 2),
        }


# Probes: normal requests while the slow clients are there.


class Probe(Protocol):
    def __init__(self, done, path):
        self.done = done
        self.path = path
        self.received = b""

    def connectionMade(self):
        self.transport.write(
            b"GET %s HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n" % self.path.encode())

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.callback(self.received)


async def probe(reactor, port, path=SMALL):
    """
    One normal request on a new connection: (seconds, ok).  A complete 200
    within 10 s is a success.
    """
    started = time.perf_counter()
    done = defer.Deferred()
    timer = None
    try:
        protocol = await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), Probe(done, path))
        timer = reactor.callLater(10, lambda: done.called or done.callback(b"timeout"))
        answer = await done
        if answer == b"timeout":
            protocol.transport.abortConnection()
    except Exception:
        return time.perf_counter() - started, False
    finally:
        if timer is not None and timer.active():
            timer.cancel()
    ok = answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"s" * 10 + b"\n")
    return time.perf_counter() - started, ok


class Prober:
    """
    Probes every C{interval} seconds until L{stop}; L{figures} summarises
    the probes made since the last L{reset}.
    """

    def __init__(self, reactor, port, interval):
        self.reactor = reactor
        self.port = port
        self.interval = interval
        self.running = False
        self.reset()

    def reset(self):
        #: (monotonic time it ended, seconds, ok) for every probe.
        self.probes = []

    def start(self):
        self.running = True
        self.finished = defer.ensureDeferred(self._loop())

    async def _loop(self):
        while self.running:
            seconds, ok = await probe(self.reactor, self.port)
            self.probes.append((time.monotonic(), seconds, ok))
            await task.deferLater(self.reactor, self.interval, lambda: None)

    async def stop(self):
        self.running = False
        await self.finished

    def figures(self, since=0.0, until=float("inf")):
        """
        Success count and latencies of the probes that ended between the
        monotonic times C{since} and C{until}.
        """
        chosen = [(seconds, ok) for t, seconds, ok in self.probes if since <= t < until]
        ok = sorted(seconds for seconds, good in chosen if good)
        failed = len(chosen) - len(ok)
        if not ok:
            return {"probes_ok": 0, "probes_failed": failed}
        return {
            "probes_ok": len(ok),
            "probes_failed": failed,
            "probe_p50_ms": round(statistics.median(ok) * 1000, 1),
            "probe_p99_ms": round(percentile(ok, 0.99) * 1000, 1),
            "probe_max_ms": round(ok[-1] * 1000, 1),
        }


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def sleep(reactor, seconds):
    await task.deferLater(reactor, seconds, lambda: None)


async def warmUp(reactor, port, requests=300):
    """
    Some normal requests and a few large ones first (a JIT's warm-up, pools
    and buffers made), so that "before" is a balancer that has served.
    """
    for _ in range(requests):
        await probe(reactor, port)
    for _ in range(5):
        await probe(reactor, port, BIG)


# Slow readers (slowhttptest -X): plain sockets, their receive buffer set
# before connect, read a few bytes now and then.


class SlowReaders:
    def __init__(self, port, args):
        self.port = port
        self.args = args
        self.sockets = []
        self.failed = 0
        self.received = 0
        self.closedByPeer = 0
        self.request = (b"GET %s HTTP/1.1\r\nHost: slowread\r\n\r\n" % BIG.encode()) * args.pipeline

    def openSome(self, count):
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.args.rcvbuf)
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", self.port))
                s.sendall(self.request)
            except OSError:
                self.failed += 1
                s.close()
                continue
            s.setblocking(False)
            self.sockets.append(s)

    def readSome(self):
        """
        C{--read-bytes} from each open reader (as slowhttptest's timer does).
        """
        still = []
        for s in self.sockets:
            try:
                data = s.recv(self.args.read_bytes)
            except BlockingIOError:
                still.append(s)
                continue
            except OSError:
                data = b""
            if data:
                self.received += len(data)
                still.append(s)
            else:
                self.closedByPeer += 1
                s.close()
        self.sockets = still

    def census(self):
        """
        How many readers have bytes waiting, nothing yet, or are closed (a
        peek: nothing is consumed).
        """
        counts = {"data_waiting": 0, "nothing_yet": 0, "closed": 0}
        for s in self.sockets:
            try:
                data = s.recv(12, socket.MSG_PEEK)
            except BlockingIOError:
                counts["nothing_yet"] += 1
                continue
            except OSError:
                data = b""
            counts["data_waiting" if data else "closed"] += 1
        return counts

    def closeAll(self):
        for s in self.sockets:
            s.close()
        self.sockets = []


def diskKib(directory):
    """
    KiB of the files under C{directory} (nginx's proxy temp files).
    """
    total = 0
    for parent, _, files in os.walk(directory):
        for name in files:
            try:
                total += os.stat(os.path.join(parent, name)).st_blocks * 512
            except OSError:
                pass
    return total // 1024


async def slowReadPhase(reactor, port, pid, memberPid, args, workdir=None):
    prober = Prober(reactor, port, args.probe_interval)
    cpu = CpuWatch(pid, memberPid)
    await warmUp(reactor, port)
    await sleep(reactor, 1.0)
    before = treeRss(pid)
    fdsBefore = treeFds(pid)
    tcpBefore = kernelTcpPages()
    cpu.start()
    prober.start()
    readers = SlowReaders(port, args)
    opened = time.monotonic()
    for start in range(0, args.readers, 100):
        # In a thread: blocking connects must not hold up the probes.
        await threads.deferToThread(readers.openSome, min(100, args.readers - start))
        await sleep(reactor, 0.05)
    openSeconds = time.monotonic() - opened
    reading = None
    if args.read_every > 0:
        reading = task.LoopingCall(readers.readSome)
        reading.start(args.read_every, now=False)
    # Settle: until three samples a second apart are within 1 MiB (or 2%),
    # at most --settle seconds; then hold for --hold seconds.
    samples, settled = [], None
    deadline = time.monotonic() + args.settle
    while time.monotonic() < deadline:
        await sleep(reactor, 1.0)
        samples.append(treeRss(pid))
        last = samples[-3:]
        if len(last) == 3 and max(last) - min(last) <= max(1.0, 0.02 * max(last)):
            settled = round(time.monotonic() - opened, 1)
            break
    held = []
    heldSince = time.monotonic()
    deadline = heldSince + args.hold
    while time.monotonic() < deadline:
        await sleep(reactor, 1.0)
        held.append(treeRss(pid))
    during = statistics.median(held)
    tcpDuring = kernelTcpPages()
    disk = diskKib(workdir) if workdir else None
    fdsDuring = treeFds(pid)
    census = readers.census()
    openAtEnd = len(readers.sockets)
    if reading is not None:
        reading.stop()
    closing = time.monotonic()
    held_seconds = round(closing - opened, 1)
    cpuDuring = cpu.stop()
    readers.closeAll()
    await sleep(reactor, args.after)
    after = treeRss(pid)
    fdsAfter = treeFds(pid)
    await prober.stop()
    n = max(1, args.readers - readers.failed)
    return {
        "readers": args.readers,
        "connect_failures": readers.failed,
        "open_seconds": round(openSeconds, 2),
        "rcvbuf": args.rcvbuf,
        "pipeline": args.pipeline,
        "read": (f"{args.read_bytes} B every {args.read_every:g} s" if args.read_every > 0
                 else "never"),
        "bytes_read_by_readers": readers.received,
        "closed_by_balancer": readers.closedByPeer + census["closed"],
        "open_at_end": openAtEnd - census["closed"],
        "census_at_end": census,
        "rss_before_mib": round(before, 1),
        "rss_during_mib": round(during, 1),
        "rss_peak_mib": round(max(samples + held), 1),
        "rss_after_mib": round(after, 1),
        "rss_per_reader_kib": round((during - before) * 1024 / n, 1),
        "fds_before_during_after": [fdsBefore, fdsDuring, fdsAfter],
        "after_s": args.after,
        "settled_after_s": settled,
        "held_s": held_seconds,
        "kernel_tcp_mem_delta_kib": (tcpDuring - tcpBefore) * resource.getpagesize() // 1024,
        "temp_files_kib_during": disk,
        "probes_during": prober.figures(opened, closing),
        "probes_while_held": prober.figures(heldSince, closing),
        "probes_after": prober.figures(closing),
        "cpu": cpuDuring,
    }


# Slow-header, slow-body and byte-drip clients (Twisted), reopened when closed.


def dripHead(size):
    """
    A request head of about C{size} bytes that is not finished: the request
    line, padding header lines of 1,000 bytes, and the start of a last
    header line that the drip then extends by one byte at a time.
    """
    head = b"GET /small HTTP/1.1\r\nHost: drip\r\n"
    line = 0
    while len(head) + 1000 + 20 < size:
        head += b"X-Pad-%03d: " % line + b"a" * (1000 - 13) + b"\r\n"
        line += 1
    return head + b"X-Drip: " + b"a" * max(0, size - len(head) - 8)


class Slow(Protocol):
    """
    One slow client; C{kind} is "header", "body" or "drip".
    """

    def __init__(self, kind, stats, prefix=b""):
        self.kind = kind
        self.stats = stats
        self.prefix = prefix
        self.received = b""

    def connectionMade(self):
        self.opened = time.monotonic()
        if self.kind == "header":
            self.transport.write(b"GET /small HTTP/1.1\r\nHost: slow\r\n")
        elif self.kind == "body":
            self.transport.write(b"POST /small HTTP/1.1\r\nHost: slow\r\nContent-Length: 8192\r\n\r\n")
        else:
            self.transport.setTcpNoDelay(True)
            self.transport.write(self.prefix)

    def drip(self):
        if self.transport is not None and self.transport.connected:
            self.transport.write({"header": b"X-a: b\r\n", "body": b"x"}.get(self.kind, b"a"))
            self.stats["bytes dripped"] = self.stats.get("bytes dripped", 0) + 1

    def dataReceived(self, data):
        if len(self.received) < 64:
            self.received += data

    def connectionLost(self, reason):
        if getattr(self, "closedByUs", False):
            self.stats["open when the run ended"] = self.stats.get("open when the run ended", 0) + 1
            return
        status = self.received[9:12].decode() if self.received.startswith(b"HTTP/1.") else "none"
        key = f"{self.kind} closed with {status}"
        self.stats[key] = self.stats.get(key, 0) + 1
        lived = self.stats.setdefault("lifetimes", [])
        lived.append(time.monotonic() - self.opened)


class Keeper:
    """
    Keeps C{count} slow clients of one kind open, reopening closed ones, at
    most C{rate} new connections a second.
    """

    def __init__(self, reactor, port, kind, count, stats, rate=None, prefix=b""):
        self.reactor = reactor
        self.endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        self.kind = kind
        self.count = count
        self.stats = stats
        self.rate = rate
        self.prefix = prefix
        self.open = []
        self.opening = 0
        self.lastFill = None

    def fill(self):
        now = time.monotonic()
        self.open = [p for p in self.open if p.transport is not None and p.transport.connected]
        wanted = self.count - len(self.open) - self.opening
        if self.rate is not None and self.lastFill is not None:
            wanted = min(wanted, int(self.rate * (now - self.lastFill)) + 1)
        self.lastFill = now
        for _ in range(max(0, wanted)):
            self.opening += 1
            self.stats["opened"] = self.stats.get("opened", 0) + 1
            d = connectProtocol(self.endpoint, Slow(self.kind, self.stats, self.prefix))
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
                protocol.closedByUs = True
                protocol.transport.abortConnection()


def closedSummary(stats):
    """
    The Keeper's stats for the JSON: counts, and how long connections lived.
    """
    lifetimes = stats.pop("lifetimes", [])
    summary = dict(sorted(stats.items()))
    if lifetimes:
        summary["lifetime_median_s"] = round(statistics.median(lifetimes), 2)
        summary["lifetime_max_s"] = round(max(lifetimes), 2)
    return summary


async def dripPhase(reactor, port, pid, memberPid, args, prefix):
    prober = Prober(reactor, port, args.probe_interval)
    cpu = CpuWatch(pid, memberPid)
    await warmUp(reactor, port)
    await sleep(reactor, 1.0)
    before = treeRss(pid)
    stats = {}
    keeper = Keeper(reactor, port, "drip", args.drippers, stats, rate=args.reopen_rate,
                    prefix=dripHead(prefix))
    cpu.start()
    prober.start()
    refill = task.LoopingCall(keeper.fill)
    refill.start(0.1)
    drip = task.LoopingCall(keeper.drip)
    drip.start(args.drip_interval, now=False)
    peak = before
    deadline = time.monotonic() + args.drip_seconds
    while time.monotonic() < deadline:
        await sleep(reactor, 1.0)
        peak = max(peak, treeRss(pid))
    openAtEnd = len(keeper.open)
    refill.stop()
    drip.stop()
    cpuFigures = cpu.stop()
    await prober.stop()
    keeper.close()
    await sleep(reactor, 0.5)
    return {
        "drippers": args.drippers,
        "prefix_bytes": prefix,
        "drip_interval_s": args.drip_interval,
        "reopen_rate_per_s": args.reopen_rate,
        "open_at_end": openAtEnd,
        "closed": closedSummary(stats),
        "rss_before_mib": round(before, 1),
        "rss_peak_mib": round(peak, 1),
        "probes": prober.figures(),
        "cpu": cpuFigures,
    }


async def slowPhase(reactor, port, pid, memberPid, args):
    """
    The earlier phase 1: slowloris and slow-body connections.
    """
    stats = {}
    cpu = CpuWatch(pid, memberPid)
    keepers = [Keeper(reactor, port, kind, args.slow, stats) for kind in ("header", "body")]
    cpu.start()
    refill = task.LoopingCall(lambda: [k.fill() for k in keepers])
    refill.start(0.5)
    drip = task.LoopingCall(lambda: [k.drip() for k in keepers])
    drip.start(3.0, now=False)
    prober = Prober(reactor, port, args.probe_interval)
    prober.start()
    peakMemory = 0.0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        await sleep(reactor, 0.5)
        peakMemory = max(peakMemory, treeRss(pid))
    openSlow = sum(len(k.open) for k in keepers)
    refill.stop()
    drip.stop()
    await prober.stop()
    for k in keepers:
        k.close()
    stats.pop("bytes dripped", None)
    return dict(
        {"slow_connections_per_kind": args.slow, "slow_connections_open_at_end": openSlow,
         "balancer_peak_rss_mib": round(peakMemory, 1), "closed": closedSummary(stats),
         "cpu": cpu.stop()},
        **prober.figures())


class Idle(Protocol):
    def __init__(self, stats):
        self.stats = stats
        self.answered = False

    def connectionMade(self):
        self.transport.write(b"GET /small HTTP/1.1\r\nHost: idle\r\n\r\n")

    def dataReceived(self, data):
        self.answered = True

    def connectionLost(self, reason):
        self.stats["idle closed by balancer"] = self.stats.get("idle closed by balancer", 0) + 1


async def idlePhase(reactor, port, pid, memberPid, args):
    """
    The earlier phase 2: many idle keep-alive connections.
    """
    stats = {}
    before = treeRss(pid)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    protocols = []
    for start in range(0, args.idle, 500):
        batch = [
            connectProtocol(endpoint, Idle(stats)) for _ in range(min(500, args.idle - start))
        ]
        protocols.extend(await defer.gatherResults(batch))
        await sleep(reactor, 0.05)
    deadline = time.monotonic() + 60
    while sum(p.answered for p in protocols) < len(protocols) and time.monotonic() < deadline:
        await sleep(reactor, 0.2)
    answered = sum(p.answered for p in protocols)
    during = treeRss(pid)
    opened = time.monotonic()
    deadline = opened + args.idle_timeout + 30
    while stats.get("idle closed by balancer", 0) < len(protocols) and time.monotonic() < deadline:
        await sleep(reactor, 0.5)
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


PHASES = {"slowread": slowReadPhase, "drip": dripPhase, "slow": slowPhase, "idle": idlePhase}
PLAYBALANCER_ONLY = {"slow", "idle"}


# Balancers: one process each, started per mode, stopped by PID.


class Row:
    """
    One balancer under test.
    """

    def __init__(self, name, label, binary=None, python=None, env=None):
        self.name = name
        self.label = label
        self.binary = binary
        self.python = python
        self.env = env or {}

    def unavailable(self, ctx):
        if self.python is not None:
            if not os.path.exists(self.python):
                return f"{self.python} not found"
            return None
        if not ctx.binaries.get(self.binary):
            return f"{self.binary} not found"
        return None

    def version(self, ctx):
        if self.python is not None:
            return firstLine([self.python, "-c",
                              "import sys, twisted, playbalancer; print(sys.version.split()[0], "
                              "'Twisted', twisted.__version__, 'playbalancer', "
                              "playbalancer.__version__)"])
        return firstLine([ctx.binaries[self.binary], "-v"])

    def command(self, ctx, workdir, port, mode):
        member = ctx.member.port
        config = os.path.join(workdir, "config")
        if self.python is not None:
            extra = ""
            if mode in PLAYBALANCER_ONLY:
                a = ctx.args
                extra = (f"header_timeout = {a.header_timeout}\nbody_timeout = {a.body_timeout}\n"
                         f"idle_timeout = {a.idle_timeout}\nmax_connections = 30000\n")
            text = PLAYBALANCER.format(port=port, member=member, extra=extra)
            argv = [self.python, "-m", "twisted", "--log-format=text", "playbalancer",
                    "--config", config]
        elif self.binary == "haproxy":
            text = HAPROXY.format(port=port, member=member)
            argv = [ctx.binaries["haproxy"], "-db", "-f", config]
        else:
            text = NGINX.format(port=port, member=member, workdir=workdir)
            argv = [ctx.binaries["nginx"], "-p", workdir, "-c", config,
                    "-e", os.path.join(workdir, "error.log")]
        with open(config, "w") as f:
            f.write(text)
        return argv

    def start(self, ctx, mode, run):
        workdir = os.path.join(ctx.workdir, f"{self.name}-{mode}-{run}")
        os.makedirs(os.path.join(workdir, "tmp"))
        os.chmod(workdir, 0o755)
        port = ctx.ports.take()
        logPath = os.path.join(workdir, "output.log")
        proc = ctx.procs.spawn(self.command(ctx, workdir, port, mode), logPath, cwd=workdir,
                               env=self.env)
        waitReady(proc, port, logPath, timeout=60)
        return proc, port, logPath, workdir


def allRows(args):
    return [
        Row("playbalancer", "playbalancer, CPython", python=args.python),
        Row("playbalancer-pypy", "playbalancer, PyPy", python=args.pypy,
            env={"PYPY_GC_NURSERY": "16M"}),
        Row("haproxy", "HAProxy 2.6, 1 thread", binary="haproxy"),
        Row("nginx", "nginx 1.22, 1 worker", binary="nginx"),
    ]


class Context:
    def __init__(self, args):
        self.args = args
        self.procs = Processes()
        self.ports = PortPool()
        self.workdir = None
        self.binaries = {}
        self.member = None


async def runAll(reactor, ctx, rows, record):
    args = ctx.args
    for run in range(1, args.runs + 1):
        results = {}
        record["runs"].append(results)
        for row in rows:
            for key, mode, extra in phases(args):
                if mode in PLAYBALANCER_ONLY and row.python is None:
                    continue
                log(f"run {run}: {row.name} {key}")
                proc, port, logPath, workdir = row.start(ctx, key, run)
                if mode == "slowread":
                    extra = dict(extra, workdir=os.path.join(workdir, "tmp"))
                try:
                    figures = await PHASES[mode](reactor, port, proc.pid, ctx.member.proc.pid, args,
                                                 **extra)
                    if proc.poll() is not None:
                        figures["exited"] = f"{proc.returncode}: {tail(logPath, 5)}"
                except Exception as e:  # one row's failure must not end the others
                    figures = {"error": f"{type(e).__name__}: {e}", "log": tail(logPath, 5)}
                finally:
                    ctx.procs.stop(proc)
                results.setdefault(row.name, {})[key] = figures
                log(f"  {json.dumps(summaryLine(mode, figures))}")


def phases(args):
    """
    (result key, mode, extra arguments) of every phase a row runs: one
    "drip-PREFIX" per --drip-prefix.
    """
    for mode in args.modes:
        if mode == "drip":
            for prefix in args.drip_prefix:
                yield f"drip-{prefix}", mode, {"prefix": prefix}
        else:
            yield mode, mode, {}


def summaryLine(mode, f):
    if "error" in f:
        return f
    if mode == "slowread":
        return {k: f.get(k) for k in ("rss_before_mib", "rss_during_mib", "rss_after_mib",
                                      "rss_per_reader_kib", "open_at_end")} | f["probes_during"]
    if mode == "drip":
        return {"cpu_s": f["cpu"]["balancer_cpu_s"], "other_cpu_s": f["cpu"]["other_cpu_s"],
                "closed": f["closed"]} | f["probes"]
    return f


# The table.


def cell(values, digits=0):
    """
    Run values joined with " / " (one per run), L{None} as "-".
    """
    out = []
    for v in values:
        if v is None:
            out.append("-")
        elif isinstance(v, (int, float)):
            out.append(f"{v:,.{digits}f}")
        else:
            out.append(str(v))
    return " / ".join(out)


def rstTable(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join("=" * w for w in widths)
    fmt = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line, fmt(header), line] + [fmt(r) for r in rows] + [line])


def report(record):
    names = [r["name"] for r in record["balancers"]]
    labels = {r["name"]: r["label"] for r in record["balancers"]}
    runs = record["runs"]

    def values(name, mode, getter):
        out = []
        for results in runs:
            f = results.get(name, {}).get(mode)
            try:
                out.append(getter(f) if f and "error" not in f else None)
            except (KeyError, TypeError):
                out.append(None)
        return out

    parts = []
    if "slowread" in record["settings"]["modes"]:
        rows = []
        for name in names:
            if not any(r.get(name, {}).get("slowread") for r in runs):
                continue
            rows.append([
                labels[name],
                cell(values(name, "slowread", lambda f: f["rss_before_mib"])),
                cell(values(name, "slowread", lambda f: f["rss_during_mib"])),
                cell(values(name, "slowread", lambda f: f["rss_after_mib"])),
                cell(values(name, "slowread", lambda f: f["rss_per_reader_kib"]), 1),
                cell(values(name, "slowread", lambda f: f["open_at_end"])),
                cell(values(name, "slowread",
                            lambda f: f"{f['probes_during']['probes_ok']}"
                                      f"/{f['probes_during']['probes_failed']}")),
                cell(values(name, "slowread", lambda f: f["probes_during"]["probe_p99_ms"]), 1),
                cell(values(name, "slowread", lambda f: f["probes_while_held"]["probe_p99_ms"]), 1),
                cell(values(name, "slowread", lambda f: f["cpu"]["other_cpu_s"]), 1),
            ])
        s = record["settings"]
        parts.append(
            f"Slow readers: {s['readers']} connections, SO_RCVBUF {s['rcvbuf']}, "
            f"{s['pipeline']} pipelined GET of 1 MiB, read "
            f"{s['read_bytes']} B every {s['read_every']:g} s (0: never); "
            "RSS in MiB (process tree), run 1 / run 2\n\n"
            + rstTable(["balancer", "RSS before", "RSS during", "RSS after", "KiB per reader",
                        "readers held", "probes ok/failed", "probe p99 ms", "p99 once settled",
                        "other CPU s"], rows))
    for prefix in record["settings"]["drip_prefix"] if "drip" in record["settings"]["modes"] else ():
        key = f"drip-{prefix}"
        rows = []
        for name in names:
            if not any(r.get(name, {}).get(key) for r in runs):
                continue

            def closedBy(f):
                c = f["closed"]
                kinds = [f"{k.split()[-1]} x{v}" for k, v in c.items()
                         if k.startswith("drip closed")]
                return ",".join(kinds) or "none"

            rows.append([
                labels[name],
                cell(values(name, key, lambda f: f["cpu"]["balancer_cpu_s"]), 2),
                cell(values(name, key, lambda f: f["closed"].get("opened"))),
                cell(values(name, key, closedBy)),
                cell(values(name, key,
                            lambda f: f"{f['probes']['probes_ok']}/{f['probes']['probes_failed']}")),
                cell(values(name, key, lambda f: f["probes"]["probe_p99_ms"]), 1),
                cell(values(name, key, lambda f: f["cpu"]["other_cpu_s"]), 1),
            ])
        s = record["settings"]
        parts.append(
            f"Byte-drip heads: {s['drippers']} connections, {prefix:,} B head then "
            f"1 byte every {s['drip_interval'] * 1000:g} ms, reopened (at most "
            f"{s['reopen_rate']:g}/s), {s['drip_seconds']:g} s; run 1 / run 2\n\n"
            + rstTable(["balancer", "balancer CPU s", "connections", "closed with (status x n)",
                        "probes ok/failed", "probe p99 ms", "other CPU s"], rows))
    return "\n\n".join(parts)


# Main.


def parseArgs(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="playbalancer,playbalancer-pypy,haproxy,nginx")
    parser.add_argument("--modes", default="slowread,drip",
                        help="comma-separated: slowread, drip, slow, idle")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--pypy", default=DEFAULT_PYPY)
    parser.add_argument("--probe-interval", type=float, default=0.1)
    # slowread
    parser.add_argument("--readers", type=int, default=1000)
    parser.add_argument("--rcvbuf", type=int, default=1024)
    parser.add_argument("--pipeline", type=int, default=3)
    parser.add_argument("--read-every", type=float, default=5.0)
    parser.add_argument("--read-bytes", type=int, default=32)
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--hold", type=float, default=15.0)
    parser.add_argument("--after", type=float, default=5.0)
    # drip
    parser.add_argument("--drippers", type=int, default=100)
    parser.add_argument("--drip-prefix", default="60000,4000",
                        help="head bytes sent at once before the drip; a comma list runs each")
    parser.add_argument("--drip-interval", type=float, default=0.02)
    parser.add_argument("--drip-seconds", type=float, default=30.0)
    parser.add_argument("--reopen-rate", type=float, default=50.0)
    # slow, idle
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--body-timeout", type=float, default=60.0)
    parser.add_argument("--idle-timeout", type=float, default=15.0)
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--report", help="print the table of an earlier --json file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    args.only = [n for n in args.only.split(",") if n]
    args.modes = [m for m in args.modes.split(",") if m]
    args.drip_prefix = [int(p) for p in args.drip_prefix.split(",") if p]
    for mode in args.modes:
        if mode not in PHASES:
            parser.error(f"unknown mode {mode!r}")
    # Bounded: every row well under two minutes, a few thousand sockets.
    if not 1 <= args.readers <= 5000 or not 1 <= args.drippers <= 1000:
        parser.error("--readers is 1-5000 and --drippers 1-1000")
    if args.settle + args.hold + args.after > 90 or args.drip_seconds > 90:
        parser.error("--settle + --hold + --after and --drip-seconds are at most 90 s")
    return args


def main(argv=None):
    args = parseArgs(argv)
    if args.report:
        with open(args.report) as f:
            print(report(json.load(f)))
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = Context(args)
    ctx.binaries = {n: findBinary(n) for n in ("nginx", "haproxy")}
    if not ctx.binaries["nginx"]:
        log("nginx is needed for the member and was not found")
        return 2
    rows = []
    skipped = {}
    for row in allRows(args):
        if row.name not in args.only:
            continue
        reason = row.unavailable(ctx)
        if reason:
            log(f"{row.name}: skipped: {reason}")
            skipped[row.name] = reason
        else:
            rows.append(row)
    ctx.workdir = tempfile.mkdtemp(prefix="pb-slow-")
    os.chmod(ctx.workdir, 0o755)
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "report", "keep")}
    record = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "commit": gitCommit(),
        "machine": machineInfo(),
        "settings": settings,
        "balancers": [{"name": r.name, "label": r.label, "version": r.version(ctx),
                       "settings": PEER_SETTINGS[r.name]} for r in rows],
        "skipped": skipped,
        "member": "nginx (throughput.Member): /small 100 B, /big 1 MiB, sendfile on",
        "runs": [],
    }
    previous = signal.getsignal(signal.SIGTERM)

    async def run(reactor):
        ctx.member = Member("m1")
        ctx.member.start(ctx)
        log(f"member on {ctx.member.port}")
        await runAll(reactor, ctx, rows, record)

    try:
        task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
    except SystemExit as e:
        if e.code not in (0, None):
            log(f"ended with {e.code}")
    finally:
        signal.signal(signal.SIGTERM, previous)
        ctx.procs.stopAll()
        if args.keep:
            log(f"kept {ctx.workdir}")
        else:
            shutil.rmtree(ctx.workdir, ignore_errors=True)
        record["machine"]["loadavg_end"] = os.getloadavg()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(record, f, indent=1)
                f.write("\n")
    print(report(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
