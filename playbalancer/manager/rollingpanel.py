"""
The manager page's rolling restart panel as the server draws it: each
balancer's current or last run (its members' steps, a progress bar) and,
where the config gives a command, a form that starts one.  The page's
script draws the same panel again every second (C{GET api/rolling});
without JavaScript this is what shows, and the form asks before it starts
(see L{playbalancer.manager.page.ActionsResource}).
"""

from __future__ import annotations

from twisted.web.template import tags

__all__ = ["elapsed", "rollingSection", "startQuestion"]


def elapsed(since, until):
    """
    C{"42s"} or C{"3m 05s"}, as the page's script writes it.
    """
    seconds = max(0, round(until - since))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _summary(run, now):
    reason = f": {run['reason']}" if run["reason"] else ""
    who = f" by {run['who']}" if run["who"] else ""
    return (
        f"{run['state']}{reason} \u00b7 {run['done']}/{run['total']} members \u00b7 "
        f"{elapsed(run['started'], run['finished'] or now)} \u00b7 from the {run['origin']}{who}"
    )


def _steps(run, now):
    items = []
    for member in run["members"]:
        detail = f" ({member['detail']})" if member["detail"] else ""
        since = f", {elapsed(member['since'], now)}" if member["since"] else ""
        items.append(
            tags.li(f"{member['name']}: {member['step']}{detail}{since}",
                    class_=f"step-{member['step']}", **{"data-member": member["name"],
                                                        "data-step": member["step"]})
        )
    return tags.ol(class_="steps")(*items)


def _startForm(name, csrf):
    return tags.form(method="post", action="actions", class_="start-rolling")(
        tags.input(type="hidden", name="csrf", value=csrf),
        tags.input(type="hidden", name="action", value="rolling-restart"),
        tags.input(type="hidden", name="balancer", value=name),
        tags.button(f"Start a rolling restart of {name}", type="submit"),
    )


def rollingSection(status, csrf):
    """
    The panel for C{status} (what C{GET api/rolling} answers); hidden when
    no balancer has a run or a command.
    """
    now = status["time"]
    blocks = []
    for name, entry in status["balancers"].items():
        run = entry["run"]
        if run is None and not entry["configured"]:
            continue
        block = tags.div(class_="rolling-run", **{"data-balancer": name})(
            tags.h2(f"rolling restart of {name} ", tags.small(_summary(run, now) if run else "not running"))
        )
        if run is not None:
            block(
                tags.progress(value=str(run["done"]), max=str(max(1, run["total"])),
                              **{"aria-label": "members restarted"}),
                _steps(run, now),
            )
        if entry["configured"] and not (run is not None and run["state"] == "running"):
            block(_startForm(name, csrf))
        blocks.append(block)
    attributes = {"id": "rolling", "class_": "panel rolling", "aria-live": "polite"}
    if not blocks:
        attributes["hidden"] = "hidden"
    return tags.section(**attributes)(*blocks)


def startQuestion(balancer):
    """
    What starting a rolling restart of C{balancer} will do, in a sentence.
    """
    command = balancer.rollingRestart.command
    return (
        f"Restart every member of {balancer.name} in turn? Each is drained first (the requests "
        f"in flight finish), then the configured command runs for it ({command}), and it is "
        f"enabled again once it passes its health checks; a failure stops the run there."
    )
