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

CLIENT = r"""
import socket, sys, time, resource
port, count, together = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
request = b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n"
held = []
def answer(s):
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
    while len(body) < length:
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
    held.extend(batch)
print("idle", len(held), flush=True)
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

[[balancer.web.member]]
name = "m1"
url = "http://127.0.0.1:{member}"
"""


def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
                              maxConnections=max(30000, args.connections * 2)))
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
    client, line = startClient(port, args.connections, args.member_connections)
    try:
        line = await line
        if not line.startswith(b"idle"):
            raise RuntimeError(f"client: {line!r}")
        await task.deferLater(reactor, 2.0, lambda: None)
        settle()
        rssWith = rssKiB()
        result = {
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


def startClient(port, count, together):
    """
    Start the client child: it opens C{count} connections to C{port}, a
    request on each, C{together} at a time, and holds them until its
    standard input closes.  The process, and a L{Deferred} of its first
    line (read in a thread, so that the reactor serves meanwhile).
    """
    from twisted.internet.threads import deferToThread
    process = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), str(count),
                                str(together)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return process, deferToThread(process.stdout.readline)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--member-connections", type=int, default=256,
                        help="requests sent at once (so pooled member connections made)")
    parser.add_argument("--trace", action="store_true", help="attribute with tracemalloc")
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
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
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
