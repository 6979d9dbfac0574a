"""
The C{hash} scheduler (playbalancer.schedulers.hashing) measured by
computation alone: no sockets, no balancer, stand-in members and request
views.  For 10 members, with equal and with mixed weights, over N keys:

- spread: keys per member against its weight's share (largest over the
  mean, and the standard deviation, both relative to the share);
- removing 1 of 10 (each in turn): the share of keys that move, against
  the ideal (the keys the removed member held);
- adding an 11th member: the share that moves, against the ideal (its
  share of the new total);
- bounded load: Zipf-distributed keys placed as requests that stay in
  flight (a fixed number at a time; a random one ends as each new one
  comes), with no bound and with several balance factors: the peak load of
  any member relative to its fair share, and the share of requests sent
  elsewhere than their key's own member;
- microseconds per pick (the median of several repetitions) and
  milliseconds per table build.

    python benchmarks/hashing.py [--keys 100000] [--json FILE]

Run it with the Python that has playbalancer (it imports it from this
checkout); it takes well under a minute on CPython.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from playbalancer.schedulers.hashing import consistentHash  # noqa: E402
from playbalancer.schedulers.maglev import TABLE_SIZE, buildTable, keyHash  # noqa: E402

WEIGHTS = {
    "equal": [1] * 10,
    "mixed": [1, 1, 1, 2, 2, 2, 3, 3, 4, 5],
}
FACTORS = [None, 2.0, 1.5, 1.25, 1.1]


class Member:
    def __init__(self, name, weight):
        self.name = name
        self.url = f"http://{name}.invalid"
        self.weight = weight
        self.standby = False
        self.active = 0


class View:
    """
    A request whose C{X-User} header is C{value}.
    """

    method = b"GET"
    path = b"/"
    query = b""
    host = b"bench.example"
    clientAddress = "192.0.2.1"
    secure = False

    def __init__(self, value):
        self.value = value

    def header(self, name):
        return self.value

    def cookie(self, name):
        return None


def makeMembers(weights):
    return [Member(f"app{i + 1}", weight) for i, weight in enumerate(weights)]


def scheduler(factor=None):
    options = {"key": "header:X-User"}
    if factor is not None:
        options["balance_factor"] = factor
    return consistentHash.makeScheduler(options)


def placement(s, candidates, views):
    pick = s.pick
    return [pick(candidates, view).name for view in views]


def moved(before, after):
    return sum(1 for a, b in zip(before, after) if a != b) / len(before)


def spread(members, names):
    """
    Keys per member relative to its weight's share: the largest over the
    mean (1.0 is perfect), and the standard deviation.
    """
    counts = Counter(names)
    total = sum(m.weight for m in members)
    ratios = [counts[m.name] / (len(names) * m.weight / total) for m in members]
    return {"max_over_mean": max(ratios), "stddev": statistics.pstdev(ratios)}


def consistency(weights, views):
    """
    Spread, and the keys moved when each member is removed in turn, and
    when an 11th (of the mean weight) is added.
    """
    members = makeMembers(weights)
    s = scheduler()
    before = placement(s, members, views)
    removals = []
    for gone in members:
        rest = [m for m in members if m is not gone]
        after = placement(s, rest, views)
        removals.append({
            "member": gone.name,
            "weight": gone.weight,
            "moved": moved(before, after),
            "ideal": before.count(gone.name) / len(before),
        })
    newcomer = Member("app11", max(1, round(statistics.mean(weights))))
    added = placement(s, members + [newcomer], views)
    total = sum(weights) + newcomer.weight
    restored = placement(s, members, views) == before
    return {
        "spread": spread(members, before),
        "remove": removals,
        "remove_moved_mean": statistics.mean(r["moved"] for r in removals),
        "remove_moved_max": max(r["moved"] for r in removals),
        "remove_excess_max": max(r["moved"] - r["ideal"] for r in removals),
        "remove_ideal_mean": statistics.mean(r["ideal"] for r in removals),
        "add": {
            "weight": newcomer.weight,
            "moved": moved(before, added),
            "ideal": newcomer.weight / total,
            "to_newcomer": added.count("app11") / len(added),
        },
        "restored_after_remove_and_back": restored,
    }


def modulo(weights, keys):
    """
    For contrast: the share that moves with C{hash % n} when 1 of 10 goes.
    """
    n = len(weights)
    hashes = [keyHash(k) for k in keys]
    return sum(1 for h in hashes if h % n != h % (n - 1)) / len(hashes)


def zipfKeys(count, distinct, exponent, rng):
    population = [b"key-%d" % (i,) for i in range(distinct)]
    odds = [1 / (rank + 1) ** exponent for rank in range(distinct)]
    return rng.choices(population, odds, k=count)


def boundedLoad(weights, requests, distinct, exponent, inFlight, seed):
    """
    Zipf keys as requests in flight (C{inFlight} at a time), for each
    factor: the peak of any member's load over its fair share (after the
    first C{inFlight} requests), the mean of that peak over time, and the
    share of requests not on their key's own member.
    """
    rng = random.Random(seed)
    keys = zipfKeys(requests, distinct, exponent, rng)
    views = [View(k) for k in keys]
    home = {}
    unbounded = scheduler()
    reference = makeMembers(weights)
    for view in views:
        if view.value not in home:
            home[view.value] = unbounded.pick(reference, view).name
    topShare = Counter(keys).most_common(1)[0][1] / len(keys)
    rows = []
    for factor in FACTORS:
        members = makeMembers(weights)
        total = sum(weights)
        fair = [inFlight * m.weight / total for m in members]
        s = scheduler(factor)
        running = []
        ends = random.Random(seed + 1)
        away = 0
        peaks = []
        for index, view in enumerate(views):
            if len(running) == inFlight:
                ended = running.pop(ends.randrange(inFlight))
                ended.active -= 1
            chosen = s.pick(members, view)
            chosen.active += 1
            running.append(chosen)
            if chosen.name != home[view.value]:
                away += 1
            if index >= inFlight:
                peaks.append(max(m.active / f for m, f in zip(members, fair)))
        rows.append({
            "factor": factor,
            "peak_over_fair": max(peaks),
            "mean_peak_over_fair": statistics.mean(peaks),
            "away_from_home": away / len(views),
        })
    return {
        "requests": requests,
        "distinct_keys": distinct,
        "zipf_exponent": exponent,
        "in_flight": inFlight,
        "top_key_share": topShare,
        "factors": rows,
    }


def timing(views, repeats):
    """
    Microseconds per pick (median of C{repeats} passes over C{views}) for
    10 equal members, without and with a bound (nothing in flight), and
    milliseconds per table build.
    """
    members = makeMembers(WEIGHTS["equal"])
    result = {}
    for label, factor in [("unbounded", None), ("bounded_1.25", 1.25)]:
        s = scheduler(factor)
        s.pick(members, views[0])
        pick = s.pick
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            for view in views:
                pick(members, view)
            runs.append((time.perf_counter() - started) / len(views) * 1e6)
        result[f"us_per_pick_{label}"] = statistics.median(runs)
    builds = []
    entries = [(m.name, m.weight) for m in members]
    for _ in range(repeats):
        started = time.perf_counter()
        buildTable(entries)
        builds.append((time.perf_counter() - started) * 1e3)
    result["ms_per_table_build"] = statistics.median(builds)
    return result


def percent(value):
    return f"{value * 100:.2f}%"


def againstIdeal(value, ideal):
    return f"{percent(value)} ({percent(ideal)})"


def report(results):
    lines = [
        f"{results['implementation']} {results['python']}, {results['keys']:,} keys,"
        f" table of {TABLE_SIZE:,} slots",
        "",
        f"{'weights':8} {'max/mean':>9} {'stddev':>7} {'remove 1 of 10: moved (ideal)':>31}"
        f" {'worst excess':>13} {'add 1: moved (ideal)':>22}",
    ]
    for name, row in results["consistency"].items():
        lines.append(
            f"{name:8} {row['spread']['max_over_mean']:9.3f} {row['spread']['stddev']:7.3f}"
            f" {againstIdeal(row['remove_moved_mean'], row['remove_ideal_mean']):>31}"
            f" {percent(row['remove_excess_max']):>13}"
            f" {againstIdeal(row['add']['moved'], row['add']['ideal']):>22}"
        )
    lines.append(f"(hash % n moves {percent(results['modulo_moved'])} when 1 of 10 goes)")
    bounded = results["bounded"]
    for name, run in bounded.items():
        lines += [
            "",
            f"bounded load, {name} weights: {run['requests']:,}"
            f" Zipf({run['zipf_exponent']}) requests over {run['distinct_keys']:,} keys"
            f" (top key {percent(run['top_key_share'])}), {run['in_flight']} in flight",
            f"{'balance_factor':>14} {'peak/fair':>10} {'mean peak/fair':>15}"
            f" {'away from own member':>21}",
        ]
        for row in run["factors"]:
            factor = "none" if row["factor"] is None else f"{row['factor']:g}"
            lines.append(
                f"{factor:>14} {row['peak_over_fair']:10.2f} {row['mean_peak_over_fair']:15.2f}"
                f" {percent(row['away_from_home']):>21}"
            )
    t = results["timing"]
    lines += [
        "",
        f"pick: {t['us_per_pick_unbounded']:.2f} us unbounded,"
        f" {t['us_per_pick_bounded_1.25']:.2f} us with balance_factor 1.25"
        f" (median of {results['repeats']}); table build {t['ms_per_table_build']:.1f} ms",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=100_000, help="bounded-load requests")
    parser.add_argument("--distinct", type=int, default=10_000, help="distinct Zipf keys")
    parser.add_argument("--exponent", type=float, default=1.0, help="Zipf exponent")
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    views = [View(b"user-%d" % (i,)) for i in range(args.keys)]
    results = {
        "date": datetime.date.today().isoformat(),
        "implementation": platform.python_implementation(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "keys": args.keys,
        "table_size": TABLE_SIZE,
        "repeats": args.repeats,
        "weights": WEIGHTS,
        "consistency": {name: consistency(w, views) for name, w in WEIGHTS.items()},
        "modulo_moved": modulo(WEIGHTS["equal"], [v.value for v in views]),
        "bounded": {
            name: boundedLoad(
                w, args.requests, args.distinct, args.exponent, args.in_flight, args.seed
            )
            for name, w in WEIGHTS.items()
        },
        "timing": timing(views, args.repeats),
    }
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
