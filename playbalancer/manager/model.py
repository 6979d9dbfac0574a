"""
The manager's view of balancers: status as JSON-ready dicts, and changes
from the API or the page checked and applied through the balancer's
public methods.
"""

from __future__ import annotations

import math

from playbalancer import __version__
from playbalancer.balancer import ADMIN_STATES, Member
from playbalancer.config import NAME, ConfigError, memberURL


class ChangeError(Exception):
    """
    A change the manager refuses; C{code} is the HTTP status to answer.
    """

    def __init__(self, code, message, **details):
        Exception.__init__(self, message)
        self.code = code
        self.message = message
        #: More fields for the JSON answer (C{needs_force}).
        self.details = details


def _finite(value):
    return value is not None and math.isfinite(value)


def _health(settings):
    if settings is None:
        return None
    return {
        "path": settings.path,
        "interval": settings.interval,
        "timeout": settings.timeout,
        "rise": settings.rise,
        "fall": settings.fall,
        "expect": settings.expect,
    }


def _check(lastCheck):
    if lastCheck is None:
        return None
    ok, detail, at, duration = lastCheck
    return {"ok": ok, "detail": detail, "at": at, "duration_ms": _ms(duration)}


def _ms(seconds):
    return None if seconds is None else round(seconds * 1000.0, 3)


def memberStatus(member, now, taking):
    """
    One member as a JSON-ready dict.

    @param taking: whether it would get a new request now.
    """
    mean, p95 = member.latency(now)
    info = {
        "name": member.name,
        "url": member.url,
        "admin": member.admin,
        "standby": member.standby,
        "weight": member.configuredWeight,
        "effective_weight": round(member.weight, 3),
        "healthy": member.healthy,
        "down_reason": member.downReason,
        "down_since": member.downSince,
        "retry_at": member.downUntil if _finite(member.downUntil) else None,
        "check": _check(member.lastCheck),
        "check_passes": member.checkPasses,
        "active": member.active,
        "requests": member.requests,
        "failures": member.failures,
        "bytes_in": member.bytesIn,
        "bytes_out": member.bytesOut,
        "latency_mean_ms": _ms(mean),
        "latency_p95_ms": _ms(p95),
        "removing": member.removing,
        "taking_traffic": taking,
        "events": [
            {"at": at, "text": text} for at, text in reversed(member.stats.history)
        ],
        "state": None,
        "state_text": None,
    }
    info["state"], info["state_text"] = trafficState(member, now, taking)
    return info


def trafficState(member, now, taking):
    """
    What a person needs to know first about a member: C{(state, text)},
    C{state} one of C{serving}, C{standby}, C{draining}, C{disabled},
    C{removing}, C{down}, C{idle}.
    """
    inFlight = f"{member.active} in flight" if member.active else "nothing in flight"
    if member.removing:
        return "removing", f"removing: {inFlight}"
    if member.admin == "drain":
        return "draining", f"draining: {inFlight}"
    if member.admin == "disabled":
        return "disabled", f"disabled: {inFlight}"
    if not member.healthy:
        if not _finite(member.downUntil):
            again = "back when its health checks pass"
        else:
            wait = max(0, int(round((member.downUntil or now) - now)))
            again = f"retry in {wait}s" if wait else "being retried"
        return "down", f"down: {member.downReason} ({again})"
    if taking:
        if member.ramping:
            share = int(100 * member.weight / member.configuredWeight)
            return "serving", f"taking traffic (slow start: {share}% of its weight)"
        return "serving", "taking traffic"
    if member.configuredWeight == 0:
        return "idle", "weight 0: no new requests"
    if member.standby:
        return "standby", "hot standby, idle"
    return "idle", "idle"


def balancerStatus(balancer):
    """
    One balancer as a JSON-ready dict, members in configured order.
    """
    now = balancer.seconds()
    taking = set(balancer.candidates())
    members = {m.name: balancerMemberStatus(balancer, m, now, m in taking) for m in balancer.members}
    sticky = balancer.sticky
    return {
        "scheduler": balancer.schedulerName,
        "mode": balancer.mode,
        "retry": balancer.retry,
        "health_checks": balancer.activeChecks,
        "health": _health(balancer.healthSettings),
        "sticky": _sticky(sticky),
        "members": members,
    }


