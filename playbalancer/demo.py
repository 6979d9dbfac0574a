"""
A demo member: a small Twisted web app that says which instance answered,
the stand-in for the application instances behind the balancer.

    playbalancer-demo                      # the starter config: instances, balancer, manager
    playbalancer-demo --port 8000          # the same, the balancer on port 8000
    playbalancer-demo serve --port 9999 --name app1
    playbalancer-demo cluster --config etc/playbalancer.toml

Pages: C{/} (who answered), C{/health}, C{/slow?seconds=S}, C{/large?size=N}
(N bytes, streamed), C{/echo} (the request as JSON), C{/redirect} (a 302 to
this instance's own absolute URL, for C{ProxyPassReverse}).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import sys

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
    Run one demo instance until it is stopped.  If it cannot listen it
    says why in one line on stderr and exits with status 1.

    @param pidfile: write the process id here once listening.
    @param startupDelay: seconds to wait before listening, like an app that
        is slow to start.
    """
    from twisted.internet import reactor
    from twisted.internet.error import CannotListenError

    instance = DemoInstance(name, port, reactor)
    failed = []

    def listen():
        try:
            reactor.listenTCP(port, instance.site(), interface=interface)
        except CannotListenError as e:
            problem = listenProblem(interface, port, e.socketError, f"demo instance {name}")
            print(f"playbalancer demo: {problem}", file=sys.stderr, flush=True)
            failed.append(e)
            reactor.stop()
            return
        if pidfile:
            with open(pidfile, "w") as f:
                f.write(f"{os.getpid()}\n")
        print(f"demo instance {name} on http://{interface}:{port}/", flush=True)

    reactor.callLater(startupDelay, listen)
    reactor.run()
    if failed:
        sys.exit(1)


def listenProblem(interface, port, error, role):
    """
    Why listening on C{interface} (C{""}: every address) and C{port} for
    C{role} (who wanted it) failed with C{error}, in words naming the port.
    """
    where = f"port {port} on {interface or 'every address'} ({role})"
    if getattr(error, "errno", None) == errno.EADDRINUSE:
        return f"{where} is taken by another process"
    reason = getattr(error, "strerror", None) or error
    return f"cannot listen on {where}: {reason}"


def tcpAddress(endpoint):
    """
    C{(kind, interface, port)} of a TCP server endpoint string (C{kind} is
    C{"tcp"}, C{"tcp6"} or C{"ssl"}; C{interface} as written, C{""} when
    not given), or L{None} for other kinds.
    """
    parts = [p.replace("\\:", ":") for p in re.split(r"(?<!\\):", endpoint)]
    kind = parts[0]
    if kind not in ("tcp", "tcp6", "ssl") or len(parts) < 2 or not parts[1].isdigit():
        return None
    options = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    return kind, options.get("interface", ""), int(parts[1])


def localHost(kind, interface):
    """
    The address a client on this machine reaches C{interface} at.
    """
    host = interface or ("::" if kind == "tcp6" else "")
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def endpointURL(endpoint):
    """
    The URL a browser on this machine would use for a server endpoint
    string (C{tcp:8080:interface=127.0.0.1} -> C{http://127.0.0.1:8080/}),
    or L{None} (a Unix socket).
    """
    address = tcpAddress(endpoint)
    if address is None:
        return None
    kind, interface, port = address
    host = localHost(kind, interface)
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if kind == "ssl" else "http"
    return f"{scheme}://{host}:{port}/"


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


def main(argv=None):
    from playbalancer._version import versionLine
    from playbalancer.starter import addPortOptions

    parser = argparse.ArgumentParser(
        prog="playbalancer-demo",
        usage="playbalancer-demo [cluster] [--port N] [--manager-port N] [--app-ports A,B] "
        "[--config FILE]\n       playbalancer-demo serve [--port N] [--name NAME] ...",
        description="Run the demo: two demo app instances and the balancer in front of them "
        "with the starter config (what `playbalancer init` writes), on the ports given; "
        "or, with serve, one demo app instance.",
        epilog="Without a command it runs cluster; see playbalancer-demo cluster --help "
        "and playbalancer-demo serve --help.",
    )
    parser.add_argument("--version", action="version", version=versionLine("playbalancer-demo"))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    one = commands.add_parser("serve", prog="playbalancer-demo serve", help="run one demo instance")
    one.add_argument("--port", type=int, default=9999)
    one.add_argument("--name", default="app1")
    one.add_argument("--interface", default="127.0.0.1")
    one.add_argument("--pidfile", help="write the process id here once listening")
    one.add_argument("--startup-delay", type=float, default=0.0, metavar="S",
                     help="wait S seconds before listening, like a slow-starting app")
    everything = commands.add_parser(
        "cluster",
        prog="playbalancer-demo cluster",
        help="run demo instances and the balancer (what playbalancer-demo alone does)",
        description="Run a demo instance for each member of the config, then the balancer; "
        "by default the starter config shipped in the package (playbalancer init writes it), "
        "with the ports given.",
    )
    everything.add_argument("--config", metavar="FILE",
                            help="run this config instead (then the port options do not apply)")
    addPortOptions(everything)
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ("serve", "cluster", "-h", "--help", "--version"):
        argv = ["cluster"] + argv  # the command by default
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.name, args.port, args.interface, args.pidfile, args.startup_delay)
    else:
        sys.exit(_runCluster(everything, args))


def _runCluster(parser, args):
    """
    C{playbalancer-demo cluster}: with C{--config}, that file; otherwise the
    starter config with the ports given, written to a directory of its own
    for the time the demo runs.
    """
    from playbalancer.democluster import cluster

    if args.config is not None:
        given = [flag for flag, value in (
            ("--port", args.port), ("--manager-port", args.manager_port),
            ("--app-ports", args.app_ports),
        ) if value is not None]
        if given:
            parser.error(f"{', '.join(given)}: not with --config (the config names its ports)")
        return cluster(args.config)
    import shutil
    import tempfile

    from playbalancer.starter import portsFromOptions, starterConfig

    try:
        text = starterConfig(portsFromOptions(args))
    except ValueError as e:
        parser.error(str(e))
    directory = tempfile.mkdtemp(prefix="playbalancer-demo-")
    try:
        path = os.path.join(directory, "playbalancer.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return cluster(path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
