"""
Moved to L{playbalancer.ctl.client}; the old name still imports it.
"""

from playbalancer.ctl.client import (
    POLL_INTERVAL,
    REQUEST_TIMEOUT,
    CommandError,
    ManagerClient,
    ManagerError,
    decodeAnswer,
    findMember,
    networkReason,
    remaining,
    waitDrained,
)

__all__ = [
    "POLL_INTERVAL",
    "REQUEST_TIMEOUT",
    "CommandError",
    "ManagerError",
    "networkReason",
    "decodeAnswer",
    "ManagerClient",
    "findMember",
    "remaining",
    "waitDrained",
]
