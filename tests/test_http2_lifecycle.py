"""
HTTP/2 clients through the balancer's own lifecycle, on real C{twistd
playbalancer} processes: an upgrade closes their connections with a
graceful GOAWAY, the streams under way finish, and new connections go to
the new process.
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.task import deferLater

from playbalancer.testing import MemberServer, freePorts, waitUntil, writeSelfSigned
from playbalancer.testing.twistd import TwistdTestCase

from tests.h2client import connectH2
from tests.test_upgrade_processes import _CLI, endProcess


class UpgradeWithHTTP2Tests(_CLI, TwistdTestCase):
    timeout = 120

    async def test_streamInFlightFinishesAcrossAnUpgrade(self):
        member = MemberServer("app1", reactor).start()
        self.addCleanup(member.stop)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        key, cert = writeSelfSigned(directory)
        front, manager = freePorts(2)
        self.manager = f"http://127.0.0.1:{manager}"
        self.startTwistd(
            oneBalancer(
                f"ssl:{front}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
                member,
                manager,
                top="shutdown_grace = 30",
            )
        )
        client = await connectWhenUp(front)
        self.addCleanup(_abort, client)
        held = client.request(b"GET", b"/hold")
        await waitUntil(lambda: member.hold.held, reactor, timeout=10)

        code, out, err = await self.command("upgrade")
        self.assertEqual((code, err), (0, ""), out)
        newPid = int(out.split("PID ")[1].split(")")[0])
        self.addCleanup(endProcess, newPid)
        # The old process says goodbye in two steps, refusing no stream it
        # took; the stream under way finishes.
        await waitUntil(lambda: len(client.goAways()) == 2, reactor, timeout=30)
        self.assertEqual(client.goAways(), [(2**31 - 1, 0), (held.streamId, 0)])
        member.hold.release()
        await held.done
        self.assertEqual((held.status, held.body), (200, b"released\n"))
        await client.lost
        # A new connection is served (by the new process), and the old one
        # exits once its last connection is closed.
        again = await connectWhenUp(front)
        self.addCleanup(_abort, again)
        response = again.request(b"GET", b"/")
        await response.done
        self.assertEqual(response.status, 200)
        await waitUntil(lambda: not self.child.running(), reactor, timeout=30)


def oneBalancer(endpoint, member, manager, top="", listen=""):
    """
    The config of a balancer C{web} over C{member} (a L{MemberServer}),
    one listener on C{endpoint} (with more C{listen} keys), and the manager
    on port C{manager}; C{top}: top-level keys.
    """
    return f"""
{top}

[[listen]]
endpoint = "{endpoint}"
balancer = "web"
{listen}

[balancer.web]
[[balancer.web.member]]
name = "app1"
url = "{member.url}"

[manager]
endpoint = "tcp:{manager}:interface=127.0.0.1"
"""


async def connectWhenUp(port, tls=True):
    """
    An HTTP/2 client connected to the balancer on C{port}, once it listens.
    """
    for _ in range(100):
        try:
            return await connectH2(port, tls=tls)
        except Exception:
            await deferLater(reactor, 0.1, lambda: None)
    raise AssertionError("the balancer never listened")


def _abort(client):
    if not client.closed:
        client.transport.abortConnection()


class WorkersWithHTTP2Tests(_CLI, TwistdTestCase):
    """
    With C{workers = 2}, each worker speaks HTTP/2 on the listener, and a
    reload keeps serving HTTP/2 clients.
    """

    timeout = 120

    async def test_workersServeHTTP2(self):
        member = MemberServer("app1", reactor).start()
        self.addCleanup(member.stop)
        front, manager = freePorts(2)
        self.manager = f"http://127.0.0.1:{manager}"
        self.startTwistd(
            oneBalancer(
                f"tcp:{front}:interface=127.0.0.1",
                member,
                manager,
                top="workers = 2",
                listen='protocols = ["http/1.1", "h2c"]',
            )
        )

        async def get():
            client = await connectWhenUp(front, tls=False)
            self.addCleanup(_abort, client)
            response = client.request(b"GET", b"/")
            await response.done
            return response

        for _ in range(4):
            self.assertEqual((await get()).status, 200)
        code, out, err = await self.command("reload")
        self.assertEqual((code, err), (0, ""), out)
        for _ in range(4):
            self.assertEqual((await get()).status, 200)


class AccessLogAtStopTests(_CLI, TwistdTestCase):
    """
    A request that finishes during a graceful stop (after the access log's
    own service has stopped) still gets its line: lines were lost that way
    at every stop and upgrade.
    """

    timeout = 120

    async def test_requestFinishingDuringStopIsLogged(self):
        import signal

        member = MemberServer("app1", reactor).start()
        self.addCleanup(member.stop)
        front, manager = freePorts(2)
        log = os.path.abspath(self.mktemp())
        self.manager = f"http://127.0.0.1:{manager}"
        self.startTwistd(
            oneBalancer(
                f"tcp:{front}:interface=127.0.0.1",
                member,
                manager,
                top="shutdown_grace = 30",
                listen=f'protocols = ["http/1.1", "h2c"]\naccess_log = "{log}"',
            )
        )
        client = await connectWhenUp(front, tls=False)
        self.addCleanup(_abort, client)
        held = client.request(b"GET", b"/hold")
        await waitUntil(lambda: member.hold.held, reactor, timeout=10)
        self.child.process.send_signal(signal.SIGTERM)
        await waitUntil(lambda: client.goAways(), reactor, timeout=30)
        member.hold.release()
        await held.done
        self.assertEqual(held.status, 200)
        await waitUntil(lambda: not self.child.running(), reactor, timeout=30)
        with open(log) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn('"GET /hold HTTP/2.0" 200', lines[0])
