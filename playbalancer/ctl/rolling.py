"""
C{playbalancer rolling-restart}: upgrade every member of a balancer in
turn without a failed request.  For each member (standbys last): drain it,
wait until nothing is in flight, run the operator's command, wait until the
member passes its health checks C{rise} times, enable it, and only then go
on.  Any failure stops there, leaving that member drained and the others
untouched.
"""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater

from playbalancer.ctl.client import CommandError, findMember, waitDrained
from playbalancer.ctl.progressbar import ProgressBar
from playbalancer.ctl.rollingreport import RollingReport

__all__ = ["POLL", "restartOrder", "othersUsable", "runCommand", "waitHealthy", "rollingRestart"]

#: Seconds between status polls while waiting for health checks.
POLL = 0.2


def restartOrder(balancer, only=None):
    """
    The member names to restart: the ones asked for (or all), primaries
    first and standbys last, each group in configured order.

    @raise CommandError: for a name the balancer does not have.
    """
    members = balancer["members"]
    names = list(members)
    if only:
        unknown = [name for name in only if name not in members]
        if unknown:
            raise CommandError(f"no member named {', '.join(unknown)}")
        names = [name for name in names if name in only]
    return [n for n in names if not members[n]["standby"]] + [
        n for n in names if members[n]["standby"]
    ]


def othersUsable(balancer, name):
    """
    The members other than C{name} that could take its traffic.
    """
    return [
        other
        for other, m in balancer["members"].items()
        if other != name
        and m["admin"] == "enabled"
        and m["weight"] > 0
        and m["healthy"]
        and not m["removing"]
    ]


class _Command(ProcessProtocol):
    """
    Runs the operator's command, passing its output through.
    """

    def __init__(self, out):
        self.out = out
        self.done = Deferred()

    def outReceived(self, data):
        self.out.write(data.decode("utf-8", "replace"))

    errReceived = outReceived

    def processExited(self, reason):
        # Not processEnded: a command that leaves a daemon behind (the app it
        # restarted) may keep our pipes open long after it is done.
        self.done.callback(reason.value.exitCode)


def runCommand(reactor, command, environment, out):
    """
    Run C{command} with C{/bin/sh}; its exit status.
    """
    protocol = _Command(out)
    env = dict(os.environ)
    env.update(environment)
    transport = reactor.spawnProcess(protocol, "/bin/sh", ["/bin/sh", "-c", command], env=env)
    transport.closeStdin()
    return protocol.done


async def waitHealthy(client, clock, balancerName, name, rise, since, timeout):
    """
    Poll until C{rise} health checks of the member in a row passed after
    the server time C{since}; its last status dict.
    """
    deadline = clock.seconds() + timeout
    seen = None
    passes = 0
    while True:
        status = await client.status()
        member = findMember(status, balancerName, name)
        check = member.get("check")
        if check and check["at"] > since and check["at"] != seen:
            seen = check["at"]
            passes = passes + 1 if check["ok"] else 0
            if passes >= rise and member["healthy"]:
                return member
        if clock.seconds() >= deadline:
            last = f"; last check: {check['detail']}" if check else ""
            raise CommandError(
                f"{balancerName}/{name} did not pass {rise} health checks within "
                f"{timeout:g}s{last}; it stays drained"
            )
        await deferLater(clock, POLL, lambda: None)


class _StepLines:
    """
    A file for L{waitDrained}'s progress lines that writes each as a step
    of the member C{name}.
    """

    def __init__(self, step, name, prefix):
        self._step, self._name, self._prefix = step, name, prefix

    def write(self, text):
        for line in text.splitlines():
            self._step(self._name, line[len(self._prefix):] if line.startswith(self._prefix) else line)


async def rollingRestart(client, options, out, reactor, report=None):
    """
    The C{rolling-restart} command (and a rolling restart the manager runs
    itself, with its own C{client} and C{report}: see
    L{playbalancer.manager.rollout}).

    @param report: where the steps are reported; by default the manager
        behind C{client} (L{RollingReport}).
    """
    balancerName = options.balancer
    status = await client.status()
    balancer = status["balancers"].get(balancerName)
    if balancer is None:
        raise CommandError(f"no balancer named {balancerName!r}")
    health = balancer.get("health")
    if not health:
        raise CommandError(
            f"balancer {balancerName!r} has no health checks ([balancer.{balancerName}.health]):"
            " without them a restarted member cannot be known to be back"
        )
    only = [n for n in options.members.split(",") if n] if options.members else None
    order = restartOrder(balancer, only)
    begun = reactor.seconds()

    bar = ProgressBar(out, len(order))

    def step(name, text):
        bar.line(f"[{reactor.seconds() - begun:6.1f}s] {balancerName}/{name}: {text}")
        if text == "enabled" or text.startswith("skipped"):
            bar.advance()

    if report is None:
        report = RollingReport(client, balancerName, reactor)
    await report.start(order)
    current = None
    try:
        for current in order:
            await _restartMember(
                client, options, out, reactor, balancerName, current, health, step, report, bar
            )
    except CommandError as e:
        bar.hide()
        if current is not None:
            await report.step(current, "failed", str(e))
        await report.finish("failed", str(e))
        raise
    await report.finish("done")
    bar.hide()
    out.write(f"{balancerName}: {len(order)} member(s) restarted in {reactor.seconds() - begun:.1f}s\n")


async def _restartMember(client, options, out, reactor, balancerName, name, health, step, report, bar):
    """
    Restart the member C{name}, or leave it as it is when an operator
    drained or disabled it; L{CommandError} saying why it stopped.
    """
    balancer = (await client.status())["balancers"][balancerName]
    member = balancer["members"][name]
    if member["admin"] != "enabled":
        # Drained or disabled on purpose: restarting it would enable it.
        step(name, f"skipped: it is {member['admin']}")
        await report.step(name, "skipped", f"it is {member['admin']}")
        return
    if not othersUsable(balancer, name):
        raise CommandError(
            f"refusing to drain {balancerName}/{name}: no other member could take its traffic"
        )
    step(name, "drain")
    member = await client.change(balancerName, name, admin="drain")
    inFlight = f"{member['active']} in flight" if member.get("active") else "nothing in flight"
    await report.step(name, "draining", inFlight)
    if member.get("active"):
        step(name, f"waiting for {inFlight}")
    progress = None
    if "sessions_until" in member:
        # A sticky balancer: the member keeps its sessions a while.
        step(name, f"keeping its sessions for up to {balancer['sticky']['drain_seconds']:g}s")
        progress = _StepLines(step, name, f"{balancerName}/{name}: ")
    await waitDrained(client, reactor, balancerName, name, member, options.timeout, progress)
    step(name, f"run: {options.exec}")
    await report.step(name, "running", options.exec)
    bar.hide()  # (the command's output comes next)
    code = await runCommand(
        reactor,
        options.exec,
        {
            "PLAYBALANCER_BALANCER": balancerName,
            "PLAYBALANCER_MEMBER": name,
            "PLAYBALANCER_URL": member["url"],
        },
        out,
    )
    if code != 0:
        raise CommandError(
            f"the command failed for {balancerName}/{name} (exit {code}); it stays drained"
        )
    since = (await client.status())["time"]
    step(name, f"waiting for {health['rise']} passing health checks")
    await report.step(name, "health", f"waiting for {health['rise']} passing checks")
    await waitHealthy(client, reactor, balancerName, name, health["rise"], since, options.timeout)
    await client.change(balancerName, name, admin="enabled")
    step(name, "enabled")
    await report.step(name, "enabled")
