"""
playbalancer's balancers inside your own Twisted application: read the
C{[balancer.*]} tables of a config file and get, by name, the proxies that
L{playbalancer.resource.ReverseProxyResource} serves, with their health
checks and member pools run by one L{IService}::

    balancers = loadBalancers("app.toml", reactor)
    balancers.setServiceParent(application)        # or startService()
    root.putChild(b"app", ReverseProxyResource(balancers["mycluster"]))

The file is checked as C{twistd playbalancer} checks it; C{[[listen]]}
tables, if any, are checked but not listened on (your C{Site} is the
listener), and a C{[manager]} table is not served.
"""

from __future__ import annotations

from twisted.application.service import MultiService

from playbalancer.assembly import buildBalancers, buildPools, makeProxy
from playbalancer.config import ConfigError, loadConfig  # noqa: F401 (ConfigError: raised)
from playbalancer.schedulers import availableSchedulers
from playbalancer.sweeper import Sweeper


class EmbeddedBalancers(MultiService):
    """
    The balancers of one config, as an L{IService} (health checks run and
    member pools stay open while it runs) whose C{[name]} is the
    L{playbalancer.http.proxy.HTTPProxy} of balancer C{name} (iterating it
    gives its services, as for any L{MultiService}; L{names} lists the
    balancers).

    @ivar config: the L{playbalancer.config.Config} read.
    """

    def __init__(self, config, reactor, schedulers=None):
        MultiService.__init__(self)
        self.config = config
        if schedulers is None:
            schedulers = availableSchedulers()
        balancers = buildBalancers(config, schedulers, reactor, self)
        pools, _ = buildPools(config, reactor, self, Sweeper(reactor))
        self._proxies = {}
        for name, balancerConfig in config.balancers.items():
            if balancerConfig.mode != "http":
                continue
            self._proxies[name] = makeProxy(balancers[name], pools[name], balancerConfig, reactor)

    def __getitem__(self, name):
        return self._proxies[name]

    def names(self):
        """
        The names of the balancers, as in the config.
        """
        return list(self._proxies)

    def __contains__(self, name):
        return name in self._proxies

    def balancer(self, name):
        """
        The L{playbalancer.balancer.Balancer} called C{name}: its members,
        their state, and the admin controls (C{setAdmin}, C{setWeight}...).
        """
        return self._proxies[name].balancer


def loadBalancers(path, reactor, schedulers=None):
    """
    The balancers of the config file at C{path}.

    @param schedulers: scheduler factories by name (found as plugins if
        not given).
    @raise ConfigError: when the file cannot be read or does not check
        out (the message names the key).
    @return: an L{EmbeddedBalancers}, not started.
    """
    if schedulers is None:
        schedulers = availableSchedulers()
    config = loadConfig(path, schedulers, needListeners=False)
    return EmbeddedBalancers(config, reactor, schedulers)
