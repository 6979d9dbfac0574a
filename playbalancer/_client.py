"""
Connections to members: Twisted's L{Agent} over a persistent
L{HTTPConnectionPool}, with one cached endpoint per member address.
"""

from __future__ import annotations

import socket

from zope.interface import implementer

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.web.client import Agent, HTTPConnectionPool, _HTTP11ClientFactory
from twisted.web.iweb import IAgentEndpointFactory

from playbalancer.headers import connectionTokens


class _QuietClientFactory(_HTTP11ClientFactory):
    """
    No "Starting factory" log line for every new member connection.
    """

    noisy = False


@implementer(IAgentEndpointFactory)
class MemberEndpoints:
    """
    One endpoint per C{(scheme, host, port)}, built once.

    Twisted's standard factory builds a new L{HostnameEndpoint} (with IDNA
    checks) for every request; members are few and fixed, so cache them.
    IP literals get a plain TCP endpoint: no name resolution at all.
    """

    def __init__(self, reactor, connectTimeout):
        self._reactor = reactor
        self._connectTimeout = connectTimeout
        self._endpoints = {}

    def endpointForURI(self, uri):
        return self._cached(uri.scheme, uri.host, uri.port)

    def forMember(self, member):
        """
        The endpoint for a member (TCP mode connects with it directly).
        """
        return self._cached(
            member.scheme.encode("ascii"), member.host.encode("ascii"), member.port
        )

    def _cached(self, scheme, host, port):
        key = (scheme, host, port)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = self._endpoints[key] = self._build(*key)
        return endpoint

    def _build(self, scheme, host, port):
        hostText = host.decode("ascii")
        if isIPAddress(hostText):
            endpoint = TCP4ClientEndpoint(
                self._reactor, hostText, port, timeout=self._connectTimeout
            )
        elif isIPv6Address(hostText):
            endpoint = TCP6ClientEndpoint(
                self._reactor, hostText, port, timeout=self._connectTimeout
            )
        else:
            endpoint = HostnameEndpoint(
                self._reactor, hostText, port, timeout=self._connectTimeout
            )
        if scheme == b"https":
            from twisted.internet.ssl import optionsForClientTLS

            endpoint = wrapClientTLS(optionsForClientTLS(hostText), endpoint)
        return endpoint


def closedByPeer(connection):
    """
    Whether an idle pooled connection was closed (or reset, or spoken on)
    by the member while it sat in the pool, though the reactor has not
    noticed yet: a peek at its socket, without reading.

    Sending a request on such a connection would fail after it was sent,
    and a POST could not be retried then; a member killed while idle must
    not cost a request.
    """
    try:
        handle = connection.transport.getHandle()
    except AttributeError:
        return False
    if not isinstance(handle, socket.socket):
        return False  # TLS and the like: no peek
    try:
        handle.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False  # nothing to read: alive and idle, as it should be
    except OSError:
        return True
    return True  # EOF, or bytes nobody asked for


class _CheckingPool(HTTPConnectionPool):
    """
    A connection pool that drops idle connections the member has closed
    before it hands one out.
    """

    def getConnection(self, key, endpoint):
        connections = self._connections.get(key)
        while connections and closedByPeer(connections[0]):
            stale = connections.pop(0)
            self._timeouts.pop(stale).cancel()
            stale.transport.abortConnection()
        return HTTPConnectionPool.getConnection(self, key, endpoint)


class MemberConnector:
    """
    Sends requests to members over pooled HTTP/1.1 connections.

    @param endpoints: a L{MemberEndpoints}.
    @param maxIdlePerMember: idle connections kept open per member.
    @param idleTimeout: seconds an idle pooled connection is kept.
    """

    def __init__(self, reactor, endpoints, maxIdlePerMember=64, idleTimeout=30.0):
        self._pool = _CheckingPool(reactor, persistent=True)
        self._pool._factory = _QuietClientFactory
        self._pool.maxPersistentPerHost = maxIdlePerMember
        self._pool.cachedConnectionTimeout = idleTimeout
        self._agent = Agent.usingEndpointFactory(reactor, endpoints, self._pool)

    def request(self, member, method, target, headers, bodyProducer):
        """
        Send one request to C{member}.

        @param target: the origin-form request target (path and query) as
            bytes; the member's base path is put in front of it.
        @return: a L{Deferred} firing with an L{IResponse}.
        """
        return self._agent.request(
            method, member.origin + member.basePath + target, headers, bodyProducer
        )

    def close(self):
        """
        Close the idle pooled connections.
        """
        return self._pool.closeCachedConnections()


def connectionListedHeaders(response):
    """
    The header names a member listed in its response's C{Connection}
    header (hop-by-hop headers of its own), lower-cased.

    L{Agent} keeps C{Connection} apart from L{IResponse.headers}, in its
    parser; this reaches for it there, and gives an empty set if a Twisted
    release keeps it elsewhere (a test covers the behaviour).
    """
    try:
        protocol = response._transport._producer.protocol
        protocol = getattr(protocol, "_wrappedProtocol", protocol)
        values = protocol._parser.connHeaders.getRawHeaders(b"connection", [])
    except AttributeError:
        return frozenset()
    return connectionTokens(values) - {b"close", b"keep-alive"}
