"""
The manager page: every balancer and member at a glance, with controls
that work as plain HTML forms (and are taken over by C{static/manager.js}
for live updates when JavaScript is on).  Rendered with twisted.web.template,
so every value is escaped.
"""

from __future__ import annotations

import os
import time
from urllib.parse import parse_qs

from twisted.web import resource
from twisted.web.template import Tag, renderElement, tags

from playbalancer import __version__
from playbalancer.manager import model
from playbalancer.manager.api import jsonError
from playbalancer.manager.guard import sameOrigin
from playbalancer.manager.model import ChangeError

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

#: Form buttons and the change each one makes.
ACTIONS = {
    "enable": {"admin": "enabled"},
    "drain": {"admin": "drain"},
    "disable": {"admin": "disabled"},
    "standby-on": {"standby": True},
    "standby-off": {"standby": False},
    "reset": {"reset": True},
}


def _bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0


def eventsText(info, count=3):
    """
    The member's latest state changes, newest first, e.g.
    C{"down: connection refused, 12:01:03"}.
    """
    return " \u00b7 ".join(
        f"{event['text']}, {time.strftime('%H:%M:%S', time.gmtime(event['at']))}"
        for event in info["events"][:count]
    )


def checkText(info):
    """
    The last health check, for people: "HTTP 200 · 2 ms", or "-".
    """
    check = info["check"]
    if check is None:
        return "-"
    mark = "" if check["ok"] else "failing: "
    return f"{mark}{check['detail']} · {check['duration_ms']:.0f} ms"


def _latency(info):
    mean, p95 = info["latency_mean_ms"], info["latency_p95_ms"]
    if mean is None:
        return "-"
    return f"{mean:.1f} / {p95:.1f} ms"


