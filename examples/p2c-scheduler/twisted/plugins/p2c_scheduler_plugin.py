"""
Publishes the "p2c" scheduler to playbalancer as a Twisted plugin.
"""

from p2c_scheduler import p2c

__all__ = ["p2c"]
