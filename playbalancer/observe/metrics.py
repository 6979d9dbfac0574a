"""
Prometheus metrics, made with prometheus_client at scrape time from the
plain counters the balancer keeps (L{playbalancer.observe.stats}): nothing
on the request path touches prometheus_client.
"""

from __future__ import annotations

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import CollectorRegistry
from twisted.web.resource import IResource
from zope.interface import implementer

from playbalancer.balancer import ADMIN_STATES
from playbalancer.observe.stats import FAILURE_KINDS

__all__ = ["BalancerCollector", "registryFor", "MetricsPage"]

_PREFIX = "playbalancer_"


class BalancerCollector:
    """
    Collects every metric of a running balancer.

    @param balancers: C{{name: Balancer}}.
    @param listeners: C{[(name, factory)]} of front listeners; a factory has
        C{openConnections}, C{accepted}, C{rejected} and
        C{refused}.
    """

    def __init__(self, balancers, listeners=()):
        self.balancers = balancers
        self.listeners = listeners

    #: The L{playbalancer.cluster.node.ClusterNode}, in cluster mode.
    cluster = None

    #: Gives the listener configs running now (for their certificates).
    listenerConfigs = staticmethod(lambda: ())

    def collect(self):
        yield from self._members()
        yield from self._balancers()
        yield from self._listeners()
        yield self._certificates()
        if self.cluster is not None:
            up = GaugeMetricFamily(
                _PREFIX + "cluster_store_up",
                "1 while the cluster store is reachable, 0 while degraded.",
                labels=["tier"],
            )
            up.add_metric([self.cluster.tier], 0 if self.cluster.degraded else 1)
            revision = GaugeMetricFamily(
                _PREFIX + "cluster_applied_revision",
                "The last store revision this node applied.",
                labels=["tier"],
            )
            revision.add_metric([self.cluster.tier], self.cluster.revision)
            yield up
            yield revision

    def _members(self):
        labels = ["balancer", "member"]
        requests = CounterMetricFamily(
            _PREFIX + "member_responses", "Member responses by status class.", labels=labels + ["code"]
        )
        failures = CounterMetricFamily(
            _PREFIX + "member_failures", "Failed attempts on a member, by kind.", labels=labels + ["kind"]
        )
        retries = CounterMetricFamily(
            _PREFIX + "member_retries", "Requests sent to another member after this one failed.", labels=labels
        )
        inflight = GaugeMetricFamily(
            _PREFIX + "member_in_flight", "Requests (or connections) in flight.", labels=labels
        )
        bytesIn = CounterMetricFamily(
            _PREFIX + "member_received_bytes", "Bytes received from the member.", labels=labels
        )
        bytesOut = CounterMetricFamily(
            _PREFIX + "member_sent_bytes", "Body bytes sent to the member.", labels=labels
        )
        firstByte = HistogramMetricFamily(
            _PREFIX + "member_first_byte_seconds",
            "Time from sending a request to the member's response head.",
            labels=labels,
        )
        total = HistogramMetricFamily(
            _PREFIX + "member_response_seconds",
            "Time from sending a request to the end of the member's response.",
            labels=labels,
        )
        up = GaugeMetricFamily(
            _PREFIX + "member_up", "1 while the member is healthy, 0 while down.", labels=labels
        )
        admin = GaugeMetricFamily(
            _PREFIX + "member_admin_state", "1 for the member's admin state.", labels=labels + ["state"]
        )
        weight = GaugeMetricFamily(
            _PREFIX + "member_weight", "The member's configured weight.", labels=labels
        )
        for balancerName, balancer in sorted(self.balancers.items()):
            for member in balancer.members:
                key = [balancerName, member.name]
                stats = member.stats
                for code, count in stats.statusClasses.items():
                    requests.add_metric(key + [code], count)
                for kind in FAILURE_KINDS:
                    failures.add_metric(key + [kind], stats.failures[kind])
                retries.add_metric(key, stats.retries)
                inflight.add_metric(key, member.active)
                bytesIn.add_metric(key, member.bytesIn)
                bytesOut.add_metric(key, member.bytesOut)
                firstByte.add_metric(key, stats.firstByte.cumulative(), stats.firstByte.sum)
                total.add_metric(key, stats.total.cumulative(), stats.total.sum)
                up.add_metric(key, 1 if member.healthy else 0)
                for state in ADMIN_STATES:
                    admin.add_metric(key + [state], 1 if member.admin == state else 0)
                weight.add_metric(key, member.configuredWeight)
        return [requests, failures, retries, inflight, bytesIn, bytesOut, firstByte, total, up, admin, weight]

    def _balancers(self):
        unavailable = CounterMetricFamily(
            _PREFIX + "balancer_unavailable",
            "Requests answered 503 because no member was usable.",
            labels=["balancer"],
        )
        for name, balancer in sorted(self.balancers.items()):
            unavailable.add_metric([name], balancer.unavailable)
        return [unavailable]

    def _listeners(self):
        labels = ["listener"]
        open_ = GaugeMetricFamily(
            _PREFIX + "listener_connections", "Client connections open now.", labels=labels
        )
        accepted = CounterMetricFamily(
            _PREFIX + "listener_accepted_connections", "Client connections accepted.", labels=labels
        )
        rejected = CounterMetricFamily(
            _PREFIX + "listener_rejected_connections",
            "Client connections closed at once: over max_connections.",
            labels=labels,
        )
        refused = CounterMetricFamily(
            _PREFIX + "listener_refused_requests",
            "Requests refused as malformed or over a limit (4xx/5xx of our own).",
            labels=labels,
        )
        for name, factory in self.listeners:
            open_.add_metric([name], factory.openConnections)
            accepted.add_metric([name], factory.accepted)
            rejected.add_metric([name], getattr(factory, "rejected", 0))
            refused.add_metric([name], getattr(factory, "refused", 0))
        return [open_, accepted, rejected, refused] + self._routes()

    def _certificates(self):
        from playbalancer.running import listenerName

        expiry = GaugeMetricFamily(
            _PREFIX + "certificate_expiry_timestamp_seconds",
            "When a TLS listener's certificate expires (its notAfter), in seconds since the epoch.",
            labels=["listener", "names"],
        )
        seen = {}
        for listener in self.listenerConfigs():
            certificates = getattr(listener, "certificates", None)
            for certificate in certificates.all if certificates is not None else ():
                key = (listenerName(listener.endpoint), ",".join(certificate.names))
                expires = certificate.notAfter.timestamp()
                # Two with the same names: the one that expires first.
                seen[key] = min(expires, seen.get(key, expires))
        for key, expires in seen.items():
            expiry.add_metric(list(key), expires)
        return expiry

    def _routes(self):
        labels = ["listener", "route"]
        hits = CounterMetricFamily(
            _PREFIX + "route_requests",
            'Requests a route took (route "-": those no route took).',
            labels=labels,
        )
        denied = CounterMetricFamily(
            _PREFIX + "route_denied_requests",
            "Requests a route's allow list refused (403).",
            labels=labels,
        )
        responses = CounterMetricFamily(
            _PREFIX + "route_responses",
            "Responses to a route's requests, by status class (499s count as 4xx).",
            labels=labels + ["code"],
        )
        for name, factory in self.listeners:
            routeCounters = getattr(factory, "routeCounters", None)
            for route, counts in routeCounters() if routeCounters is not None else ():
                hits.add_metric([name, route], counts["hits"])
                denied.add_metric([name, route], counts["denied"])
                for code, count in sorted(counts["responses"].items()):
                    responses.add_metric([name, route, code], count)
        return [hits, denied, responses]


def registryFor(balancers, listeners=()):
    """
    A fresh L{CollectorRegistry} with a L{BalancerCollector} (as
    C{registry.collector}) and nothing else (no process or platform
    collectors of the default registry).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.collector = BalancerCollector(balancers, listeners)
    registry.register(registry.collector)
    return registry


@implementer(IResource)
class MetricsPage:
    """
    Serves a registry in the Prometheus text format (prometheus_client's
    own exposition), on the reactor thread: the counters are read where
    they are written.
    """

    isLeaf = True

    def __init__(self, registry):
        self.registry = registry

    def render(self, request):
        from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            return b""
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return generate_latest(self.registry)

    # The parts of IResource twisted.web uses for a leaf.
    def getChildWithDefault(self, path, request):
        return self

    def putChild(self, path, child):
        raise NotImplementedError()
