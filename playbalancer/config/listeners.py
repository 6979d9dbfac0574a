"""
The C{[[listen]]} tables and the C{[manager]} table.
"""

from __future__ import annotations

import ipaddress
import re

from playbalancer.config.model import (
    DEFAULT_ALLOW,
    DEFAULT_MANAGER_ENDPOINT,
    ListenConfig,
    ManagerConfig,
)
from playbalancer.config.routes import checkRoutes, routeTable, shorthandRoutes
from playbalancer.config.tls import listenerCertificates
from playbalancer.config.values import (
    NAME,
    ConfigError,
    _Table,
    _array,
    _atLeast,
    _bool,
    _count,
    _endpoint,
    _name,
    _positiveSeconds,
    _rate,
    _seconds,
    _show,
    _string,
)

def _listener(data, path):
    table = _Table(data, path)
    listener = ListenConfig(
        endpoint=table.get("endpoint", _endpoint, required=True),
        balancer=table.get("balancer", _name),
        preserveHost=table.get("preserve_host", _bool, True),
        maxBody=table.get("max_body", _count, 0),
        managerPath=table.get("manager_path", _urlPath),
        mode=table.get("mode", _mode, "http"),
        acceptProxyProtocol=table.get("accept_proxy_protocol", _bool, False),
        trustedProxies=table.get("trusted_proxies", _cidrList, []),
        accessLog=table.get("access_log", _string),
        headerTimeout=table.get("header_timeout", _positiveSeconds, 10.0),
        idleTimeout=table.get("idle_timeout", _positiveSeconds, 75.0),
        bodyTimeout=table.get("body_timeout", _positiveSeconds, 60.0),
        bodyMinRate=table.get("body_min_rate", _rate, 500.0),
        bodyDeadline=table.get("body_deadline", _seconds, 0.0),
        tunnelIdleTimeout=table.get("tunnel_idle_timeout", _seconds, 3600.0),
        sendTimeout=table.get("send_timeout", _seconds, 60.0),
        bufferSize=table.get("buffer_size", _atLeast(1024), 16384),
        underscoresInHeaders=table.get("underscores_in_headers", _bool, False),
        maxConnections=table.get("max_connections", _count, 10000),
        maxRequestLine=table.get("max_request_line", _atLeast(256), 8192),
        maxHeaderLine=table.get("max_header_line", _atLeast(256), 8192),
        maxHeaderBytes=table.get("max_header_bytes", _atLeast(1024), 65536),
        maxHeaders=table.get("max_headers", _atLeast(8), 100),
        maxConcurrentStreams=table.get("max_concurrent_streams", _atLeast(1, 2**31 - 1), 100),
    )
    listener.protocols = table.get("protocols", _protocols, None)
    rawRoutes = table.get("route", _array, [])
    listener.certificates = listenerCertificates(table, path, listener.endpoint)
    table.done()
    if listener.mode == "tcp":
        if rawRoutes:
            raise ConfigError(table.at("route"), "not available in tcp mode")
        if listener.balancer is None:
            raise ConfigError(table.at("balancer"), "missing")
    elif listener.balancer is None and not rawRoutes:
        raise ConfigError(
            table.at("balancer"), "missing (or give the listener [[listen.route]] tables)"
        )
    routes = [routeTable(item, f"{path}.route[{i}]", i) for i, item in enumerate(rawRoutes)]
    listener.routes = routes + shorthandRoutes(listener)
    checkRoutes(listener.routes, path, len(routes))
    _checkProtocols(listener, table)
    if listener.acceptProxyProtocol and listener.endpoint.split(":")[0] == "ssl":
        # The PROXY line comes before TLS on the wire; an ssl: endpoint
        # would look for it inside TLS.
        raise ConfigError(
            table.at("accept_proxy_protocol"), "not available on ssl: listeners yet"
        )
    return listener


#: What a listener may speak: HTTP/2 over TLS (by ALPN), HTTP/1.1, and
#: cleartext HTTP/2 with prior knowledge.
PROTOCOLS = ("h2", "http/1.1", "h2c")


def _protocols(value, path):
    if not isinstance(value, list) or not value:
        raise ConfigError(path, f"expected a non-empty array of protocols, got {_show(value)}")
    for index, item in enumerate(value):
        if item not in PROTOCOLS:
            raise ConfigError(
                f"{path}[{index}]",
                f"expected one of {', '.join(map(repr, PROTOCOLS))}, got {_show(item)}",
            )
        if item in value[:index]:
            raise ConfigError(f"{path}[{index}]", f"{item!r} twice")
    return tuple(value)


def _checkProtocols(listener, table):
    """
    Default a listener's C{protocols} (HTTP/2 and HTTP/1.1 on TLS, HTTP/1.1
    on cleartext), and check that they fit its endpoint.
    """
    from playbalancer import http2

    tls = listener.endpoint.split(":")[0] == "ssl"
    if listener.protocols is None:
        offersHTTP2 = tls and listener.mode == "http" and http2.available()
        listener.protocols = ("h2", "http/1.1") if offersHTTP2 else ("http/1.1",)
        return
    if listener.mode == "tcp":
        raise ConfigError(table.at("protocols"), "not available in tcp mode")
    if tls and "h2c" in listener.protocols:
        raise ConfigError(table.at("protocols"), "h2c is cleartext HTTP/2: use h2 on an ssl: listener")
    if not tls and "h2" in listener.protocols:
        raise ConfigError(
            table.at("protocols"), "h2 is negotiated by TLS: use h2c on a cleartext listener"
        )
    if ("h2" in listener.protocols or "h2c" in listener.protocols) and not http2.available():
        raise ConfigError(table.at("protocols"), http2.INSTALL_HINT)


def _mode(value, path):
    if value not in ("http", "tcp"):
        raise ConfigError(path, f"expected \"http\" or \"tcp\", got {_show(value)}")
    return value


def _urlPath(value, path):
    _string(value, path)
    segments = value.strip("/").split("/")
    if not value.startswith("/") or not all(NAME.match(s) for s in segments):
        raise ConfigError(
            path, f"expected a path like '/balancer-manager', got {value!r}"
        )
    return "/" + "/".join(segments)


def _hostList(value, path):
    if not isinstance(value, list):
        raise ConfigError(path, f"expected an array of host names, got {_show(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not re.match(r"[A-Za-z0-9.-]{1,253}\Z", item):
            raise ConfigError(f"{path}[{index}]", f"expected a host name, got {_show(item)}")
    return list(value)


def _cidrList(value, path):
    if not isinstance(value, list) or not value:
        raise ConfigError(path, f"expected a non-empty array of addresses, got {_show(value)}")
    for index, item in enumerate(value):
        _cidr(item, f"{path}[{index}]")
    return list(value)


def _cidr(value, path):
    _string(value, path)
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ConfigError(path, f"expected an address or CIDR network, got {value!r}")
    return value


def _manager(data, path):
    table = _Table(data, path)
    manager = ManagerConfig(
        endpoint=table.get("endpoint", _endpoint, DEFAULT_MANAGER_ENDPOINT),
        allow=table.get("allow", _cidrList, list(DEFAULT_ALLOW)),
        tokenFile=table.get("token_file", _string),
        stateFile=table.get("state_file", _string),
        allowedHosts=table.get("allowed_hosts", _hostList, []),
        metricsEndpoint=table.get("metrics_endpoint", _endpoint),
    )
    table.done()
    return manager
