"""
The C{twistd playbalancer} plugin.  Kept import-light: the service module is
imported only when the plugin is used.
"""

from twisted.application.service import ServiceMaker

playbalancer = ServiceMaker(
    "playbalancer",
    "playbalancer.tap",
    "HTTP/TCP load balancer with pluggable schedulers and hot standby.",
    "playbalancer",
)
