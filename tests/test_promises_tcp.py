"""
README promises about TCP mode, proved over real sockets with the service
C{twistd playbalancer} builds from a TOML file (see the audit of
README.rst; the row numbers are its own).
"""

from __future__ import annotations

import json
from collections import Counter

from twisted.internet import reactor

from playbalancer.testing import waitUntil

from tests.promiseharness import ServiceTestCase
from tests.test_tcp import _TCPCase, abortAll


def tcpConfig(members, scheduler="round-robin", manager=False):
    """
    A TCP-mode config: C{members} are C{(name, port, extra TOML lines)}.
    """
    text = f"""
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
mode = "tcp"
balancer = "db"

[balancer.db]
scheduler = "{scheduler}"
"""
    for name, port, extra in members:
        text += f"""
[[balancer.db.member]]
name = "{name}"
url = "tcp://127.0.0.1:{port}"
{extra}
"""
    if manager:
        text += '\n[manager]\nendpoint = "tcp:0:interface=127.0.0.1"\n'
    return text


class _TCPServiceCase(ServiceTestCase, _TCPCase):
    timeout = 60

    async def startTCP(self, members, scheduler="round-robin", manager=False):
        service, ports = await self.startService(tcpConfig(members, scheduler, manager))
        self.port = ports[0].getHost().port
        if manager:
            self.managerURL = f"http://127.0.0.1:{ports[1].getHost().port}"
        self.balancer = service.balancers["db"]
        front = [s for s in service if hasattr(s, "_waitingForPort")][0].factory
        self.relays = front.relays
        self.addCleanup(lambda: abortAll(list(front.relays)))
        return self.balancer

    async def names(self, count, close=True):
        """
        The members that C{count} new connections, one after another, reach.
        """
        names = []
        for _ in range(count):
            client, name = await self.greeting()
            names.append(name)
            if close:
                member = self.balancer.member(name)
                active = member.active
                client.transport.loseConnection()
                await client.closed
                # The relay lets go of the member's side too.
                await waitUntil(lambda: member.active < active, reactor)
        return names

    async def api(self, method, path, body):
        http = self.client(persistent=False)
        response = await http.request(
            method,
            self.managerURL + path,
            data=json.dumps(body).encode(),
            headers={b"Content-Type": [b"application/json"]},
        )
        return response.code, json.loads(await response.content())


class BreakTests(_TCPServiceCase):
    async def test_clientResetClosesTheMemberSide(self):
        """
        #80: a client that resets its connection: the member's connection
        is closed too and nothing stays active.
        """
        db1 = self.startMember("db1")
        await self.startTCP([("db1", db1.port, "")])
        client, name = await self.greeting()
        self.assertEqual(name, "db1")
        client.transport.write(b"ping\n")
        await waitUntil(lambda: b"ping" in client.data, reactor)
        (memberSide,) = db1.connections
        self.assertEqual(self.balancer.member("db1").active, 1)
        client.transport.abortConnection()
        await waitUntil(lambda: memberSide.gone, reactor)
        await waitUntil(lambda: self.balancer.member("db1").active == 0, reactor)
        await waitUntil(lambda: not self.relays, reactor)

    async def test_memberResetClosesTheClientSide(self):
        """
        #80, the reverse: a member that resets: the client's connection is
        closed and nothing stays active.
        """
        db1 = self.startMember("db1")
        await self.startTCP([("db1", db1.port, "")])
        client, _ = await self.greeting()
        (memberSide,) = db1.connections
        memberSide.transport.abortConnection()
        await client.closed
        await waitUntil(lambda: self.balancer.member("db1").active == 0, reactor)
        await waitUntil(lambda: not self.relays, reactor)


class StandbyWeightRuntimeTests(_TCPServiceCase):
    async def test_standbyOnlyWhilePrimaryIsDown(self):
        """
        #83: a C{standby = true} member gets no connection while the
        primary is usable, takes them while it is down or disabled.
        """
        db1, db2 = self.startMember("db1"), self.startMember("db2")
        await self.startTCP(
            [("db1", db1.port, ""), ("db2", db2.port, "standby = true")], manager=True
        )
        self.assertEqual(await self.names(4), ["db1"] * 4)
        code, _ = await self.api("POST", "/api/balancers/db/members/db1", {"admin": "disabled"})
        self.assertEqual(code, 200)
        self.assertEqual(await self.names(2), ["db2"] * 2)
        await self.api("POST", "/api/balancers/db/members/db1", {"admin": "enabled"})
        self.assertEqual(await self.names(2), ["db1"] * 2)
        await db1.stop()
        self.assertEqual(await self.names(3), ["db2"] * 3)
        self.assertEqual(self.balancer.member("db1").downReason, "connection refused")

    async def test_weights(self):
        """
        #83: weights 3:1 share 8 connections 6:2.
        """
        db1, db2 = self.startMember("db1"), self.startMember("db2")
        await self.startTCP([("db1", db1.port, "weight = 3"), ("db2", db2.port, "weight = 1")])
        self.assertEqual(Counter(await self.names(8)), {"db1": 6, "db2": 2})

    async def test_memberAddedThroughTheAPI(self):
        """
        #83: a member added at run time with the manager's C{PUT} gets
        connections; one removed with C{DELETE} gets no more.
        """
        db1, db2 = self.startMember("db1"), self.startMember("db2")
        await self.startTCP([("db1", db1.port, "")], manager=True)
        self.assertEqual(await self.names(2), ["db1"] * 2)
        code, member = await self.api(
            "PUT", "/api/balancers/db/members/db2", {"url": f"tcp://127.0.0.1:{db2.port}"}
        )
        self.assertEqual(code, 201, member)
        self.assertEqual(Counter(await self.names(4)), {"db1": 2, "db2": 2})
        self.assertEqual(len(db2.connections), 2)
        code, member = await self.api("DELETE", "/api/balancers/db/members/db1", {})
        self.assertEqual(code, 200, member)
        self.assertEqual(await self.names(3), ["db2"] * 3)


class LeastConnTests(_TCPServiceCase):
    async def test_leastConnAvoidsTheBusierMember(self):
        """
        #84: C{least-conn} counts open connections: while one connection is
        held on a member, the next goes to the other; once it closes, that
        member is the less busy one again.
        """
        db1, db2 = self.startMember("db1"), self.startMember("db2")
        await self.startTCP([("db1", db1.port, ""), ("db2", db2.port, "")], scheduler="least-conn")
        first, busy = await self.greeting()
        other = {"db1": "db2", "db2": "db1"}[busy]
        for _ in range(3):
            self.assertEqual(await self.names(1), [other])
        second, name = await self.greeting()
        self.assertEqual(name, other)
        # Now one each; close the first and its member is the idle one.
        first.transport.loseConnection()
        await first.closed
        await waitUntil(lambda: self.balancer.member(busy).active == 0, reactor)
        for _ in range(3):
            self.assertEqual(await self.names(1), [busy])
        second.transport.loseConnection()
        await second.closed
