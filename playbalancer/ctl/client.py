"""
The manager's JSON API seen from the command line: a client
(L{ManagerClient}), the one error the commands report (L{CommandError}),
and waiting for a drain (L{waitDrained}).  L{playbalancer.ctl.cli} and
L{playbalancer.ctl.rolling} both build on it.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import treq
from hyperlink import URL

from twisted.internet import defer, error
from twisted.internet.task import deferLater
from twisted.web.client import (
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.error import SchemeNotSupported

__all__ = [
    "POLL_INTERVAL",
    "REQUEST_TIMEOUT",
    "CommandError",
    "ManagerError",
    "networkReason",
    "decodeAnswer",
    "ManagerClient",
    "findMember",
    "remaining",
    "waitDrained",
]

#: Seconds between two status polls of C{drain --wait}.
POLL_INTERVAL = 0.2
#: Seconds one API request may take before the command gives up.
REQUEST_TIMEOUT = 30.0


class CommandError(Exception):
    """
    A failure told to the user in one line.
    """


class ManagerError(CommandError):
    """
    The manager answered with an error status C{code}.
    """

    def __init__(self, code, message):
        CommandError.__init__(self, message)
        self.code = code


# The manager's API


_NETWORK_ERRORS = (
    error.ConnectError,
    error.DNSLookupError,
    error.ConnectingCancelledError,
    error.ConnectionLost,
    error.ConnectionDone,
    defer.CancelledError,
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
    SchemeNotSupported,
)


def _cancelled(e):
    reasons = getattr(e, "reasons", None) or []
    return any(r.check(defer.CancelledError) for r in reasons)


def networkReason(e, timeout):
    """
    A few words on why a request to the manager failed on the way.
    """
    if _cancelled(e):
        return f"no answer within {timeout:g}s"
    if isinstance(e, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, (error.DNSLookupError, error.UnknownHostError)):
        return "unknown host"
    if isinstance(e, (defer.CancelledError, error.ConnectingCancelledError, error.TimeoutError)):
        return f"no answer within {timeout:g}s"
    if isinstance(e, SchemeNotSupported):
        return "unsupported URL scheme"
    if isinstance(e, error.ConnectError):
        return str(e).strip().rstrip(".") or type(e).__name__
    return "the connection was lost"


def decodeAnswer(base, code, body, hasToken):
    """
    The JSON object of a 2xx answer, or L{CommandError} saying what the
    manager refused.
    """
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        value = None
    if 200 <= code < 300:
        if not isinstance(value, dict):
            raise CommandError(f"{base} did not answer JSON; is it the manager?")
        return value
    message = value.get("error") if isinstance(value, dict) else None
    if not isinstance(message, str) or not message:
        message = f"the manager answered HTTP {code}"
    if isinstance(value, dict) and value.get("needs_force") is True:
        message += " (--force)"
    if code in (401, 403):
        hint = " (give --token-file)" if code == 401 and not hasToken else ""
        raise ManagerError(code, f"the manager refused: {message}{hint}")
    raise ManagerError(code, message)


class ManagerClient:
    """
    The manager's JSON API through a treq C{HTTPClient} (or C{treq} itself).

    @param base: the manager's URL, e.g. C{http://127.0.0.1:8081}.
    @param token: the bearer token, or C{None}.
    """

    def __init__(self, http, base, token=None, reactor=None, timeout=REQUEST_TIMEOUT):
        self.http = http
        self.base = base.rstrip("/")
        self.token = token
        self.reactor = reactor
        self.timeout = timeout

    def memberURL(self, balancer, member):
        return (
            f"{self.base}/api/balancers/{quote(balancer, safe='')}"
            f"/members/{quote(member, safe='')}"
        )

    async def request(self, method, url, body=None, timeout=None):
        """
        One API request: the answer's JSON object, or L{CommandError}.

        @param timeout: seconds to wait (by default the client's).
        """
        timeout = self.timeout if timeout is None else timeout
        headers = {}
        data = None
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode("utf-8")
        try:
            response = await self.http.request(
                method,
                _ASCIIURL.from_text(url),
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=timeout,
                reactor=self.reactor,
            )
            content = await treq.content(response)
        except _NETWORK_ERRORS as e:
            reason = networkReason(e, timeout)
            raise CommandError(f"cannot reach the manager at {self.base}: {reason}")
        return decodeAnswer(self.base, response.code, content, self.token is not None)

    def status(self):
        return self.request("GET", f"{self.base}/api/status")

    def change(self, balancer, member, **fields):
        """
        Change C{admin}, C{standby}, C{weight} or C{reset} of a member.
        """
        return self.request("POST", self.memberURL(balancer, member), fields)

    def add(self, balancer, member, url, standby=None, weight=None):
        body = {"url": url}
        if standby is not None:
            body["standby"] = standby
        if weight is not None:
            body["weight"] = weight
        return self.request("PUT", self.memberURL(balancer, member), body)

    def remove(self, balancer, member, force=False):
        url = self.memberURL(balancer, member)
        return self.request("DELETE", url + "?force=true" if force else url)

    def reload(self):
        """
        Have the balancer read its config file again and apply it.
        """
        return self.request("POST", f"{self.base}/api/reload", {})

    def upgrade(self):
        """
        Have the balancer hand over to a new process of itself.
        """
        from playbalancer.upgrade import READY_TIMEOUT

        return self.request(
            "POST", f"{self.base}/api/upgrade", {}, timeout=max(self.timeout, READY_TIMEOUT + 10)
        )


# Formatting


class _ASCIIURL(URL):
    """
    A URL already in ASCII, passed to treq as it is: hyperlink's
    C{to_uri()} runs an IPv6 literal host (C{[::1]}) through IDNA, which
    refuses it.
    """

    def to_uri(self):
        return self


def findMember(status, balancer, name):
    """
    A member's dict in a status, or L{CommandError}.
    """
    member = status.get("balancers", {}).get(balancer, {}).get("members", {}).get(name)
    if member is None:
        raise CommandError(f"{balancer}/{name} is no longer in the manager's status")
    return member


def remaining(member):
    """
    What a drain still waits for: the member's requests in flight, or in
    cluster mode (or with workers) those of the whole tier plus one for
    each node (or worker) that has not applied the drain yet.
    """
    tier = member.get("tier")
    if tier is None:
        return member.get("active") or 0
    return tier["inflight"] + len(tier["behind"])


def sessionsLeft(member, now):
    """
    Seconds a draining member of a sticky balancer still serves its
    sessions, by the manager's clock C{now} (0 without affinity).
    """
    until = member.get("sessions_until")
    if until is None or now is None:
        return 0
    return max(0, until - now)


async def waitDrained(
    client, clock, balancer, name, member, timeout, progress=None, interval=POLL_INTERVAL
):
    """
    Poll the status until the member has no active request and, on a
    sticky balancer, its sessions have moved (C{drain_seconds} after the
    drain began); its last dict.

    @param timeout: seconds before L{CommandError}; 0 waits forever.
    @param progress: where to tell how many requests (and sessions)
        remain, or C{None}.
    """
    deadline = clock.seconds() + timeout if timeout else None
    managerNow = None
    if "sessions_until" in member:
        status = await client.status()
        member, managerNow = findMember(status, balancer, name), status.get("time")
    active = remaining(member)
    sessions = None  # (said at the first poll)
    while active or sessionsLeft(member, managerNow):
        if deadline is not None and clock.seconds() >= deadline:
            left = sessionsLeft(member, managerNow)
            if active:
                keeps = f" and keeps its sessions {left:.0f}s more" if left else ""
                still = f"still has {active} active requests{keeps}"
            else:
                still = f"still serves its sessions for {left:.0f}s more (its balancer's drain_seconds)"
            raise CommandError(f"{balancer}/{name} {still} after {timeout:g}s; it stays in drain")
        await deferLater(clock, interval, lambda: None)
        status = await client.status()
        member, managerNow = findMember(status, balancer, name), status.get("time")
        if member.get("admin") == "enabled":
            raise CommandError(f"{balancer}/{name} was enabled again while draining")
        now = remaining(member)
        if progress is not None and now not in (active, 0):
            progress.write(f"{balancer}/{name}: {now} active\n")
        active = now
        seen = member.get("sessions_last_minute")
        if progress is not None and seen != sessions and sessionsLeft(member, managerNow):
            progress.write(
                f"{balancer}/{name}: {seen} sessions seen in the last minute; they move in "
                f"{sessionsLeft(member, managerNow):.0f}s\n"
            )
        sessions = seen
    if progress is not None:
        progress.write(f"{balancer}/{name}: drained\n")
    return member
