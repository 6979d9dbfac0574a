"""
A balancer started from a TOML config in this process, on the real
reactor, with demo members on 127.0.0.1: for tests of routes.
"""

from __future__ import annotations


import treq

from twisted.internet import reactor
from playbalancer.testing.client import rawExchange
from tests.promiseharness import startConfigService
from tests.proxyharness import ProxyTestCase


class RoutedTestCase(ProxyTestCase):
    """
    Starts members (L{ProxyTestCase.startMembers}) and a balancer from a
    config; cleans all up.
    """

    async def startConfig(self, text):
        """
        Run C{twistd playbalancer --config} on C{text} in this process.

        @return: the service; C{self.port} is the first listener's port.
        """
        service, self.ports = await startConfigService(self, text)
        self.port = self.ports[0].getHost().port
        self.base = f"http://127.0.0.1:{self.port}"
        self.service = service
        return service

    async def get(self, path, host=None, method="GET", **kwargs):
        """
        One request with I{Host} C{host}: the response and its body.
        """
        headers = kwargs.pop("headers", {})
        if host is not None:
            headers[b"Host"] = [host.encode("ascii")]
        response = await self.client(persistent=False).request(
            method, self.base + path, headers=headers, allow_redirects=False, **kwargs
        )
        return response, await treq.content(response)

    async def raw(self, data):
        """
        Raw bytes to the listener; everything until it closes.
        """
        return await rawExchange(reactor, self.port, data)


def members(*servers, balancer="web"):
    """
    The TOML of a balancer over C{servers} (L{MemberServer}s).
    """
    lines = [f"[balancer.{balancer}]"]
    for server in servers:
        lines += [
            f"[[balancer.{balancer}.member]]",
            f'name = "{server.name}"',
            f'url = "{server.url}"',
        ]
    return "\n".join(lines) + "\n"


def servedBy(response):
    return response.headers.getRawHeaders(b"x-served-by", [b"-"])[0].decode()
