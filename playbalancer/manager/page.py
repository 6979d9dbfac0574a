"""
The manager page: the whole balancer at a glance (its overall state, also
in the browser tab's title; a tile per balancer; every member with controls
that show its state; the event timeline), in plain HTML forms that work
without JavaScript and that C{static/manager.js} takes over for live
updates.  Rendered with twisted.web.template, so every value is escaped.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs

from twisted.web import resource
from twisted.web.template import Tag, renderElement, tags

from playbalancer import __version__
from playbalancer.manager import model
from playbalancer.manager.api import jsonError
from playbalancer.manager.guard import sameOrigin
from playbalancer.manager.memberrows import balancerSection
from playbalancer.manager.model import ChangeError
from playbalancer.manager.overview import overview
from playbalancer.manager.rollingpanel import rollingSection, startQuestion
from playbalancer.manager.sections import (
    certificateSection,
    clusterSection,
    overviewTiles,
    routeSections,
    timelineSection,
)
from playbalancer.manager.timeline import timeline

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


def pageTitle(overall):
    """
    The browser tab's title: the overall state first, so that a tab says it.
    """
    return f"{overall['sign']} {overall['text']} · playbalancer"


def _document(title, *body, script=True):
    return tags.html(lang="en")(
        tags.head(
            tags.meta(charset="utf-8"),
            tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
            tags.title(title),
            tags.link(rel="icon", href="static/favicon.svg", type="image/svg+xml"),
            tags.link(rel="stylesheet", href="static/manager.css"),
            tags.script(src="static/manager.js", defer="defer") if script else "",
        ),
        tags.body(*body),
    )


class ManagerPage:
    """
    The whole page, as twisted.web.template tags.
    """

    def __init__(self, root, csrf):
        self.root = root
        self.csrf = csrf

    def render(self, request):
        root = self.root
        infos = {name: model.balancerStatus(b) for name, b in root.balancers.items()}
        overall = overview(root.balancers, infos, root.history)
        anchors = {name: f"balancer-{index}" for index, name in enumerate(infos)}
        cluster = getattr(root, "cluster", None)
        node = f" · node {cluster.node}" if cluster is not None else ""
        return _document(
            pageTitle(overall),
            tags.header(class_="top")(
                tags.h1("playbalancer"),
                tags.span(f"manager · version {__version__}{node}", class_="muted"),
                tags.p(f"{overall['sign']} {overall['text']}", id="overall",
                       class_=f"overall state-{overall['state']}", role="status"),
                tags.span("live updates off (no JavaScript)", id="live", class_="muted"),
            ),
            Tag("main")(
                overviewTiles(overall["balancers"], anchors),
                rollingSection(root.rollingStatus(), self.csrf),
                clusterSection(cluster),
                *[
                    balancerSection(name, b, infos[name], self.csrf, index)
                    for index, (name, b) in enumerate(root.balancers.items())
                ],
                timelineSection(timeline(infos), list(infos)),
                routeSections(root.listeners),
                certificateSection(
                    model.certificateStatus(root.listenerConfigs(), root.clock.seconds())
                ),
            ),
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
    answered with a redirect back to the page, or with a page that asks
    for confirmation: before a removal or a rolling restart (C{confirm=yes}
    goes ahead), and before a change to the last usable member
    (C{force=true} goes ahead).
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
            question = self._apply(field, who)
        except ChangeError as e:
            if e.details.get("needs_force"):
                request.setResponseCode(409)
                return self._ask(request, field, e.message, "force", "true", "Do it anyway")
            return jsonError(request, e.code, e.message, details=e.details)
        if question is not None:
            question, label = question
            return self._ask(request, field, question, "confirm", "yes", label)
        request.setResponseCode(303)
        request.setHeader(b"location", b"./")
        return b""

    def _apply(self, field, who):
        """
        Make the change a form asks for; C{(question, button label)} to
        ask first, or L{None}.
        """
        balancers = self.root.balancers
        action = field("action")
        if action == "rolling-restart":
            balancer, _ = model.find(balancers, field("balancer"))
            rollouts = self.root.rollouts
            if rollouts is None:
                raise ChangeError(404, "this manager cannot run rolling restarts")
            if field("confirm") != "yes":
                rollouts.check(balancer.name)
                return startQuestion(balancer), f"Restart {balancer.name}"
            rollouts.start(balancer.name, who)
            return None
        if action == "add":
            balancer, _ = model.find(balancers, field("balancer"))
            weight = field("weight", "1")
            spec = {
                "url": field("url"),
                "standby": field("standby") == "on",
                "weight": int(weight) if weight.isdecimal() and weight.isascii() else weight,
            }
            model.addMember(balancer, field("member"), spec, who)
            return None
        balancer, member = model.find(balancers, field("balancer"), field("member"))
        force = field("force") == "true"
        if action == "remove":
            if not force:
                model.guardLastUsable(balancer, member, removing=True)
            if field("confirm") != "yes":
                return removalQuestion(balancer, member), f"Remove {member.name}"
            balancer.removeMember(member, who)
        elif action == "weight":
            weight = field("weight", "")
            weight = int(weight) if weight.isdecimal() and weight.isascii() else weight
            model.applyChange(balancer, member, {"weight": weight, "force": force}, who)
        elif action in ACTIONS:
            model.applyChange(balancer, member, dict(ACTIONS[action], force=force), who)
        else:
            raise ChangeError(400, f"unknown action {action!r}")
        return None

    def _ask(self, request, field, question, name, value, label):
        """
        A page that asks C{question}, with a button that posts the same form
        again with C{name=value} (and what was already agreed to).
        """
        carried = ["balancer", "member", "action", "weight", "force", "confirm"]
        hidden = [tags.input(type="hidden", name="csrf", value=self.root.policy.csrfToken())]
        for key in carried:
            if key != name and field(key) is not None:
                hidden.append(tags.input(type="hidden", name=key, value=field(key)))
        hidden.append(tags.input(type="hidden", name=name, value=value))
        page = _document(
            "confirm · playbalancer",
            tags.header(class_="top")(tags.h1("playbalancer"), tags.span("manager", class_="muted")),
            Tag("main")(
                tags.section(class_="panel confirm")(
                    tags.h2("Are you sure?"),
                    tags.p(question, id="question"),
                    tags.form(method="post", action="actions")(
                        *hidden,
                        tags.button(label, type="submit", class_="danger"), " ",
                        tags.a("Cancel", href="./"),
                    ),
                )
            ),
            script=False,  # (a page for browsers without JavaScript)
        )
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return renderElement(request, page)


def removalQuestion(balancer, member):
    """
    What removing C{member} will do, in a sentence.
    """
    inFlight = member.active
    finishing = (
        f"its {inFlight} request{'s' if inFlight != 1 else ''} in flight will finish first"
        if inFlight else "nothing is in flight"
    )
    return (
        f"Remove {member.name} from {balancer.name}? It gets no new requests from now, and "
        f"{finishing}.  To have it back, add it again (or put it in the config file)."
    )
