#!/usr/bin/env python3
"""
What an idle keep-alive client connection costs the balancer in memory,
and where it goes.

This process is the balancer: the real service (``playbalancer.tap``) from
a config with one HTTP listener and one member (``playbalancer-demo
serve`` in a child process), on free ports of 127.0.0.1.  A client child
process opens ``--connections`` keep-alive connections, sends one ``GET /``
on each, reads the answer and leaves the connection open.  Once all are
idle the script reports:

- RSS before and with the connections, and its growth per connection
  (what ``ps`` would show; includes the allocator's slack);
- with ``--trace``, the Python allocations still held per connection,
  by the line that made them (tracemalloc, which slows the run and adds
  its own memory to the RSS figure: use two runs for the two figures);
- the member connections the pool keeps idle are in both figures (the
  client sends ``--member-connections`` requests at once, default 256,
  the pool's ``keepalive``): with 10,000 client connections they are a
  small share, but not nothing.

    python benchmarks/idlememory.py --connections 10000
    python benchmarks/idlememory.py --connections 2000 --trace --top 25
    python benchmarks/idlememory.py --pooled --connections 5000

With ``--pooled`` it measures an idle pooled *member* connection instead:
``--connections`` requests for the member's ``/slow`` page arrive at once
(so each takes a member connection of its own), and the client closes
every connection once answered.  The same run is made twice, each in a
fresh process: once with the pool's ``keepalive`` at ``--connections``
(it keeps them all) and once at 0 (it keeps none); the difference in RSS
growth, divided by the connections, is what a pooled connection costs,
without the allocator's leftovers from the client connections and
requests that came and went (in both runs alike).

Everything goes to 127.0.0.1; the children are stopped by their PIDs.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from twisted.internet import defer, task

from playbalancer.testing.ports import freePort

CLIENT = r"""
import socket, sys, time, resource
port, count, together = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
path, close = sys.argv[4].encode(), sys.argv[5] == "close"
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
request = b"GET " + path + b" HTTP/1.1\r\nHost: idle.test\r\n\r\n"
held = []
def answer(s):
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [int(l.split(b":")[1]) for l in head.split(b"\r\n")
               if l.lower().startswith(b"content-length:")]
    if lengths:
        while len(body) < lengths[0]:
            body += s.recv(65536)
    else:  # chunked
        while not body.endswith(b"0\r\n\r\n"):
            body += s.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head
for start in range(0, count, together):
    batch = []
    for _ in range(min(together, count - start)):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request)
        batch.append(s)
    for s in batch:
        answer(s)
        if close:
            s.close()
    if not close:
        held.extend(batch)
print("idle", count, flush=True)
sys.stdin.read()
"""

CONFIG = """\
[[listen]]
endpoint = "tcp:{port}:interface=127.0.0.1"
balancer = "web"
idle_timeout = 600
max_connections = {maxConnections}

[balancer.web]
scheduler = "round-robin"
keepalive = {keepalive}