class ManagerPage:
    """
    The whole page, as twisted.web.template tags.
    """

    def __init__(self, root, csrf):
        self.root = root
        self.csrf = csrf

    def render(self, request):
        return tags.html(lang="en")(
            tags.head(
                tags.meta(charset="utf-8"),
                tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
                tags.title("playbalancer manager"),
                tags.link(rel="stylesheet", href="static/manager.css"),
                tags.script(src="static/manager.js", defer="defer"),
            ),
            tags.body(
                tags.header(
                    tags.h1("playbalancer"),
                    tags.span(f"manager · version {__version__}", class_="muted"),
                    tags.span("live updates off (no JavaScript)", id="live", class_="muted"),
                ),
                Tag("main")(
                    self.cluster(),
                    *[self.balancer(name, b) for name, b in self.root.balancers.items()],
                    self.routes(),
                    self.certificates(),
                ),
            ),
        )

    def cluster(self):
        """
        The tier's nodes, in cluster mode; nothing otherwise.
        """
        cluster = getattr(self.root, "cluster", None)
        if cluster is None:
            return ""
        summary = cluster.summary()
        store = "store ok" if summary["store"] == "ok" else f"store degraded: {summary['reason']}"
        return tags.section(class_="cluster")(
            tags.h2(
                f"tier {summary['tier']} ",
                tags.small(f"this node: {summary['node']} · revision {summary['revision']} · "),
                tags.span(store, class_="badge" + ("" if summary["store"] == "ok" else " bad")),
            ),
            tags.table(
                tags.thead(tags.tr(tags.th("node"), tags.th("applied revision"), tags.th("in flight"))),
                tags.tbody(
                    *[
                        tags.tr(tags.td(n["name"]), tags.td(str(n["revision"])), tags.td(str(n["inflight"])))
                        for n in summary["nodes"]
                    ]
                ),
            ),
        )

    def routes(self):
        """
        Each HTTP listener's routes in the order they match, with their
        counters (as when the page was loaded).
        """
        sections = []
        for listener in model.listenerStatus(self.root.listeners):
            rows = []
            for route in listener["routes"]:
                responses = route["responses"]
                rows.append(
                    tags.tr(
                        tags.td(route["name"]),
                        tags.td(route["host"] or "any"),
                        tags.td(route["path"]),
                        tags.td(route["target"]),
                        tags.td(str(route["hits"])),
                        tags.td(str(route["denied"])),
                        tags.td(
                            " · ".join(f"{code} {responses[code]}" for code in sorted(responses))
                            or "-"
                        ),
                    )
                )
            sections.append(
                tags.section(class_="routes")(
                    tags.h2("routes of ", listener["name"], " ", tags.small("in the order they match")),
                    tags.table(
                        tags.thead(
                            tags.tr(
                                *[
                                    tags.th(h)
                                    for h in (
                                        "route", "host", "path", "target", "requests",
                                        "denied", "responses",
                                    )
                                ]
                            )
                        ),
                        tags.tbody(*rows),
                    ),
                )
            )
        return tags.div(*sections) if sections else ""

    def certificates(self):
        """
        The TLS listeners' certificates and their expiry, those with less
        than L{model.EXPIRY_WARNING_DAYS} days left marked.
        """
        listed = model.certificateStatus(self.root.listenerConfigs(), self.root.clock.seconds())
        if not listed:
            return ""
        rows = []
        for certificate in listed:
            soon = certificate["days_left"] < model.EXPIRY_WARNING_DAYS
            rows.append(
                tags.tr(class_="expiring" if soon else "")(
                    tags.td(certificate["listener"]),
                    tags.td(", ".join(certificate["names"]) or "-"),
                    tags.td(certificate["file"], " (default)" if certificate["default"] else ""),
                    tags.td(certificate["not_after"].replace("T", " ")),
                    tags.td(
                        tags.span(
                            f"{certificate['days_left']:.0f} days",
                            class_="badge bad" if soon else "badge",
                        )
                    ),
                )
            )
        heads = ("listener", "names", "file", "expires (UTC)", "left")
        return tags.section(class_="certificates")(
            tags.h2("certificates"),
            tags.table(tags.thead(tags.tr(*[tags.th(h) for h in heads])), tags.tbody(*rows)),
        )

    def balancer(self, name, balancer):
        status = model.balancerStatus(balancer)
        return tags.section(class_="balancer", **{"data-balancer": name})(
            tags.h2(name, " ", tags.small(self.summary(balancer, status))),
            tags.table(
                tags.thead(
                    tags.tr(
                        *[
                            tags.th(h)
                            for h in (
                                "member", "state", "last check", "admin", "standby", "weight",
                                "in flight",
                                "requests", "failures", "latency mean / p95",
                                tags.span("in / out", title="bytes from / to the member"),
                                "last minutes", "controls",
                            )
                        ]
                    )
                ),
                tags.tbody(*[self.member(name, info) for info in status["members"].values()]),
            ),
            self.addForm(name),
        )

    def summary(self, balancer, status):
        scheduler = status["scheduler"] or type(balancer.scheduler).__name__
        checks = "health checks on" if status["health_checks"] else f"retry {balancer.retry:g}s"
        return f"scheduler: {scheduler}, {checks}"

    def member(self, balancerName, info):
        def cell(field, text):
            return tags.td(text, **{"data-field": field})

        return tags.tr(class_=f"member state-{info['state']}", **{"data-member": info["name"]})(
            tags.td(tags.strong(info["name"]), tags.br(), tags.span(info["url"], class_="muted")),
            tags.td(
                tags.span(info["state_text"], class_="badge", **{"data-field": "state_text"}),
                tags.br(),
                tags.small(eventsText(info), class_="muted events", **{"data-field": "events"}),
            ),
            cell("check", checkText(info)),
            cell("admin", info["admin"]),
            cell("standby", "yes" if info["standby"] else "no"),
            cell("weight", str(info["weight"])),
            cell("active", str(info["active"])),
            cell("requests", str(info["requests"])),
            cell("failures", str(info["failures"])),
            cell("latency", _latency(info)),
            cell("bytes", f"{_bytes(info['bytes_in'])} / {_bytes(info['bytes_out'])}"),
            tags.td(tags.canvas(width="160", height="40", class_="chart")("needs JavaScript")),
            tags.td(self.controls(balancerName, info)),
        )

    def _hidden(self, balancerName, memberName):
        return [
            tags.input(type="hidden", name="csrf", value=self.csrf),
            tags.input(type="hidden", name="balancer", value=balancerName),
            tags.input(type="hidden", name="member", value=memberName),
        ]

    def controls(self, balancerName, info):
        def button(action, label, title):
            return tags.button(label, type="submit", name="action", value=action, title=title)

        standby = (
            button("standby-off", "Standby off", "make it a primary member")
            if info["standby"]
            else button("standby-on", "Standby on", "use it only while no primary is usable")
        )
        return tags.form(method="post", action="actions", class_="controls")(
            *self._hidden(balancerName, info["name"]),
            button("enable", "Enable", "take new requests"),
            button("drain", "Drain", "no new requests; those in flight finish"),
            button("disable", "Disable", "no new requests"),
            standby,
            button("reset", "Reset", "forget a failure now"),
            tags.input(type="number", name="weight", min="0", value=str(info["weight"]),
                       class_="weight", **{"aria-label": "weight"}),
            button("weight", "Set weight", "share of new requests"),
            button("remove", "Remove", "remove once its requests end"),
        )

    def addForm(self, balancerName):
        return tags.form(method="post", action="actions", class_="add")(
            tags.input(type="hidden", name="csrf", value=self.csrf),
            tags.input(type="hidden", name="balancer", value=balancerName),
            tags.input(type="hidden", name="action", value="add"),
            tags.label("Add member ", tags.input(name="member", placeholder="name", required="required")),
            tags.input(name="url", placeholder="http://127.0.0.1:9997", required="required"),
            tags.label(tags.input(type="checkbox", name="standby", value="on"), " standby"),
            tags.input(type="number", name="weight", min="0", value="1", class_="weight",
                       **{"aria-label": "weight"}),
            tags.button("Add", type="submit"),
        )



