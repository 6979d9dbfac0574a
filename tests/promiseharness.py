"""
Helpers for the README promise tests: a balancer built by C{makeService}
from a TOML text, in this process, on real sockets.
"""

from __future__ import annotations

import os
import socket

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool


async def startConfigService(case, text):
    """
    Start, for test C{case}, the service C{twistd playbalancer --config}
    builds from the config C{text} (stopped at the test's end).

    @return: the service and its listening ports, in order: the
        C{[[listen]]} ones, then the manager's, then the metrics
        endpoint's.
    """
    from playbalancer.tap import Options, makeService

    path = case.mktemp()
    with open(path, "w") as f:
        f.write(text)
    options = Options()
    options.parseOptions(["--config", os.path.abspath(path)])
    service = makeService(options, reactor)
    service.startService()
    case.addCleanup(service.stopService)
    ports = []
    for child in service:
        if hasattr(child, "_waitingForPort"):
            ports.append(await child._waitingForPort)
    return service, ports


class ServiceTestCase(TestCase):
    """
    Runs C{twistd playbalancer}'s service (C{makeService}) in this process.
    """

    timeout = 60

    async def startService(self, text):
        """
        Start the service of the config C{text}; its listening ports, in
        order: the C{[[listen]]} ones, then the manager's, then the
        metrics endpoint's.
        """
        service, ports = await startConfigService(self, text)
        self.service = service
        return service, ports

    def client(self, persistent=True):
        pool = HTTPConnectionPool(reactor, persistent=persistent)
        self.addCleanup(pool.closeCachedConnections)
        return HTTPClient(Agent(reactor, pool=pool))


def blackHole(case):
    """
    A member address that never accepts a connection: a socket listening
    with a backlog of 0 whose queue is already full, so that the kernel
    drops every further SYN and a connect neither succeeds nor fails.

    @return: C{"http://127.0.0.1:PORT"}.
    """
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(0)
    case.addCleanup(listening.close)
    port = listening.getsockname()[1]
    for _ in range(8):
        filler = socket.socket()
        filler.settimeout(0.3)
        case.addCleanup(filler.close)
        try:
            filler.connect(("127.0.0.1", port))
        except (socket.timeout, OSError):
            return f"http://127.0.0.1:{port}"
    case.skipTest("this kernel accepts connections beyond a full backlog")
