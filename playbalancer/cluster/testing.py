"""
Moved to L{playbalancer.testing.etcd}; the old name still imports it.
"""

from playbalancer.testing.etcd import EtcdCluster

__all__ = ["EtcdCluster"]
