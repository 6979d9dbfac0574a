"""
playbalancer: an HTTP and TCP load balancer built on Twisted.

The pieces, each in a module or package of its own:

- L{playbalancer.config}: TOML configuration, validated into plain objects;
- L{playbalancer.balancer}: members, their state and counters, and the choice
  of the usable candidates for a request;
- L{playbalancer.memberhealth}: members going down and coming back, from
  how attempts on them end and what their health checks say;
- L{playbalancer.schedulers}: the built-in schedulers and plugin lookup;
- L{playbalancer.http}: the HTTP data path (client faces, one request's
  life, member connections and their pools, the strict parsers), and
  L{playbalancer.resource}, the proxy as a twisted.web resource;
- L{playbalancer._net}: the socket shortcuts that reach into Twisted's
  transports, with the private attributes they use named in
  L{playbalancer._net.internals};
- L{playbalancer.tcp}: TCP mode;
- L{playbalancer.workers}, L{playbalancer.cluster}: several processes, and
  several nodes;
- L{playbalancer.embed}: balancers for your own Twisted application;
- L{playbalancer.manager}: the manager page and JSON API;
- L{playbalancer.observe}: counters, Prometheus metrics, the access log;
- L{playbalancer.ctl}: the C{playbalancer} command and its API client;
- L{playbalancer.tap}: the C{twistd playbalancer} service;
- L{playbalancer.testing}: test doubles (members, clients, an exchange
  without sockets, a twistd child, etcd, certificates);
- L{playbalancer.starter}: the starter config.
"""

from playbalancer._version import __version__

__all__ = ["__version__"]
