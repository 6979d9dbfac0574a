"""
The records a node reads from the store, checked before anything is
applied: the same rules as the manager's API (names, admin, standby,
weight, the member URL), so a record the API would refuse is skipped.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

from playbalancer.config import ConfigError, memberURL
from playbalancer.manager.model import ChangeError, checkChange, checkName

#: A member as the API adds one, for checking a record of a new member.
_NEW_MEMBER = SimpleNamespace(admin="enabled", standby=False, configuredWeight=1)


class RecordError(Exception):
    """
    A record that cannot be applied; the message says why.
    """


def showKey(key):
    """
    A store key as text for a log line, whatever its bytes.
    """
    return key.decode("utf-8", "backslashreplace")


def _decode(value):
    try:
        return json.loads(value)
    except ValueError:  # UnicodeDecodeError too
        raise RecordError("not UTF-8 JSON") from None


def _name(raw, what):
    try:
        return checkName(raw.decode("utf-8"), what)
    except UnicodeDecodeError:
        raise RecordError(f"the {what} name is not UTF-8") from None
    except ChangeError as e:
        raise RecordError(e.message) from None


def adminKey(name):
    """
    C{(balancer, member)} of the part of an admin key after the prefix.
    """
    balancerName, _, memberName = name.partition(b"/")
    return _name(balancerName, "balancer"), _name(memberName, "member")


def nodeKey(name):
    """
    The node name of the part of a node key after the prefix.
    """
    return _name(name, "node")


def adminRecord(balancer, memberName, value):
    """
    The record of one member, checked as the API checks a change (and, for
    a member added at run time, its URL); the decoded JSON object.

    @param value: the record's bytes, or an already decoded object.
    @raise RecordError: saying what is wrong.
    """
    record = _decode(value) if isinstance(value, bytes) else value
    if not isinstance(record, dict):
        raise RecordError("expected a JSON object")
    if not isinstance(record.get("who", ""), str):
        raise RecordError("who must be a string")
    if not isinstance(record.get("removed", False), bool):
        raise RecordError("removed must be true or false")
    if "url" in record:
        try:
            memberURL(record["url"], "url", getattr(balancer, "mode", "http"))
        except ConfigError as e:
            raise RecordError(str(e)) from None
    member = balancer.member(memberName)
    if member is None or member.removing:
        member = _NEW_MEMBER
    fields = {k: record[k] for k in ("admin", "standby", "weight") if k in record}
    try:
        checkChange(member, fields)
    except ChangeError as e:
        raise RecordError(e.message) from None
    return record


def nodeStatus(value):
    """
    A node's published status: C{revision}, C{inflight} per member and
    C{at}; the decoded JSON object.

    @raise RecordError: saying what is wrong.
    """
    status = _decode(value)
    if not isinstance(status, dict):
        raise RecordError("expected a JSON object")
    revision = status.get("revision")
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise RecordError("revision must be a whole number >= 0")
    inflight = status.get("inflight")
    if not isinstance(inflight, dict) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in inflight.values()
    ):
        raise RecordError("inflight must map members to whole numbers >= 0")
    at = status.get("at", 0)
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        raise RecordError("at must be a number")
    return status
