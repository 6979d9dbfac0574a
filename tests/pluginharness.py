"""
Child processes for the scheduler plugin examples under C{examples/}: each
is put on C{PYTHONPATH} of a child (nothing is installed), which lists the
schedulers, runs a script, or runs C{twistd playbalancer} in front of real
member web servers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

from twisted.internet import defer, protocol, reactor
from twisted.internet.task import deferLater
from twisted.protocols.policies import WrappingFactory

from playbalancer.testing import freePort

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")

#: Runs twistd with this interpreter.
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"

BUILTINS = {"standby", "round-robin", "least-conn", "peak-ewma", "hash"}

#: Upper bound for any child process that is expected to finish by itself.
CHILD_TIMEOUT = 60

LIST_SCHEDULERS = (
    "import json; from playbalancer.schedulers import availableSchedulers; "
    "print(json.dumps(sorted(availableSchedulers())))"
)


def childEnv(*paths, around=((), ())):
    """
    The environment of a child: C{paths}, then this checkout, on
    C{PYTHONPATH}; no bytecode files (the dropin tests rewrite sources).

    @param around: C{(before, after)}, directories put before and after
        those (see L{installedPlugins}).
    """
    before, after = around
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(list(before) + list(paths) + [REPO] + list(after))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


#: The dropin of a third-party scheduler that is not one of the examples.
OTHER_DROPIN = """\
from playbalancer.schedulers import RoundRobinScheduler, SchedulerFactory

