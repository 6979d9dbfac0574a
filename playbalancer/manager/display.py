"""
How the manager page writes values for people: byte counts, latencies,
health checks, and times (in UTC on the server; the page's script shows
them in the viewer's local time with its offset).
"""

from __future__ import annotations

import time

from twisted.web.template import tags

__all__ = ["byteCount", "latencyText", "checkText", "timeTag", "rate", "share", "milliseconds"]


def byteCount(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0


def latencyText(info):
    """
    C{"mean / p95 ms"} over the last minute, or C{"-"}.
    """
    mean, p95 = info["latency_mean_ms"], info["latency_p95_ms"]
    if mean is None:
        return "-"
    return f"{mean:.1f} / {p95:.1f} ms"


def checkText(info):
    """
    The last health check: C{"HTTP 200 · 2 ms"}, C{"failing: ..."}, or C{"-"}.
    """
    check = info["check"]
    if check is None:
        return "-"
    mark = "" if check["ok"] else "failing: "
    return f"{mark}{check['detail']} · {check['duration_ms']:.0f} ms"


def timeTag(at):
    """
    A C{<time>} of the clock time C{at} (seconds since the epoch): UTC with
    its zone, which the page's script replaces with local time.
    """
    moment = time.gmtime(at)
    return tags.time(time.strftime("%H:%M:%S UTC", moment), datetime=time.strftime("%Y-%m-%dT%H:%M:%SZ", moment))


def rate(value):
    return "-" if value is None else f"{value:.1f}/s"


def share(value):
    return "-" if value is None else f"{value * 100:.1f}%"


def milliseconds(value):
    return "-" if value is None else f"{value:.1f} ms"
