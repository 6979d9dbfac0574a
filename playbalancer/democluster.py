"""
The C{make demo} launcher (C{python -m playbalancer.demo cluster}): a demo
instance for each member of a config, then C{twistd playbalancer} with that
config.  It says it runs only once everything listens; a port that is
taken ends it with one line naming the port, and it stops every process it
started.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

from playbalancer.demo import TWISTD, listenProblem, localHost, summary, tcpAddress

#: Seconds the balancer has to listen once started.
BALANCER_STARTUP = 30


def _say(text):
    print(f"playbalancer demo: {text}", file=sys.stderr, flush=True)


def _start(children, args, **options):
    # A session of its own: Ctrl-C reaches only this launcher, which then
    # stops each child once.
    child = subprocess.Popen([sys.executable] + args, start_new_session=True, **options)
    children.append(child)
    return child


def _startMember(children, member):
    """
    Start a demo instance for C{member} and wait until it listens.

    @return: whether it does; if not, the reason has been said.
    """
    from hyperlink import URL

    port = URL.from_text(member.url).port
    child = _start(
        children,
        ["-m", "playbalancer.demo", "serve", "--name", member.name, "--port", str(port)],
        stdout=subprocess.PIPE,
    )
    # Its one line on stdout says it listens; otherwise it ends, having
    # said why on stderr.
    if child.stdout.readline():
        return True
    status = child.wait()
    if status <= 0:
        _say(f"demo instance {member.name} (port {port}) ended ({status}) before listening")
    return False


def _balancerAddresses(config):
    """
    C{(what, kind, interface, port)} of every TCP port the balancer of
    C{config} listens on.
    """
    endpoints = [
        (f"the listener of balancer {listener.balancer}", listener.endpoint)
        for listener in config.listeners
    ]
    if config.manager is not None:
        endpoints.append(("the manager", config.manager.endpoint))
    found = []
    for what, endpoint in endpoints:
        address = tcpAddress(endpoint)
        if address is not None and address[2] != 0:
            found.append((what,) + address)
    return found


def _bindProblem(what, kind, interface, port):
    """
    Why the balancer could not listen on this address now, or L{None}.
    """
    family = socket.AF_INET6 if kind == "tcp6" or ":" in interface else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Twisted does
        try:
            s.bind((interface or ("::" if family == socket.AF_INET6 else ""), port))
        except OSError as e:
            return listenProblem(interface, port, e, what)
    return None


def _waitListening(twistd, addresses):
    """
    Wait until the balancer (the C{twistd} child) accepts connections on
    every address, for at most L{BALANCER_STARTUP} seconds.

    @return: whether it does; if not, the reason has been said.
    """
    deadline = time.monotonic() + BALANCER_STARTUP
    waiting = [(localHost(kind, interface), port) for _, kind, interface, port in addresses]
    while waiting:
        if twistd.poll() is not None:
            _say(f"the balancer exited (status {twistd.returncode}) before it listened")
            return False
        try:
            socket.create_connection(waiting[0], timeout=1).close()
            waiting.pop(0)
        except OSError:
            if time.monotonic() > deadline:
                host, port = waiting[0]
                _say(f"the balancer did not listen on {host} port {port} in {BALANCER_STARTUP} s")
                return False
            time.sleep(0.1)
    return True


def _stopAll(children):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def cluster(configPath):
    """
    Start a demo instance for each member of the config, then the balancer;
    stop them all on Ctrl-C or SIGTERM, or when one of them ends.

    @return: the exit status: 0 when stopped, 1 when something did not
        start or ended by itself.
    """
    from playbalancer.config import ConfigError, loadConfig

    try:
        config = loadConfig(configPath)
    except ConfigError as e:
        _say(str(e))
        return 1
    children = []
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        for balancer in config.balancers.values():
            for member in balancer.members:
                if not _startMember(children, member):
                    return 1
        addresses = _balancerAddresses(config)
        for what, kind, interface, port in addresses:
            problem = _bindProblem(what, kind, interface, port)
            if problem is not None:
                _say(problem)
                return 1
        twistd = _start(children, ["-c", TWISTD, "-n", "--pidfile=", "playbalancer", "--config", configPath])
        if not _waitListening(twistd, addresses):
            return 1
        print(summary(config), flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        _say("a demo process exited; stopping the others")
        return 1
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        _stopAll(children)
