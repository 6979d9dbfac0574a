"""
How the manager's answers read on a terminal: the status table and the one
line a change prints.
"""

from __future__ import annotations

import json

def dumpJSON(value):
    return json.dumps(value, indent=2, sort_keys=False) + "\n"


def health(member):
    """
    C{up}, or C{down: reason}.
    """
    if member.get("healthy"):
        return "up"
    reason = member.get("down_reason")
    return f"down: {reason}" if reason else "down"


def latency(member):
    """
    Mean and 95th percentile latency, e.g. C{12.3/40.5 ms}, or C{-}.
    """
    mean, p95 = member.get("latency_mean_ms"), member.get("latency_p95_ms")
    if mean is None and p95 is None:
        return "-"
    return "/".join("-" if v is None else f"{v:.1f}" for v in (mean, p95)) + " ms"


def adminText(member):
    return f"{member.get('admin')} (removing)" if member.get("removing") else str(member.get("admin"))


_COLUMNS = [
    ("MEMBER", False, lambda m: str(m.get("name"))),
    ("URL", False, lambda m: str(m.get("url"))),
    ("ADMIN", False, adminText),
    ("STANDBY", False, lambda m: "yes" if m.get("standby") else "no"),
    ("WEIGHT", True, lambda m: str(m.get("weight"))),
    ("HEALTH", False, health),
    ("ACTIVE", True, lambda m: str(m.get("active"))),
    ("REQUESTS", True, lambda m: str(m.get("requests"))),
    ("FAILURES", True, lambda m: str(m.get("failures"))),
    ("LATENCY MEAN/P95", False, latency),
]


def formatTable(rows, rightAligned):
    """
    Rows of cells as aligned text lines; the header is the first row.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, rightAligned)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def formatBalancer(name, balancer):
    """
    One balancer: a heading and a table of its members.
    """
    retry = balancer.get("retry")
    retry = f"{retry:g}s" if isinstance(retry, (int, float)) else "?"
    heading = f"balancer {name} ({balancer.get('scheduler')}, retry {retry})"
    members = list(balancer.get("members", {}).values())
    if not members:
        return [heading, "  (no members)"]
    rows = [[title for title, _, _ in _COLUMNS]]
    rows += [[cell(m) for _, _, cell in _COLUMNS] for m in members]
    table = formatTable(rows, [right for _, right, _ in _COLUMNS])
    return [heading] + ["  " + line for line in table]


def formatStatus(status):
    """
    The whole status as text, a table per balancer.
    """
    balancers = status.get("balancers", {})
    if not balancers:
        return "no balancers\n"
    blocks = ["\n".join(formatBalancer(n, b)) for n, b in balancers.items()]
    return "\n\n".join(blocks) + "\n"


def memberLine(balancer, name, member):
    """
    One member in a line, e.g. C{web/app1 (http://...): drain, weight 1, up,
    3 active}.
    """
    parts = [adminText(member)]
    if member.get("standby"):
        parts.append("standby")
    parts += [f"weight {member.get('weight')}", health(member), f"{member.get('active')} active"]
    return f"{balancer}/{name} ({member.get('url')}): {', '.join(parts)}\n"


def removedLine(balancer, name, member):
    active = member.get("active") or 0
    if active:
        return f"{balancer}/{name}: removing; it goes once its {active} active requests end\n"
    return f"{balancer}/{name}: removed\n"