def balancerMemberStatus(balancer, member, now, taking):
    """
    L{memberStatus} of one of C{balancer}'s members, with its sessions
    when the balancer is sticky.
    """
    info = memberStatus(member, now, taking)
    if balancer.sticky is not None:
        _sessions(info, balancer.sticky.status(member), now)
    return info


def _sticky(sticky):
    """
    What a balancer's session affinity is, for people, or L{None}.
    """
    if sticky is None:
        return None
    config = sticky.config
    if config.insertsCookie:
        how = f"cookie {config.cookie} (inserted)"
    else:
        how = " or ".join(
            f"{kind} {name}" for kind, name in (("cookie", config.sessionCookie), ("URL parameter", config.sessionParam))
            if name is not None
        ) + " (route suffix)"
    return {"by": how, "drain_seconds": config.drainSeconds}


def _sessions(info, sessions, now):
    """
    Add a member's sessions to its status: how many were seen in the last
    minute and, while it drains, until when it keeps them.
    """
    info.update(sessions)
    if info["state"] == "draining":
        seen = sessions["sessions_last_minute"]
        left = max(0, int(math.ceil(sessions["sessions_until"] - now)))
        keeps = f"keeps them {left}s more" if left else "they have moved"
        info["state_text"] += f", {seen} sessions seen in the last minute ({keeps})"


def status(balancers, now):
    """
    The whole cluster, as C{GET /api/status} answers it.
    """
    return {
        "version": __version__,
        "time": now,
        "balancers": {name: balancerStatus(b) for name, b in balancers.items()},
    }


def listenerStatus(listeners):
    """
    The HTTP listeners and their routes in the order they match, with
    their counters (summed over the workers), as C{GET /api/status}
    answers them under C{"listeners"}.

    @param listeners: C{[(name, front factory)]}.
    """
    listed = []
    for name, factory in listeners:
        routeCounters = getattr(factory, "routeCounters", None)
        if routeCounters is None:
            continue
        listed.append(
            {
                "name": name,
                "routes": [dict(counts, name=route) for route, counts in routeCounters()],
            }
        )
    return listed


#: Days before a certificate's expiry from which the page warns.
EXPIRY_WARNING_DAYS = 14


def certificateStatus(listeners, now):
    """
    The certificates of the TLS listeners, as C{GET /api/status} answers
    them under C{"certificates"}: for each, its listener, the names it
    answers for, its file, whether it is the listener's default, and its
    expiry (C{not_after}, ISO 8601 UTC, and C{expires}, seconds since the
    epoch) with the days left from C{now}.

    @param listeners: the listener configs (see
        L{playbalancer.config.tls.ListenerCertificates}).
    """
    from playbalancer.running import listenerName

    listed = []
    for listener in listeners:
        certificates = getattr(listener, "certificates", None)
        if certificates is None:
            continue
        for certificate in certificates.all:
            expires = certificate.notAfter.timestamp()
            listed.append(
                {
                    "listener": listenerName(listener.endpoint),
                    "names": list(certificate.names),
                    "file": certificate.path,
                    "default": certificate is certificates.default,
                    "not_after": certificate.notAfter.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "expires": expires,
                    "days_left": round((expires - now) / 86400.0, 1),
                }
            )
    return listed


def checkName(value, what):
    """
    A balancer or member name, or L{ChangeError} 400.
    """
    if not isinstance(value, str) or not NAME.match(value):
        raise ChangeError(400, f"bad {what} name: expected 1-64 of A-Z a-z 0-9 . _ -")
    return value


def find(balancers, balancerName, memberName=None, removing=False):
    """
    The balancer (and member) named, or L{ChangeError} 400/404.

    @param removing: whether a member being removed still counts.
    """
    checkName(balancerName, "balancer")
    balancer = balancers.get(balancerName)
    if balancer is None:
        raise ChangeError(404, f"no balancer named {balancerName!r}")
    if memberName is None:
        return balancer, None
    checkName(memberName, "member")
    member = balancer.member(memberName)
    if member is None or (member.removing and not removing):
        raise ChangeError(404, f"no member named {memberName!r} in balancer {balancerName!r}")
    return balancer, member


