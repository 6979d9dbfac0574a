"""
What a reload would change: the difference between the running config and
a new one (both checked L{playbalancer.config.Config}s), and the changes a
reload cannot make.  Pure: nothing here touches a running balancer (see
L{playbalancer.running} for that).

Identity: a balancer is its name, a member its name within its balancer
(a member whose URL changes is a new member under the old name), a
listener its endpoint string.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from playbalancer.config import ConfigError

#: Balancer settings that the member connection pools are made with: a
#: change gives the balancer new pools (the old ones close once idle).
POOL_SETTINGS = (
    "connectTimeout",
    "keepalive",
    "maxConnections",
    "queue",
    "queueTimeout",
    "tlsCAFile",
    "tlsVerify",
    "tlsServerName",
    "tlsClientCert",
    "tlsClientKey",
    "tlsFiles",
)

#: Member settings a reload applies when the file changes them (a run-time
#: change of one the file leaves alone is kept).
MEMBER_SETTINGS = ("weight", "standby")


@dataclass
class MemberChange:
    """
    A member in both configs under one name: C{changed} lists its
    settings that differ (C{"url"} among them means a new member).
    """

    name: str
    old: object
    new: object
    changed: tuple

    @property
    def replaced(self):
        return "url" in self.changed


@dataclass
class BalancerChange:
    """
    A balancer in both configs: its members added, removed and changed
    (by name), and its own settings that differ.
    """

    name: str
    old: object
    new: object
    added: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    changed: list = field(default_factory=list)
    settings: tuple = ()

    @property
    def newPools(self):
        """
        Whether its member connection pools must be made again.
        """
        return any(name in POOL_SETTINGS for name in self.settings)

    @property
    def any(self):
        return bool(self.added or self.removed or self.changed or self.settings)


@dataclass
class ConfigDiff:
    """
    The difference between two configs (see L{diffConfigs}).
    """

    old: object
    new: object
    balancersAdded: list = field(default_factory=list)
    balancersRemoved: list = field(default_factory=list)
    #: L{BalancerChange}s of the balancers in both, changed or not.
    balancers: list = field(default_factory=list)
    #: Listener configs (new) whose endpoints were not listened on.
    listenersAdded: list = field(default_factory=list)
    #: Listener configs (old) whose endpoints are gone.
    listenersRemoved: list = field(default_factory=list)
    #: C{(old, new)} listener configs on one endpoint.
    listenersKept: list = field(default_factory=list)
    #: The C{[manager]} settings that differ.
    manager: tuple = ()
    #: Whether C{[resolver]} differs.
    resolver: bool = False

    @property
    def listenersChanged(self):
        return [(old, new) for old, new in self.listenersKept if old != new]

    def summary(self):
        """
        One line: what the reload changes, or C{"no changes"}.
        """
        parts = []

        def some(label, names):
            if names:
                parts.append(f"{label} {', '.join(names)}")

        some("balancers added:", self.balancersAdded)
        some("balancers removed:", self.balancersRemoved)
        for change in self.balancers:
            members = (
                [f"+{m}" for m in change.added]
                + [f"-{m}" for m in change.removed]
                + [f"~{m.name}({','.join(m.changed)})" for m in change.changed]
            )
            if members or change.settings:
                what = members + list(change.settings)
                parts.append(f"balancer {change.name}: {' '.join(what)}")
        some("listeners added:", [l.endpoint for l in self.listenersAdded])
        some("listeners removed:", [l.endpoint for l in self.listenersRemoved])
        some("listeners changed:", [new.endpoint for _, new in self.listenersChanged])
        some("manager:", list(self.manager))
        if self.resolver:
            parts.append("resolver")
        return "; ".join(parts) if parts else "no changes"


def _changedFields(old, new, skip=()):
    return tuple(
        f.name
        for f in fields(old)
        if f.name not in skip and getattr(old, f.name) != getattr(new, f.name)
    )


def _memberChanges(old, new):
    oldMembers = {m.name: m for m in old.members}
    newMembers = {m.name: m for m in new.members}
    change = BalancerChange(old.name, old, new)
    change.added = [name for name in newMembers if name not in oldMembers]
    change.removed = [name for name in oldMembers if name not in newMembers]
    for name, member in newMembers.items():
        if name in oldMembers:
            changed = _changedFields(oldMembers[name], member)
            if changed:
                change.changed.append(MemberChange(name, oldMembers[name], member, changed))
    change.settings = _changedFields(old, new, skip=("name", "members"))
    order = [m.name for m in old.members if m.name in newMembers]
    if order != [m.name for m in new.members if m.name in oldMembers]:
        change.settings += ("order",)
    return change


def _port(endpoint):
    return ":".join(endpoint.split(":")[:2])


def diffConfigs(old, new):
    """
    The L{ConfigDiff} from C{old} to C{new}.

    @raise ConfigError: naming the first key whose change a reload cannot
        make (they need a restart).
    """
    diff = ConfigDiff(old, new)
    if new.workers != old.workers:
        raise ConfigError("workers", _RESTART)
    if new.cluster != old.cluster:
        raise ConfigError("cluster", _RESTART)
    if (old.manager is None) != (new.manager is None):
        raise ConfigError("manager", "adding or removing it " + _RESTART)
    if old.manager is not None:
        diff.manager = _changedFields(old.manager, new.manager)
        for name in ("endpoint", "metricsEndpoint", "stateFile"):
            if name in diff.manager:
                raise ConfigError(f"manager.{_snake(name)}", _RESTART)
    diff.resolver = new.resolver != old.resolver
    diff.balancersAdded = [name for name in new.balancers if name not in old.balancers]
    diff.balancersRemoved = [name for name in old.balancers if name not in new.balancers]
    for name, balancer in new.balancers.items():
        if name in old.balancers:
            if balancer.mode != old.balancers[name].mode:
                raise ConfigError(f"balancer.{name}.mode", _RESTART)
            diff.balancers.append(_memberChanges(old.balancers[name], balancer))
    oldListeners = {listener.endpoint: listener for listener in old.listeners}
    newEndpoints = {listener.endpoint for listener in new.listeners}
    oldPorts = {_port(l.endpoint): l for l in old.listeners if l.endpoint not in newEndpoints}
    for index, listener in enumerate(new.listeners):
        before = oldListeners.get(listener.endpoint)
        if before is None:
            if _port(listener.endpoint) in oldPorts:
                raise ConfigError(
                    f"listen[{index}].endpoint",
                    "a running listener's endpoint options cannot change on a reload "
                    "(the port would close for a moment): restart, or use another port",
                )
            diff.listenersAdded.append(listener)
        elif before.mode != listener.mode:
            raise ConfigError(f"listen[{index}].mode", _RESTART)
        elif before.acceptProxyProtocol != listener.acceptProxyProtocol and listener.mode == "http":
            # (It wraps the listening port itself.)
            raise ConfigError(f"listen[{index}].accept_proxy_protocol", _RESTART)
        elif before.protocols != listener.protocols:
            # (ALPN is set on the listening port's TLS context.)
            raise ConfigError(f"listen[{index}].protocols", _RESTART)
        else:
            diff.listenersKept.append((before, listener))
    diff.listenersRemoved = [l for l in old.listeners if l.endpoint not in newEndpoints]
    return diff


_RESTART = "a reload cannot change this; restart to apply it"


def _snake(name):
    return "".join("_" + c.lower() if c.isupper() else c for c in name)
