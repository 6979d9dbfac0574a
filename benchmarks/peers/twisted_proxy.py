"""
The floor for HTTP: Twisted's stock C{twisted.web.proxy.ReverseProxyResource}
in front of one member (it has no balancing), as started by
benchmarks/throughput.py::

    python twisted_proxy.py LISTEN_PORT MEMBER_PORT

Two changes from a bare C{Site}, both about logging, not the data path:
C{Site.log} is a no-op (Site formats an access-log line per request even with
no log file), and the per-request proxy client factories are not "noisy" (a
noisy factory logs "Starting factory" twice per request).
"""

import sys

from twisted.internet import reactor
from twisted.web import proxy, server


def main(listenPort, memberPort):
    """
    Listen on 127.0.0.1:C{listenPort} and relay every request to the member on
    127.0.0.1:C{memberPort}.
    """
    proxy.ProxyClientFactory.noisy = False
    site = server.Site(proxy.ReverseProxyResource("127.0.0.1", memberPort, b""))
    site.log = lambda request: None
    reactor.listenTCP(listenPort, site, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