class PageResource(resource.Resource):
    """
    C{GET /}: the page.
    """

    isLeaf = True

    def __init__(self, root):
        resource.Resource.__init__(self)
        self.root = root

    def render_GET(self, request):
        if request.postpath not in ([], [b""]):
            return jsonError(request, 404, "not found")
        page = ManagerPage(self.root, self.root.policy.csrfToken())
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return renderElement(request, page.render(request))

    render_HEAD = render_GET


class ActionsResource(resource.Resource):
    """
    C{POST actions}: the page's forms, for browsers without JavaScript;
    answered with a redirect back to the page.
    """

    isLeaf = True

    def __init__(self, root):
        resource.Resource.__init__(self)
        self.root = root

    def render_POST(self, request):
        fields = parse_qs(request.content.read(64 * 1024).decode("utf-8", "replace"))

        def field(name, default=None):
            return fields.get(name, [default])[0]

        token = field("csrf")
        if not sameOrigin(request) or token is None or not self.root.policy.checkCsrf(token.encode()):
            return jsonError(request, 403, "missing or invalid anti-CSRF token; reload the page")
        who = self.root.who(request)
        try:
            self._apply(field, who)
        except ChangeError as e:
            return jsonError(request, e.code, e.message, details=e.details)
        request.setResponseCode(303)
        request.setHeader(b"location", b"./")
        return b""

    def _apply(self, field, who):
        balancers = self.root.balancers
        action = field("action")
        if action == "add":
            balancer, _ = model.find(balancers, field("balancer"))
            weight = field("weight", "1")
            spec = {
                "url": field("url"),
                "standby": field("standby") == "on",
                "weight": int(weight) if weight.isdecimal() and weight.isascii() else weight,
            }
            model.addMember(balancer, field("member"), spec, who)
            return
        balancer, member = model.find(balancers, field("balancer"), field("member"))
        force = field("force") == "true"
        if action == "remove":
            if not force:
                model.guardLastUsable(balancer, member, removing=True)
            balancer.removeMember(member, who)
        elif action == "weight":
            weight = field("weight", "")
            weight = int(weight) if weight.isdecimal() and weight.isascii() else weight
            model.applyChange(balancer, member, {"weight": weight, "force": force}, who)
        elif action in ACTIONS:
            model.applyChange(balancer, member, dict(ACTIONS[action], force=force), who)
        else:
            raise ChangeError(400, f"unknown action {action!r}")
