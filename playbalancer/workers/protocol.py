"""
What parent and workers say to each other (see L{playbalancer.workers}):
the timings of the two loops, and the AMP commands besides the
L{playbalancer.bigmessages} messages C{"state"} and C{"report"}.
"""

from __future__ import annotations

from twisted.protocols import amp

#: Seconds between a worker's reports.
REPORT_INTERVAL = 0.5
#: Seconds between the parent's checks for state to push.
PUSH_INTERVAL = 0.1
#: Seconds before a worker that died is started again.
RESTART_DELAY = 0.5


class Reopen(amp.Command):
    """
    Reopen the access logs.
    """

    arguments = []
    response = []


class Retire(amp.Command):
    """
    Another worker (or process) takes over: stop accepting now (answered
    once stopped), and on the C{SIGTERM} that follows let idle keep-alive
    connections have their next request answered before they close.
    """

    arguments = []
    response = []
