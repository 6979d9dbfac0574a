"""
The manager page's other sections: the overview strip (a tile per
balancer), the event timeline, the cluster's nodes, each listener's routes
and the TLS certificates.  Tables carry their cells' labels, for the cards
narrow screens show.
"""

from __future__ import annotations

from twisted.web.template import tags

from playbalancer.manager import model
from playbalancer.manager.display import milliseconds, rate, share, timeTag
from playbalancer.manager.overview import STATES

__all__ = ["overviewTiles", "timelineSection", "clusterSection", "routeSections", "certificateSection"]


def _table(heads, rows, **attributes):
    return tags.table(class_="cards", **attributes)(
        tags.thead(tags.tr(*[tags.th(h, scope="col") for h in heads])),
        tags.tbody(*[tags.tr(**attrs)(*[tags.td(v, **{"data-label": h}) for h, v in zip(heads, cells)])
                     for cells, attrs in rows]),
    )


def membersText(counts):
    """
    C{"2 serving · 1 standby"}: the non-zero member counts, in L{STATES}
    order.
    """
    return " \u00b7 ".join(f"{counts[s]} {s}" for s in STATES if counts.get(s)) or "no members"


def overviewTiles(tiles, anchors):
    """
    The overview strip: per balancer its state, requests/s, error share,
    p95, members by state, and a chart of its requests/s.

    @param anchors: each balancer's section id, by name.
    """
    articles = []
    for name, tile in tiles.items():
        articles.append(
            tags.article(class_=f"tile state-{tile['state']}", **{"data-balancer": name})(
                tags.h2(
                    tags.a(name, href=f"#{anchors[name]}"),
                    tags.span(f"{tile['sign']} {tile['text']}", class_=f"badge state-{tile['state']}",
                              **{"data-o": "state"}),
                ),
                tags.dl(
                    tags.dt("requests"), tags.dd(rate(tile["requests_per_second"]), **{"data-o": "requests"}),
                    tags.dt("errors"), tags.dd(share(tile["error_share"]), **{"data-o": "errors"}),
                    tags.dt("p95 latency"), tags.dd(milliseconds(tile["p95_ms"]), **{"data-o": "p95"}),
                    tags.dt("members"), tags.dd(membersText(tile["members"]), **{"data-o": "members"}),
                ),
                tags.figure(class_="chart")(
                    tags.canvas(width="240", height="44", class_="chart overview", role="img",
                                **{"aria-label": f"requests per second of {name}, last 15 minutes"})(
                        "the chart needs JavaScript"
                    ),
                    tags.figcaption(tags.span("\u2501 requests/s", class_="key-requests"), " ",
                                    tags.span("\u2504 p95 ms", class_="key-p95"), " ",
                                    tags.span("15 min \u2192 now", class_="muted")),
                ),
            )
        )
    return tags.section(class_="tiles", **{"aria-label": "overview"})(*articles)


def timelineSection(events, balancerNames):
    """
    Every member's recent state changes, newest first, with a filter by
    balancer (the page's script applies it; without it all are listed).
    """
    items = [
        tags.li(**{"data-balancer": e["balancer"]})(
            timeTag(e["at"]), tags.strong(f"{e['balancer']}/{e['member']}"), ": ", e["text"]
        )
        for e in events
    ]
    options = [tags.option("all balancers", value="")] + [tags.option(n, value=n) for n in balancerNames]
    return tags.section(class_="panel timeline", id="timeline")(
        tags.h2("events ", tags.small("newest first; admin changes say who made them")),
        tags.label("show ", tags.select(id="timeline-filter")(*options)),
        tags.ol(class_="timeline", **{"aria-live": "polite"})(*items)
        if items else tags.p("no state changes yet", class_="muted"),
    )


def clusterSection(cluster):
    """
    The tier's nodes, in cluster mode; nothing otherwise.
    """
    if cluster is None:
        return ""
    summary = cluster.summary()
    store = "store ok" if summary["store"] == "ok" else f"store degraded: {summary['reason']}"
    rows = [((n["name"], str(n["revision"]), str(n["inflight"])), {}) for n in summary["nodes"]]
    return tags.section(class_="panel cluster")(
        tags.h2(
            f"tier {summary['tier']} ",
            tags.small(f"this page shows node {summary['node']} · revision {summary['revision']} · "),
            tags.span(store, class_="badge" + ("" if summary["store"] == "ok" else " bad")),
        ),
        _table(("node", "applied revision", "in flight"), rows),
    )


def routeSections(listeners):
    """
    Each HTTP listener's routes in the order they match, with their
    counters (as when the page was loaded).
    """
    sections = []
    heads = ("route", "host", "path", "target", "requests", "denied", "responses")
    for listener in model.listenerStatus(listeners):
        rows = []
        for route in listener["routes"]:
            responses = route["responses"]
            text = " · ".join(f"{code} {responses[code]}" for code in sorted(responses)) or "-"
            rows.append(((route["name"], route["host"] or "any", route["path"], route["target"],
                          str(route["hits"]), str(route["denied"]), text), {}))
        sections.append(
            tags.section(class_="panel routes")(
                tags.h2("routes of ", listener["name"], " ", tags.small("in the order they match")),
                _table(heads, rows),
            )
        )
    return tags.div(*sections) if sections else ""


def certificateSection(listed):
    """
    The TLS listeners' certificates and their expiry, those with less than
    L{model.EXPIRY_WARNING_DAYS} days left marked (in words too).
    """
    if not listed:
        return ""
    rows = []
    for certificate in listed:
        soon = certificate["days_left"] < model.EXPIRY_WARNING_DAYS
        left = f"{certificate['days_left']:.0f} days" + (" (renew soon)" if soon else "")
        rows.append((
            (
                certificate["listener"],
                ", ".join(certificate["names"]) or "-",
                certificate["file"] + (" (default)" if certificate["default"] else ""),
                certificate["not_after"].replace("T", " "),
                tags.span(left, class_="badge bad" if soon else "badge"),
            ),
            {"class": "expiring"} if soon else {},
        ))
    return tags.section(class_="panel certificates")(
        tags.h2("certificates"),
        _table(("listener", "names", "file", "expires (UTC)", "left"), rows),
    )
