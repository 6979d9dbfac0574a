#!/usr/bin/env python3
"""
The cost of one pick of each built-in scheduler, in microseconds: what a
scheduler adds to every request, measured alone (no sockets).

For 3 and 10 members of weight 1, and a request view with a header, a
cookie, a path and a client address (every key a ``hash`` scheduler could
use), each scheduler is asked ``--picks`` times in a loop, its members'
in-flight counts moving as a live balancer's would (``active`` of the
picked member goes up, and another's down).  A latency-aware scheduler is
told a response time after each pick.  The loop is timed whole
(``time.perf_counter``), ``--repeat`` times; the median of the repeats is
reported.

    python benchmarks/picks.py                       # the table
    python benchmarks/picks.py --json benchmarks/results/picks-DATE.json

Run it with each interpreter (.venv/bin/python, .venv-pypy/bin/python).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from twisted.internet.task import Clock  # noqa: E402

from playbalancer.interfaces import IResponseTimeObserver  # noqa: E402
from playbalancer.schedulers import availableSchedulers  # noqa: E402
from playbalancer.testing import candidateMembers, requestView  # noqa: E402

#: The schedulers and the options each is measured with.
CASES = [
    ("standby", {}),
    ("round-robin", {}),
    ("least-conn", {}),
    ("peak-ewma", {}),
    ("hash", {"key": "header:X-User"}),
    ("hash", {"key": "header:X-User", "balance_factor": 1.25}),
    ("hash", {"key": "client"}),
]


def label(name, options):
    shown = ", ".join(f"{k}={v}" for k, v in options.items())
    return f"{name} ({shown})" if shown else name


def timeLoop(scheduler, members, views, picks):
    """
    Seconds for C{picks} picks over C{members}, the views taken in turn.
    """
    observer = IResponseTimeObserver.providedBy(scheduler)
    count = len(members)
    nviews = len(views)
    pick = scheduler.pick
    start = time.perf_counter()
    for i in range(picks):
        chosen = pick(members, views[i % nviews])
        chosen.active += 1
        members[i % count].active = max(0, members[i % count].active - 1)
        if observer:
            scheduler.responseTime(chosen, 0.001 + (i % 7) * 0.0005)
    return time.perf_counter() - start


def measure(factory, options, size, picks, repeat):
    members = candidateMembers(*[f"m{i}" for i in range(size)])
    views = [
        requestView(
            headers=[(b"X-User", b"user%d" % i)],
            cookies=[(b"session", b"s%d" % i)],
            path=b"/items/%d" % i,
            clientAddress=f"10.0.{i // 250}.{i % 250}",
        )
        for i in range(1000)
    ]
    runs = []
    for _ in range(repeat):
        scheduler = factory.makeScheduler(dict(options))
        if IResponseTimeObserver.providedBy(scheduler):
            scheduler.setClock(Clock())
        for member in members:
            member.active = 0
        timeLoop(scheduler, members, views, min(picks, 1000))  # (warm: tables, JIT)
        runs.append(timeLoop(scheduler, members, views, picks) / picks * 1e6)
    return statistics.median(runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--picks", type=int, default=200000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    found = availableSchedulers()
    results = []
    print(f"{platform.python_implementation()} {platform.python_version()}: "
          f"microseconds per pick, median of {args.repeat} x {args.picks} picks")
    print(f"{'scheduler':45} {'3 members':>10} {'10 members':>11}")
    for name, options in CASES:
        if name not in found:
            print(f"{label(name, options):45} (not available)")
            continue
        row = {"scheduler": name, "options": options}
        for size in (3, 10):
            row[f"us_per_pick_{size}"] = round(measure(found[name], options, size, args.picks, args.repeat), 3)
        results.append(row)
        print(f"{label(name, options):45} {row['us_per_pick_3']:10.2f} {row['us_per_pick_10']:11.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                "date": datetime.date.today().isoformat(),
                "python": f"{platform.python_implementation()} {platform.python_version()}",
                "picks": args.picks,
                "repeat": args.repeat,
                "results": results,
            }, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
