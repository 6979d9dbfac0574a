"""
The C{[cluster]} table: the shared store of cluster mode.
"""

from __future__ import annotations

import re

from playbalancer.config.model import ClusterConfig
from playbalancer.config.values import (
    ConfigError,
    _Table,
    _array,
    _atLeast,
    _caFile,
    _name,
    _positiveSeconds,
    _show,
    _string,
)

def _cluster(data, path):
    import socket

    table = _Table(data, path)
    store = table.get("store", _string, "etcd")
    if store != "etcd":
        raise ConfigError(table.at("store"), f"expected \"etcd\", got {store!r}")
    endpoints = table.get("endpoints", _array, required=True)
    if not endpoints:
        raise ConfigError(table.at("endpoints"), "at least one endpoint is needed")
    for index, endpoint in enumerate(endpoints):
        if not isinstance(endpoint, str) or not re.match(r"https?://[^/\s]+\Z", endpoint):
            raise ConfigError(
                f"{table.at('endpoints')}[{index}]",
                f"expected a URL like http://127.0.0.1:2379, got {_show(endpoint)}",
            )
    cluster = ClusterConfig(
        store=store,
        endpoints=list(endpoints),
        tier=table.get("tier", _name, required=True),
        node=table.get("node", _name, socket.gethostname().split(".")[0][:64] or "node"),
        cacheFile=table.get("cache_file", _string),
        leaseTTL=table.get("lease_ttl", _atLeast(2), 3),
        startupTimeout=table.get("startup_timeout", _positiveSeconds, 5.0),
        user=table.get("user", _string),
        password=table.get("password", _string),
        passwordFile=table.get("password_file", _string),
        caFile=table.get("ca_file", _caFile),
        certFile=table.get("cert_file", _string),
        keyFile=table.get("key_file", _string),
    )
    table.done()
    if cluster.user == "":
        raise ConfigError(table.at("user"), "expected a user name, got ''")
    if cluster.password is not None and cluster.passwordFile is not None:
        raise ConfigError(table.at("password"), "give password or password_file, not both")
    if cluster.user is None:
        for key in ("password", "password_file"):
            if key in data:
                raise ConfigError(table.at(key), "needs user")
    elif cluster.password is None and cluster.passwordFile is None:
        raise ConfigError(table.at("user"), "needs password or password_file")
    if (cluster.certFile is None) != (cluster.keyFile is None):
        missing = "key_file" if cluster.keyFile is None else "cert_file"
        raise ConfigError(table.at(missing), "missing (cert_file and key_file go together)")
    for key in ("ca_file", "cert_file"):
        if key in data and any(not e.startswith("https://") for e in cluster.endpoints):
            raise ConfigError(table.at(key), "only for https:// endpoints")
    if cluster.certFile is not None:
        from playbalancer.cluster.access import loadClientCertificate

        try:
            loadClientCertificate(cluster.certFile, cluster.keyFile)
        except ValueError as e:
            raise ConfigError(table.at("cert_file"), str(e)) from None
    return cluster