other = SchedulerFactory("other-installed", "Someone else's scheduler.", RoundRobinScheduler)
"""


def installedPlugins(case):
    """
    C{around} for L{childEnv} that makes a child look like it runs in a
    virtualenv where both examples and one more scheduler are installed
    (C{pip install}, not editable): their dropins come before everything
    else, as in Twisted's own C{twisted/plugins} directory, and their
    packages after, as in C{site-packages}.
    """
    root = os.path.abspath(case.mktemp())
    dropins = os.path.join(root, "dropins")
    plugins = os.path.join(dropins, "twisted", "plugins")
    packages = os.path.join(root, "site-packages")
    os.makedirs(plugins)
    os.makedirs(packages)
    for example, package in [("p2c-scheduler", "p2c_scheduler"), ("hash-scheduler", "hash_scheduler")]:
        source = os.path.join(EXAMPLES, example)
        shutil.copytree(
            os.path.join(source, package),
            os.path.join(packages, package),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        shutil.copy(os.path.join(source, "twisted", "plugins", f"{package}_plugin.py"), plugins)
    with open(os.path.join(plugins, "other_scheduler_plugin.py"), "w") as f:
        f.write(OTHER_DROPIN)
    return [dropins], [packages]


def runChild(args, env, cwd):
    """
    Run C{sys.executable args} to completion (bounded).
    """
    return subprocess.run(
        [sys.executable] + list(args),
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=CHILD_TIMEOUT,
    )


def listSchedulers(case, env, cwd):
    """
    The names of the schedulers a child (C{env}, in C{cwd}) finds; it must
    exit cleanly, without a traceback.
    """
    result = runChild(["-c", LIST_SCHEDULERS], env, cwd)
    case.assertEqual(result.returncode, 0, describe(result))
    case.assertNotIn("Traceback", result.stderr, describe(result))
    return set(json.loads(result.stdout.splitlines()[-1]))




def describe(result):
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


class Child(protocol.ProcessProtocol):
    """
    A child process: its output, and whether it has ended.
    """

    def __init__(self):
        self.chunks = []
        self.ended = False
        self.reason = None

    def outReceived(self, data):
        self.chunks.append(data)

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended = True
        self.reason = reason.value

    def output(self):
        return b"".join(self.chunks).decode("utf-8", "replace")


async def waitFor(predicate, seconds, step=0.05):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await deferLater(reactor, step, lambda: None)
    return True


async def stopChild(child, transport):
    """
    SIGTERM the child by its PID, then SIGKILL if it lingers; bounded.
    """
    for sig, grace in [(signal.SIGTERM, 10), (signal.SIGKILL, 5)]:
        if child.ended:
            return
        pid = transport.pid
        if pid is not None:  # None once reaped: never signal a reused PID
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        await waitFor(lambda: child.ended, grace)


def configErrorLine(case, balancerTable, pythonPath):
    """
    Run C{twistd playbalancer} (C{pythonPath} first on C{PYTHONPATH}) with
    a config whose C{[balancer.web]} table is C{balancerTable} (sub-tables
    allowed), which must be refused: a non-zero exit, no traceback, one
    line on stderr, which is returned.
    """
    cwd = os.path.abspath(case.mktemp())
    os.makedirs(cwd)
    config = os.path.join(cwd, "playbalancer.toml")
    with open(config, "w") as f:
        f.write(
            textwrap.dedent(
                f"""\
                [[listen]]
                endpoint = "tcp:{freePort()}:interface=127.0.0.1"
                balancer = "web"

                [balancer.web]
                """
            )
            + textwrap.dedent(balancerTable)
            + textwrap.dedent(
                """
                [[balancer.web.member]]
                name = "app1"
                url = "http://127.0.0.1:9"
                """
            )
        )
    args = ["-c", TWISTD, "-n", "--pidfile=", "playbalancer", "--config", config]
    result = runChild(args, childEnv(pythonPath), cwd)
    case.assertNotEqual(result.returncode, 0, describe(result))
    case.assertNotIn("Traceback", result.stdout + result.stderr, describe(result))
    lines = result.stderr.splitlines()
    case.assertEqual(len(lines), 1, describe(result))
    return lines[0]


def startDemoMember(case, name):
    """
    A demo web server named C{name} on 127.0.0.1 (its C{port} set), stopped
    when C{case} cleans up.  Its pages say C{"Hello from <name> "}.
    """
    from playbalancer.demo import DemoInstance

    instance = DemoInstance(name, 0, reactor)
    wrapper = WrappingFactory(instance.site())
    port = reactor.listenTCP(0, wrapper, interface="127.0.0.1")
    instance.port = port.getHost().port

    async def stop():
        await port.stopListening()
        # The balancer is gone by now (cleanups run last-in first-out);
        # its connections to us end shortly.
        if not await waitFor(lambda: not wrapper.protocols, 5):
            for p in list(wrapper.protocols):
                p.transport.abortConnection()
            await waitFor(lambda: not wrapper.protocols, 5)

    case.addCleanup(lambda: defer.ensureDeferred(stop()))
    return instance


def servedBy(body, members):
    """
    The name of the demo member that wrote C{body} (text), or L{None}.
    """
    for member in members:
        if f"Hello from {member.name} " in body:
            return member.name
    return None


class TwistdBalancer:
    """
    C{twistd playbalancer} in a child, with one balancer C{web} listening on
    127.0.0.1, and a persistent client for it.

    @ivar url: the balancer's root URL.
    @ivar client: a L{treq.client.HTTPClient}.
    """

    def __init__(self, case, child, transport, url, client):
        self.case = case
        self.child = child
        self.transport = transport
        self.url = url
        self.client = client

    @classmethod
    async def start(cls, case, balancerTable, members, pythonPath):
        """
        Write a config with C{balancerTable} (the body of
        C{[balancer.web]}, sub-tables allowed) followed by C{members} (demo
        members), run twistd with C{pythonPath} first on C{PYTHONPATH}, and
        wait until the balancer answers; it is stopped when C{case} cleans
        up.
        """
        from treq.client import HTTPClient
        from twisted.web.client import Agent, HTTPConnectionPool

        cwd = os.path.abspath(case.mktemp())
        os.makedirs(cwd)
        listen = freePort()
        config = os.path.join(cwd, "playbalancer.toml")
        memberTables = "".join(
            f'\n[[balancer.web.member]]\nname = "{m.name}"\nurl = "http://127.0.0.1:{m.port}"\n'
            for m in members
        )
        with open(config, "w") as f:
            f.write(
                f'[[listen]]\nendpoint = "tcp:{listen}:interface=127.0.0.1"\nbalancer = "web"\n\n'
                "[balancer.web]\n" + balancerTable + memberTables
            )

        pool = HTTPConnectionPool(reactor, persistent=True)
        case.addCleanup(pool.closeCachedConnections)
        client = HTTPClient(Agent(reactor, pool=pool))

        child = Child()
        args = [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "playbalancer", "--config", config]
        transport = reactor.spawnProcess(
            child, sys.executable, args, env=childEnv(pythonPath), path=cwd
        )
        case.addCleanup(lambda: defer.ensureDeferred(stopChild(child, transport)))

        url = f"http://127.0.0.1:{listen}/"
        deadline = time.monotonic() + 20
        while True:
            if child.ended:
                case.fail(f"twistd ended early ({child.reason}):\n{child.output()}")
            try:
                response = await client.get(url, timeout=2)
                await response.content()
                break
            except Exception:
                if time.monotonic() > deadline:
                    case.fail(f"twistd did not answer on {url} in 20 s:\n{child.output()}")
                await deferLater(reactor, 0.1, lambda: None)
        return cls(case, child, transport, url, client)

    async def stopCleanly(self):
        """
        Stop twistd; it must end, with nothing alarming in its log.
        """
        await stopChild(self.child, self.transport)
        self.case.assertTrue(self.child.ended, "twistd did not stop")
        log = self.child.output()
        for bad in ["Traceback", "Unhandled Error", "CRITICAL"]:
            self.case.assertNotIn(bad, log, log)
