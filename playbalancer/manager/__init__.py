"""
The manager: a status page, a JSON API and form actions over the
balancers, behind an address allow-list, an optional token and anti-CSRF
protection.  It talks to the balancers through their public methods only.
"""

from playbalancer.manager.root import ManagerRoot

__all__ = ["ManagerRoot"]
