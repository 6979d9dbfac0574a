"""
Publishes the "rendezvous" scheduler to playbalancer as a Twisted plugin.
"""

from hash_scheduler import hashScheduler

__all__ = ["hashScheduler"]
