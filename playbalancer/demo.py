"""
A demo member: a small Twisted web app that says which instance answered,
the stand-in for the application instances behind the balancer.

    python -m playbalancer.demo serve --port 9999 --name app1
    python -m playbalancer.demo cluster --config etc/playbalancer.toml

Pages: C{/} (who answered), C{/health}, C{/slow?seconds=S}, C{/large?size=N}
(N bytes, streamed), C{/echo} (the request as JSON), C{/redirect} (a 302 to
this instance's own absolute URL, for C{ProxyPassReverse}).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

from zope.interface import implementer

from twisted.internet.interfaces import IPushProducer
from twisted.web import resource, server

_CHUNK = b"x" * 65536

#: Runs twistd with this interpreter (C{python -m twisted} is C{twist}).
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


def _number(request, name, default, limit):
    raw = request.args.get(name.encode(), [b""])[0]
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = default
    return max(0, min(value, limit))


class _Page(resource.Resource):
    isLeaf = True

    def __init__(self, instance):
        resource.Resource.__init__(self)
        self.instance = instance

    def _head(self, request, contentType=b"text/plain; charset=utf-8"):
        request.setHeader(b"content-type", contentType)
        request.setHeader(b"x-served-by", self.instance.name.encode())


class Hello(_Page):
    def render(self, request):
        self._head(request)
        return f"Hello from {self.instance.name} (port {self.instance.port})\n".encode()


class Health(_Page):
    def render(self, request):
        self._head(request)
        return b"ok\n"


class Slow(_Page):
    def render(self, request):
        seconds = _number(request, "seconds", 1.0, 300)
        self._head(request)
        call = self.instance.reactor.callLater(seconds, self._finish, request, seconds)
        request.notifyFinish().addErrback(lambda _: call.active() and call.cancel())
        return server.NOT_DONE_YET

    def _finish(self, request, seconds):
        request.write(f"{self.instance.name} waited {seconds:g}s\n".encode())
        request.finish()


@implementer(IPushProducer)
class _Filler:
    """
    Writes C{size} bytes, pausing whenever the client is slow.
    """

    def __init__(self, request, size):
        self.request = request
        self.left = size
        self.paused = False

    def start(self):
        self.request.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self):
        self.paused = False
        while self.left > 0 and not self.paused:
            chunk = _CHUNK[: min(len(_CHUNK), self.left)]
            self.left -= len(chunk)
            self.request.write(chunk)
        if self.left <= 0 and self.request is not None:
            request, self.request = self.request, None
            request.unregisterProducer()
            request.finish()

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self.left = 0
        self.paused = True
        self.request = None


class Large(_Page):
    def render(self, request):
        size = int(_number(request, "size", 10 * 2**20, 2**40))
        self._head(request, b"application/octet-stream")
        request.setHeader(b"content-length", b"%d" % size)
        if request.method == b"HEAD":
            return b""
        _Filler(request, size).start()
        return server.NOT_DONE_YET


class Echo(_Page):
    def render(self, request):
        sample, length = b"", 0
        if request.content is not None:
            request.content.seek(0)
            for piece in iter(lambda: request.content.read(65536), b""):
                if length < 64:
                    sample += piece[: 64 - length]
                length += len(piece)
        self._head(request, b"application/json")
        info = {
            "instance": self.instance.name,
            "method": request.method.decode("latin-1"),
            "uri": request.uri.decode("latin-1"),
            "headers": [
                [name.decode("latin-1"), value.decode("latin-1")]
                for name, values in request.requestHeaders.getAllRawHeaders()
                for value in values
            ],
            "body_length": length,
            "body_sample": sample.decode("latin-1"),
        }
        return json.dumps(info).encode() + b"\n"


class Redirect(_Page):
    def render(self, request):
        self._head(request)
        request.redirect(f"http://127.0.0.1:{self.instance.port}/".encode())
        return b"see /\n"


class DemoInstance:
    """
    One demo app instance: its name, port and reactor.
    """

    def __init__(self, name, port, reactor):
        self.name = name
        self.port = port
        self.reactor = reactor

    def resource(self):
        root = resource.Resource()
        hello = Hello(self)
        root.putChild(b"", hello)
        for path, page in [
            (b"health", Health),
            (b"slow", Slow),
            (b"large", Large),
            (b"echo", Echo),
            (b"upload", Echo),
            (b"redirect", Redirect),
        ]:
            root.putChild(path, page(self))
        return root

    def site(self):
        site = server.Site(self.resource())
        site.log = lambda request: None
        return site


def serve(name, port, interface="127.0.0.1", pidfile=None, startupDelay=0.0):
    """
    Run one demo instance until it is stopped.

    @param pidfile: write the process id here once listening.
    @param startupDelay: seconds to wait before listening, like an app that
        is slow to start.
    """
    from twisted.internet import reactor

    instance = DemoInstance(name, port, reactor)

    def listen():
        reactor.listenTCP(port, instance.site(), interface=interface)
        if pidfile:
            with open(pidfile, "w") as f:
                f.write(f"{os.getpid()}\n")
        print(f"demo instance {name} on http://{interface}:{port}/", flush=True)

    reactor.callLater(startupDelay, listen)
    reactor.run()


def endpointURL(endpoint):
    """
    The URL a browser on this machine would use for a server endpoint
    string (C{tcp:8080:interface=127.0.0.1} -> C{http://127.0.0.1:8080/}),
    or L{None} (a Unix socket).
    """
    parts = [p.replace("\\:", ":") for p in re.split(r"(?<!\\):", endpoint)]
    kind = parts[0]
    if kind not in ("tcp", "tcp6", "ssl") or len(parts) < 2 or not parts[1].isdigit():
        return None
    options = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    host = options.get("interface", "::" if kind == "tcp6" else "")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if kind == "ssl" else "http"
    return f"{scheme}://{host}:{parts[1]}/"


def summary(config):
    """
    What the demo prints once it runs: where each listener, member and the
    manager are, as this config says.
    """
    lines = ["", "playbalancer demo running:"]
    first = None
    for listener in config.listeners:
        url = endpointURL(listener.endpoint)
        if listener.mode == "http" and first is None:
            first = url
        where = url or listener.endpoint
        lines.append(f"  balancer listening on {where} -> balancer {listener.balancer}")
    for balancer in config.balancers.values():
        for member in balancer.members:
            role = " (standby)" if member.standby else ""
            lines.append(f"  member {member.name}: {member.url}{role}")
    if config.manager is not None:
        url = endpointURL(config.manager.endpoint) or config.manager.endpoint
        lines.append(f"  manager: {url}")
    if first is not None:
        lines.append(f"Try: curl -i {first}   (Ctrl-C stops everything)")
    return "\n".join(lines) + "\n"


def cluster(configPath):
    """
    Start a demo instance for each member of the config, then the balancer;
    stop them all on Ctrl-C.
    """
    from hyperlink import URL

    from playbalancer.config import loadConfig

    config = loadConfig(configPath)
    children = []
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

    def start(args):
        # A session of its own: Ctrl-C reaches only this launcher, which then
        # stops each child once.
        children.append(subprocess.Popen([sys.executable] + args, start_new_session=True))

    try:
        for balancer in config.balancers.values():
            for member in balancer.members:
                url = URL.from_text(member.url)
                start(["-m", "playbalancer.demo", "serve", "--name", member.name,
                       "--port", str(url.port)])
        time.sleep(0.5)
        start(["-c", TWISTD, "-n", "--pidfile=", "playbalancer", "--config", configPath])
        time.sleep(1.0)
        print(summary(config), flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("a demo process exited; stopping the others", flush=True)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="playbalancer-demo", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("serve", help="run one demo instance")
    one.add_argument("--port", type=int, default=9999)
    one.add_argument("--name", default="app1")
    one.add_argument("--interface", default="127.0.0.1")
    one.add_argument("--pidfile", help="write the process id here once listening")
    one.add_argument("--startup-delay", type=float, default=0.0, metavar="S",
                     help="wait S seconds before listening, like a slow-starting app")
    everything = commands.add_parser("cluster", help="run demo instances and the balancer")
    everything.add_argument("--config", default=os.path.join("etc", "playbalancer.toml"))
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.name, args.port, args.interface, args.pidfile, args.startup_delay)
    else:
        cluster(args.config)


if __name__ == "__main__":
    main()