[[balancer.web.member]]
name = "m1"
url = "http://127.0.0.1:{member}"
"""


def rssKiB():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def waitListening(port, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def settle():
    from playbalancer.memory import trimHeap
    for _ in range(3):
        gc.collect()
    trimHeap()


def attribution(before, after, connections, top):
    """
    The allocations held in C{after} and not in C{before}, by line, per
    connection: the C{top} largest.
    """
    lines = []
    for stat in after.compare_to(before, "lineno")[:top]:
        frame = stat.traceback[0]
        lines.append({
            "where": f"{os.path.relpath(frame.filename)}:{frame.lineno}",
            "bytes_per_connection": round(stat.size_diff / connections, 1),
            "blocks_per_connection": round(stat.count_diff / connections, 2),
        })
    total = sum(s.size_diff for s in after.compare_to(before, "filename"))
    return total / connections, lines


async def measure(reactor, args, member):
    from playbalancer import tap

    port = freePort()
    directory = tempfile.mkdtemp(prefix="pb-idlememory-")
    config = os.path.join(directory, "playbalancer.toml")
    with open(config, "w") as f:
        f.write(CONFIG.format(port=port, member=member,
                              maxConnections=max(30000, args.connections * 2),
                              keepalive=args.keep if args.pooled else 256))
    options = tap.Options()
    options.parseOptions(["--config", config])
    service = tap.makeService(options, reactor)
    service.startService()
    await task.deferLater(reactor, 0.5, lambda: None)
    warm, line = startClient(port, 50, 50)
    if not (await line).startswith(b"idle 50"):
        raise RuntimeError("the warm-up client failed")
    warm.stdin.close()
    warm.wait(30)
    await task.deferLater(reactor, 1.0, lambda: None)
    settle()
    if args.trace:
        import tracemalloc  # (CPython only)
        tracemalloc.start(args.frames)
        traceBefore = tracemalloc.take_snapshot()
    rssBefore = rssKiB()
    if args.pooled:
        # Every request at once, each held by the member for a while, so
        # that each takes its own member connection; the client then
        # closes its side and only the pooled member connections remain.
        client, line = startClient(port, args.connections, args.connections,
                                   f"/slow?seconds={args.hold}", close=True)
    else:
        client, line = startClient(port, args.connections, args.member_connections)
    try:
        line = await line
        if not line.startswith(b"idle"):
            raise RuntimeError(f"client: {line!r}")
        await task.deferLater(reactor, 2.0, lambda: None)
        settle()
        rssWith = rssKiB()
        result = {
            "what": "idle pooled member connections" if args.pooled
                    else "idle keep-alive client connections",
            "connections": args.connections,
            "rss_before_kib": rssBefore,
            "rss_with_kib": rssWith,
            "rss_per_connection_kib": round((rssWith - rssBefore) / args.connections, 3),
            "python": sys.version.split()[0],
            "implementation": sys.implementation.name,
            "traced": bool(args.trace),
        }
        if args.trace:
            import tracemalloc
            traceWith = tracemalloc.take_snapshot()
            perConnection, lines = attribution(traceBefore, traceWith, args.connections, args.top)
            result["traced_bytes_per_connection"] = round(perConnection, 1)
            result["top"] = lines
            tracemalloc.stop()
    finally:
        client.stdin.close()
        client.wait(30)
        await service.stopService()
        shutil.rmtree(directory, ignore_errors=True)
    return result


def startClient(port, count, together, path="/", close=False):
    """
    Start the client child: it opens C{count} connections to C{port}, a
    request for C{path} on each, C{together} at a time, and holds them
    (or with C{close}, closes each once answered) until its standard
    input closes.  The process, and a L{Deferred} of its first
    line (read in a thread, so that the reactor serves meanwhile).
    """
    from twisted.internet.threads import deferToThread
    process = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), str(count),
                                str(together), path, "close" if close else "hold"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return process, deferToThread(process.stdout.readline)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--member-connections", type=int, default=256,
                        help="requests sent at once (so pooled member connections made)")
    parser.add_argument("--pooled", action="store_true",
                        help="measure idle pooled member connections instead: --connections "
                             "requests at once, held --hold seconds by the member, then the "
                             "clients close and the pool keeps one member connection each")
    parser.add_argument("--hold", type=float, default=3.0)
    parser.add_argument("--keep", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help="attribute with tracemalloc")
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.pooled and args.keep is None:
        return comparePools(args)
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    memberPort = freePort()
    member = subprocess.Popen(
        [sys.executable, "-m", "playbalancer.demo", "serve", "--port", str(memberPort),
         "--name", "m1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        waitListening(memberPort)
        outcome = []

        async def run(reactor):
            outcome.append(await measure(reactor, args, memberPort))

        task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        if member.poll() is None:
            os.kill(member.pid, signal.SIGTERM)
            member.wait(10)
    result = outcome[0]
    return report(result, args.json)


def report(result, path):
    """
    Print C{result} as JSON, and write it to C{path} if given.
    """
    print(json.dumps(result, indent=1))
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return 0


def comparePools(args):
    """
    The C{--pooled} run: this script twice, in fresh processes, with the
    pool keeping every member connection and keeping none.
    """
    runs = {}
    for keep in (args.connections, 0):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [sys.executable, os.path.abspath(__file__), "--pooled",
                       "--connections", str(args.connections), "--hold", str(args.hold),
                       "--keep", str(keep), "--json", out.name] + (["--trace"] if args.trace else [])
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            with open(out.name) as f:
                runs[keep] = json.load(f)
    kept, none = runs[args.connections], runs[0]
    grew = lambda run: run["rss_with_kib"] - run["rss_before_kib"]
    result = {
        "what": "idle pooled member connections",
        "connections": args.connections,
        "rss_growth_kib_pool_keeps_all": grew(kept),
        "rss_growth_kib_pool_keeps_none": grew(none),
        "rss_per_pooled_connection_kib": round((grew(kept) - grew(none)) / args.connections, 3),
        "python": kept["python"],
        "implementation": kept["implementation"],
    }
    if args.trace:
        result["traced_bytes_per_pooled_connection"] = round(
            kept["traced_bytes_per_connection"] - none["traced_bytes_per_connection"], 1)
    return report(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
