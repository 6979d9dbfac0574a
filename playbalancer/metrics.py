"""
Moved to L{playbalancer.observe.metrics}; the old name still imports it.
"""

from playbalancer.observe.metrics import BalancerCollector, MetricsPage, registryFor

__all__ = ["BalancerCollector", "registryFor", "MetricsPage"]