_CHANGE_KEYS = {"admin", "standby", "weight", "reset", "force"}


def usable(member):
    """
    Whether C{member} could take a new request now: enabled, of a weight
    above zero, healthy and not being removed (a hot standby counts).
    """
    return (
        not member.removing
        and member.admin == "enabled"
        and member.configuredWeight > 0
        and member.healthy
    )


def guardLastUsable(balancer, member, admin="enabled", weight=None, removing=False):
    """
    Refuse (L{ChangeError} 409, C{needs_force}) a change that would leave
    C{balancer} without a usable member: C{member} is the last one, and
    would be drained, disabled, given weight 0 or removed.
    """
    weight = member.configuredWeight if weight is None else weight
    if not usable(member) or (admin == "enabled" and weight > 0 and not removing):
        return
    if any(usable(other) for other in balancer.members if other is not member):
        return
    if removing:
        what = "removing it"
    else:
        what = {"drain": "draining it", "disabled": "disabling it"}.get(admin, "weight 0")
    inFlight = f" ({member.active} in flight would finish)" if member.active else ""
    raise ChangeError(
        409,
        f"{member.name} is the last usable member of {balancer.name}: after {what}, "
        f"every new request to {balancer.name} gets 503{inFlight}; force it to go ahead",
        needs_force=True,
    )


def applyChange(balancer, member, change, who):
    """
    Apply a C{POST} body: any of C{admin}, C{standby}, C{weight}, C{reset},
    and C{force} to go past L{guardLastUsable}.  Everything is checked
    before anything changes.
    """
    checked = checkChange(member, change)
    if not checked["force"]:
        guardLastUsable(balancer, member, checked["admin"], checked["weight"])
    balancer.setAdmin(member, checked["admin"], who)
    balancer.setStandby(member, checked["standby"], who)
    balancer.setWeight(member, checked["weight"], who)
    if checked["reset"]:
        balancer.reset(member, who)


def checkChange(member, change):
    """
    Check a C{POST} body; the member's admin, standby and weight after it,
    and whether to reset and to force.
    """
    if not isinstance(change, dict):
        raise ChangeError(400, "expected a JSON object")
    unknown = set(change) - _CHANGE_KEYS
    if unknown:
        raise ChangeError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    admin = change.get("admin", member.admin)
    if admin not in ADMIN_STATES:
        raise ChangeError(400, f"admin must be one of {', '.join(ADMIN_STATES)}")
    standby = change.get("standby", member.standby)
    if not isinstance(standby, bool):
        raise ChangeError(400, "standby must be true or false")
    weight = change.get("weight", member.configuredWeight)
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 1000000:
        raise ChangeError(400, "weight must be a whole number from 0 to 1000000")
    reset = change.get("reset", False)
    if not isinstance(reset, bool):
        raise ChangeError(400, "reset must be true or false")
    force = change.get("force", False)
    if not isinstance(force, bool):
        raise ChangeError(400, "force must be true or false")
    return {"admin": admin, "standby": standby, "weight": weight, "reset": reset, "force": force}


def addMember(balancer, name, spec, who, apply=True):
    """
    Apply a C{PUT} body: C{url}, optionally C{standby} and C{weight}.
    """
    checkName(name, "member")
    if not isinstance(spec, dict):
        raise ChangeError(400, "expected a JSON object")
    unknown = set(spec) - {"url", "standby", "weight"}
    if unknown:
        raise ChangeError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    if "url" not in spec:
        raise ChangeError(400, "url is required")
    try:
        url = memberURL(spec["url"], "url", balancer.mode)
    except ConfigError as e:
        raise ChangeError(400, str(e))
    standby = spec.get("standby", False)
    weight = spec.get("weight", 1)
    if not isinstance(standby, bool):
        raise ChangeError(400, "standby must be true or false")
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 1000000:
        raise ChangeError(400, "weight must be a whole number from 0 to 1000000")
    if balancer.member(name) is not None:
        raise ChangeError(409, f"member {name!r} exists in balancer {balancer.name!r}")
    member = Member(name, url, weight=weight, standby=standby)
    if not apply:
        return member  # checked only: the caller adds it
    balancer.addMember(member, who)
    return member
