"""
Several worker processes serving the same listeners (C{workers = N}).

The parent process opens the listening sockets and hands them to N worker
processes, which accept from them (the kernel spreads connections); it
keeps running the manager, the health checks and the admin state.  Parent
and workers talk AMP over each worker's standard input and output:

  - C{"state"}, parent to worker: the members of every balancer with their
    admin state, standby flag, weight and (with health checks) health, as
    one versioned snapshot (L{playbalancer.memberstate}'s format, complete),
    pushed within a tenth of a second of a change.  The worker applies it
    through its balancers' methods, as the state file and a cluster node
    do.
  - C{"report"}, worker to parent, twice a second: its counters, its
    requests in flight per member, the latencies of the requests that ended
    since its last report, and the state version it applied.
  - L{Reopen}, parent to worker, on the parent's C{SIGUSR1}: reopen the
    access logs (logrotate's C{postrotate}).

The first two go as L{playbalancer.bigmessages} (compressed, in pieces), so
they may be larger than an AMP value.  The loops that send them log what
goes wrong and go on.

The manager shows the sums.  A drained member counts as idle only once
every worker has applied the drain and has nothing in flight on it.  A
worker that dies is started again; the others keep serving.

The modules:

  - L{playbalancer.workers.supervisor}: the parent's side.
  - L{playbalancer.workers.agent}: the worker's side (the process itself
    is L{playbalancer.worker}, run as C{python -m playbalancer.worker}).
  - L{playbalancer.workers.protocol}: the loops' timings, L{Reopen}.
  - L{playbalancer.workers.counters}: the reports' counters and their sums.
  - L{playbalancer.workers.listening}: the workers' listening sockets.
  - L{playbalancer.workers.limits}: limits divided among the workers.

Every name is importable from here, as when this was one module.
"""

from __future__ import annotations

from playbalancer.workers.agent import WorkerAgent
from playbalancer.workers.counters import memberCounts
from playbalancer.workers.limits import share
from playbalancer.workers.listening import DEFAULT_BACKLOG, endpointAddress, listeningSocket
from playbalancer.workers.protocol import PUSH_INTERVAL, REPORT_INTERVAL, RESTART_DELAY, Reopen
from playbalancer.workers.supervisor import WorkerSupervisor

__all__ = [
    "DEFAULT_BACKLOG",
    "PUSH_INTERVAL",
    "REPORT_INTERVAL",
    "RESTART_DELAY",
    "Reopen",
    "WorkerAgent",
    "WorkerSupervisor",
    "endpointAddress",
    "listeningSocket",
    "memberCounts",
    "share",
]
