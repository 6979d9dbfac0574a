"""
playbalancer: an HTTP and TCP load balancer built on Twisted.

The pieces, each in a module of its own:

- L{playbalancer.config}: TOML configuration, validated into plain objects;
- L{playbalancer.balancer}: members, their state and counters, and the choice
  of the usable candidates for a request;
- L{playbalancer.schedulers}: the built-in schedulers and plugin lookup;
- L{playbalancer.proxy}: the reverse proxy resource (the HTTP data path);
- L{playbalancer.tap}: the C{twistd playbalancer} service.
"""

from playbalancer._version import __version__

__all__ = ["__version__"]
