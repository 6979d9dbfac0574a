"""
Cluster mode: several playbalancer nodes share admin state through a
distributed store (etcd), so a drain on any node drains the whole tier.
"""
