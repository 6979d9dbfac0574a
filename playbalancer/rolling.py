"""
Moved to L{playbalancer.ctl.rolling}; the old name still imports it.
"""

from playbalancer.ctl.rolling import (
    POLL,
    othersUsable,
    restartOrder,
    rollingRestart,
    runCommand,
    waitHealthy,
)

__all__ = ["POLL", "restartOrder", "othersUsable", "runCommand", "waitHealthy", "rollingRestart"]
