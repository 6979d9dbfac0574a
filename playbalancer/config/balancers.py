"""
The C{[balancer.NAME]} tables: a balancer, its members and its health
checks.
"""

from __future__ import annotations

import re

from playbalancer.config.model import (
    DEFAULT_KEEPALIVE,
    DEFAULT_SCHEDULER,
    BalancerConfig,
    HealthConfig,
    MemberConfig,
)
from playbalancer.config.rolling import parseRollingRestart
from playbalancer.config.sticky import parseSticky, route
from playbalancer.config.values import (
    ConfigError,
    _Table,
    _array,
    _bool,
    _caFile,
    _count,
    memberURL,
    filesDigest,
    _name,
    _positiveSeconds,
    _seconds,
    _show,
    _string,
)

def _member(data, path, mode):
    table = _Table(data, path)
    member = MemberConfig(
        name=table.get("name", _name, required=True),
        url=table.get("url", lambda v, p: memberURL(v, p, mode), required=True),
        standby=table.get("standby", _bool, False),
        weight=table.get("weight", _count, 1),
        aliases=table.get("aliases", lambda v, p: _urlList(v, p, mode), []),
        route=table.get("route", route),
    )
    table.done()
    return member


def _checkRoutes(members, path, sticky):
    """
    Routes must name one member each (a member's route is its name unless
    it gives one); with session routes, a route cannot hold a dot (it is
    what follows the last dot of a session id), so a member whose name
    has one needs a route of its own.
    """
    routes = sticky is not None and not sticky.insertsCookie
    seen = {}
    for index, member in enumerate(members):
        key = f"{path}.member[{index}]." + ("route" if member.route else "name")
        name = member.route or member.name
        if routes and "." in name:
            raise ConfigError(key, f"{name!r} has a dot, so no session id can end in it: give this member a route")
        if name in seen:
            raise ConfigError(key, f"route {name!r} is also member {seen[name]!r}'s")
        seen[name] = member.name


def _urlList(value, path, mode):
    """
    Other URLs that name a member (its redirects may use them): checked as
    member URLs are.
    """
    _array(value, path)
    return [memberURL(item, f"{path}[{index}]", mode) for index, item in enumerate(value)]


def _balancer(name, data, path, schedulers, mode="http"):
    table = _Table(data, path)
    scheduler = table.get("scheduler", _string, DEFAULT_SCHEDULER)
    if schedulers is not None and scheduler not in schedulers:
        known = ", ".join(sorted(schedulers))
        raise ConfigError(
            table.at("scheduler"), f"unknown scheduler {scheduler!r} (known: {known})"
        )
    options = table.get("scheduler_options", lambda v, p: dict(_Table(v, p)._data), {})
    rawMembers = table.get("member", _array, required=True)
    members = []
    seen = set()
    for index, item in enumerate(rawMembers):
        member = _member(item, f"{path}.member[{index}]", mode)
        if member.name in seen:
            raise ConfigError(
                f"{path}.member[{index}].name", f"duplicate member name {member.name!r}"
            )
        seen.add(member.name)
        members.append(member)
    if not members:
        raise ConfigError(table.at("member"), "a balancer needs at least one member")
    health = table.get("health", _health)
    balancer = BalancerConfig(
        name=name,
        members=members,
        scheduler=scheduler,
        schedulerOptions=options,
        retry=table.get("retry", _seconds, 60.0),
        timeout=table.get("timeout", _positiveSeconds, 60.0),
        connectTimeout=table.get("connect_timeout", _positiveSeconds, 5.0),
        keepalive=table.get("keepalive", _count, DEFAULT_KEEPALIVE),
        failOnStatus=table.get("failonstatus", _statusList, []),
        sendProxyProtocol=table.get("send_proxy_protocol", _bool, False),
        mode=mode,
        maxConnections=table.get("max_connections_per_member", _count, 0),
        queue=table.get("queue", _count, 128),
        queueTimeout=table.get("queue_timeout", _positiveSeconds, 10.0),
        health=health,
        tlsCAFile=table.get("tls_ca_file", _caFile),
        tlsVerify=table.get("tls_verify", _bool, True),
        tlsServerName=table.get("tls_server_name", _serverName),
        tlsClientCert=table.get("tls_client_cert", _string),
        tlsClientKey=table.get("tls_client_key", _string),
        retryIdempotencyKey=table.get("retry_idempotency_key", _bool, False),
        sticky=table.get("sticky", lambda v, p: parseSticky(v, p, mode)),
        rollingRestart=table.get(
            "rolling_restart", lambda v, p: parseRollingRestart(v, p, health is not None)
        ),
    )
    table.done()
    _checkRoutes(members, path, balancer.sticky)
    _checkClientCertificate(balancer, table)
    balancer.tlsFiles = filesDigest(
        balancer.tlsCAFile, balancer.tlsClientCert, balancer.tlsClientKey
    )
    return balancer


def _serverName(value, path):
    """
    A host name or an IP address, to send by SNI and check in members'
    certificates.
    """
    from playbalancer._net.tlsclient import isAddress

    _string(value, path)
    if isAddress(value):
        return value
    labels = value.split(".")
    if len(value) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ConfigError(path, f"expected a host name or an IP address, got {value!r}")
    return value


_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def _checkClientCertificate(balancer, table):
    """
    The client certificate and key must be readable, and belong together.
    """
    from playbalancer.membertls import ClientCertificate, ClientCertificateError

    if balancer.tlsClientCert is None:
        if balancer.tlsClientKey is not None:
            raise ConfigError(table.at("tls_client_key"), "needs tls_client_cert")
        return
    try:
        ClientCertificate.load(balancer.tlsClientCert, balancer.tlsClientKey)
    except ClientCertificateError as e:
        raise ConfigError(table.at(f"tls_client_{e.which}"), str(e)) from None


def _statusList(value, path):
    if not isinstance(value, list):
        raise ConfigError(path, f"expected an array of HTTP statuses, got {_show(value)}")
    for index, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or not 100 <= item <= 599:
            raise ConfigError(f"{path}[{index}]", f"expected an HTTP status, got {_show(item)}")
    return list(value)


def _atLeastOne(value, path):
    if _count(value, path) < 1:
        raise ConfigError(path, f"expected a whole number >= 1, got {_show(value)}")
    return value


def _expect(value, path):
    from playbalancer.health import parseExpect

    _string(value, path)
    try:
        parseExpect(value)
    except ValueError as e:
        raise ConfigError(path, str(e))
    return value


def _healthPath(value, path):
    _string(value, path)
    if not value.startswith("/") or any(c in value for c in " \t\r\n#"):
        raise ConfigError(path, f"expected a path starting with '/', got {value!r}")
    try:
        value.encode("ascii")
    except UnicodeEncodeError:
        raise ConfigError(path, f"expected an ASCII path, got {value!r}")
    return value


def _health(data, path):
    table = _Table(data, path)
    health = HealthConfig(
        path=table.get("path", _healthPath, "/health"),
        interval=table.get("interval", _positiveSeconds, 2.0),
        timeout=table.get("timeout", _positiveSeconds, 1.0),
        rise=table.get("rise", _atLeastOne, 2),
        fall=table.get("fall", _atLeastOne, 3),
        expect=table.get("expect", _expect, "200-399"),
        slowstart=table.get("slowstart", _seconds, 0.0),
    )
    table.done()
    return health
