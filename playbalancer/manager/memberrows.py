"""
A balancer's members on the manager page: one table, which the style sheet
turns into cards on narrow screens (each cell carries its label).  Each
member's controls show its state (the admin state as a segmented control
with the current one pressed, standby as a toggle, the weight in place) and
are plain HTML forms, which the page's script takes over.
"""

from __future__ import annotations

from twisted.web.template import tags

from playbalancer.manager.display import byteCount, checkText, latencyText, timeTag

__all__ = ["SIGNS", "ADMIN_BUTTONS", "balancerSection"]

#: A sign for each member state, shown before its words.
SIGNS = {
    "serving": "\u2714",
    "standby": "\u25d0",
    "draining": "\u2198",
    "disabled": "\u2298",
    "down": "\u2716",
    "idle": "\u2013",
    "removing": "\u2296",
}

#: The admin state buttons: C{(action, admin state, label, what it does)}.
ADMIN_BUTTONS = (
    ("enable", "enabled", "Enabled", "takes new requests"),
    ("drain", "drain", "Drain", "no new requests; those in flight finish"),
    ("disable", "disabled", "Disabled", "no new requests"),
)

_BYTES_TITLE = (
    "HTTP: response body bytes from the member / request body bytes to it "
    "(heads not counted); upgrade tunnels and TCP mode: every byte"
)

_COLUMNS = (
    "member", "state", "admin", "weight", "in flight", "requests", "failures",
    "latency mean / p95 and body bytes from / to member", "last 15 minutes", "more",
)


def balancerSection(name, balancer, info, csrf, index):
    """
    The section of the balancer C{name}.

    @param info: its L{playbalancer.manager.model.balancerStatus}.
    @param index: a number unique on the page, for element ids.
    """
    scheduler = info["scheduler"] or type(balancer.scheduler).__name__
    checks = "health checks on" if info["health_checks"] else f"retry {balancer.retry:g}s"
    rows = [
        _memberRow(name, member, csrf, f"m{index}-{number}")
        for number, member in enumerate(info["members"].values())
    ]
    return tags.section(
        class_="panel balancer", id=f"balancer-{index}", **{"data-balancer": name}
    )(
        tags.h2(name, " ", tags.small(f"scheduler: {scheduler}, {checks}")),
        tags.table(class_="cards members")(
            tags.thead(tags.tr(*[tags.th(title, scope="col") for title in _COLUMNS])),
            tags.tbody(*rows),
        ),
        _addForm(name, csrf),
    )


def _hidden(csrf, balancerName, memberName):
    return [
        tags.input(type="hidden", name="csrf", value=csrf),
        tags.input(type="hidden", name="balancer", value=balancerName),
        tags.input(type="hidden", name="member", value=memberName),
    ]


def _cell(label, *content, **attributes):
    return tags.td(*content, **dict(attributes, **{"data-label": label}))


def _events(info, count=3):
    items = []
    for event in info["events"][:count]:
        items.append(tags.span(event["text"], ", ", timeTag(event["at"])))
        items.append(" \u00b7 ")
    return items[:-1]


def _memberRow(balancerName, info, csrf, key):
    name = info["name"]
    state = info["state"]
    controls, weightForm = f"{key}-c", f"{key}-w"

    def button(action, label, title, form=controls, pressed=None, **extra):
        attributes = {"form": form, "type": "submit", "name": "action", "value": action, "title": title}
        if pressed is not None:
            attributes["aria-pressed"] = "true" if pressed else "false"
        attributes.update(extra)
        return tags.button(label, **attributes)

    admin = tags.div(class_="segmented", role="group", **{"aria-label": f"admin state of {name}"})(
        *[
            button(action, label, title, pressed=info["admin"] == value)
            for action, value, label, title in ADMIN_BUTTONS
        ]
    )
    standby = button(
        "standby-off" if info["standby"] else "standby-on",
        "standby",
        "a hot standby takes requests only while no primary is usable",
        pressed=info["standby"],
        class_="toggle",
        **{"data-field": "standby"},
    )
    weight = tags.span(class_="inline")(
        tags.input(
            form=weightForm, type="number", name="weight", min="0", max="1000000",
            value=str(info["weight"]), class_="weight", **{"aria-label": f"weight of {name}"}
        ),
        button("weight", "Set", "share of new requests", form=weightForm),
    )
    return tags.tr(class_=f"member state-{state}", **{"data-member": name})(
        _cell(
            "member",
            tags.form(method="post", action="actions", id=controls)(*_hidden(csrf, balancerName, name)),
            tags.form(method="post", action="actions", id=weightForm)(*_hidden(csrf, balancerName, name)),
            tags.strong(name), " ", tags.span(info["url"], class_="muted"),
        ),
        _cell(
            "state",
            tags.span(f"{SIGNS.get(state, '')} {info['state_text']}", class_="badge",
                      **{"data-field": "state_text"}),
            tags.small(class_="muted check")("health check: ", tags.span(checkText(info), **{"data-field": "check"})),
            tags.small(*_events(info), class_="muted events", **{"data-field": "events"}),
        ),
        _cell("admin", tags.span(class_="inline wrap")(admin, standby), **{"data-field": "admin"}),
        _cell("weight", weight),
        _cell("in flight", str(info["active"]), class_="num", **{"data-field": "active"}),
        _cell("requests", str(info["requests"]), class_="num", **{"data-field": "requests"}),
        _cell("failures", str(info["failures"]), class_="num", **{"data-field": "failures"}),
        _cell(
            "latency mean / p95 and body bytes from / to member",
            tags.span(latencyText(info), class_="line", **{"data-field": "latency"}),
            tags.span(f"{byteCount(info['bytes_in'])} / {byteCount(info['bytes_out'])}",
                      class_="line muted", title=_BYTES_TITLE, **{"data-field": "bytes"}),
            class_="num",
        ),
        _cell("last 15 minutes", _chart(name)),
        _cell(
            "more",
            tags.span(class_="inline wrap")(
                button("reset", "Reset", "forget a failure now"),
                button("remove", "Remove", "remove it once its requests in flight end",
                       class_="danger", **{"data-in-flight": str(info["active"])}),
            ),
        ),
    )


def _chart(name):
    return tags.figure(class_="chart")(
        tags.canvas(width="150", height="56", class_="chart", role="img",
                    **{"aria-label": f"requests per second and p95 latency of {name}, last 15 minutes"})(
            "the chart needs JavaScript"
        ),
        tags.figcaption(
            tags.span("\u2501 requests/s", class_="key-requests"), " ",
            tags.span("\u2504 p95 ms", class_="key-p95"), " ",
            tags.span("15 min \u2192 now", class_="muted"),
        ),
    )


def _addForm(balancerName, csrf):
    return tags.form(method="post", action="actions", class_="add")(
        tags.input(type="hidden", name="csrf", value=csrf),
        tags.input(type="hidden", name="balancer", value=balancerName),
        tags.input(type="hidden", name="action", value="add"),
        tags.label("Add member ", tags.input(name="member", placeholder="name", required="required")),
        tags.label(tags.span("URL", class_="visually-hidden"),
                   tags.input(name="url", placeholder="http://127.0.0.1:9997", required="required")),
        tags.label(tags.input(type="checkbox", name="standby", value="on"), " standby"),
        tags.label(tags.span("weight", class_="visually-hidden"),
                   tags.input(type="number", name="weight", min="0", value="1", class_="weight")),
        tags.button("Add", type="submit"),
    )
