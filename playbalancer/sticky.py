"""
Session affinity: a request that belongs to a session goes to the member
that has it, before any scheduler is asked.

Two ways to know the member, as Apache and HAProxy have them:

- L{InsertedCookie}: the balancer sets a cookie of its own on the first
  response (an opaque token of the member, and a random session id) and
  routes by it after (HAProxy's C{cookie SERVERID insert}).
- L{SessionRoute}: the application's own session id ends in C{.ROUTE}, in
  a cookie or a URL parameter (Apache's C{stickysession=JSESSIONID} with
  C{route=}); the balancer only reads it.

An affinity holds while its member is enabled and not resting after a
failure.  A draining member keeps the requests of its sessions for
C{drain_seconds} after the drain began, and gets no new ones; a disabled,
removed or failed member loses them at once, and the scheduler picks (the
inserted cookie is then replaced).
"""

from __future__ import annotations

import hashlib
import os
import re
import weakref
from collections import OrderedDict

#: Seconds over which sessions are counted for the manager.
SESSION_WINDOW = 60.0
#: Sessions remembered per member for that count, at most.
SESSION_MEMORY = 4096

_INSERTED = re.compile(r"^([0-9a-f]{12})\.([0-9a-f]{16})$")


def _text(value):
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


class RecentSessions:
    """
    The distinct sessions seen on each member in the last
    L{SESSION_WINDOW} seconds: at most L{SESSION_MEMORY} per member, each
    kept as an 8-byte digest of its id (a client sending long made-up ids
    cannot grow it), and forgotten with its member.
    """

    def __init__(self):
        self._seen = weakref.WeakKeyDictionary()

    def note(self, member, session, now):
        seen = self._seen.get(member)
        if seen is None:
            seen = self._seen[member] = OrderedDict()
        key = hashlib.blake2b(session.encode("utf-8", "surrogateescape"), digest_size=8).digest()
        seen.pop(key, None)
        seen[key] = now
        self._forget(seen, now)

    def count(self, member, now):
        seen = self._seen.get(member)
        if not seen:
            return 0
        self._forget(seen, now)
        return len(seen)

    def _forget(self, seen, now):
        while seen:
            key, when = next(iter(seen.items()))
            if when > now - SESSION_WINDOW and len(seen) <= SESSION_MEMORY:
                break
            del seen[key]


class _Affinity:
    """
    What both kinds share: when an affinity holds, drain bookkeeping, the
    sessions seen.  Subclasses read the request (L{_found}).

    @ivar config: the L{playbalancer.config.sticky.StickyConfig}.
    """

    def __init__(self, balancer, config, routes=None):
        self.balancer = balancer
        self.config = config
        #: Route -> member name, for members whose route is not their name.
        self.routes = dict(routes or {})
        self.sessions = RecentSessions()

    def takeOver(self, older):
        """
        Carry on from the affinity this one replaces (a reload): the
        sessions it saw.
        """
        self.sessions = older.sessions

    def drainEnds(self, member):
        """
        When a draining C{member} stops serving its sessions (on the
        balancer's clock), or L{None} if it is not draining.  The drain's
        start is the member's own (L{playbalancer.balancer.Member.drainSince}),
        which workers, the state file and cluster peers carry.
        """
        if member.admin != "drain":
            return None
        if member.drainSince is None:  # (a state from before it was kept)
            member.drainSince = self.balancer.seconds()
        return member.drainSince + self.config.drainSeconds

    def memberFor(self, request, exclude=()):
        """
        The member C{request}'s affinity names, if that affinity holds;
        else L{None} (the scheduler picks).
        """
        found = self._found(request)
        if found is None:
            return None
        name, session = found
        balancer = self.balancer
        member = balancer.member(name)
        if member is None or member in exclude or member.removing:
            return None
        now = balancer.seconds()
        if member.admin == "drain":
            if now >= self.drainEnds(member):
                return None
        elif member.admin != "enabled":
            return None
        if member.downUntil is not None and member.downUntil > now:
            # Resting after a failure: only while every member rests (and
            # all are tried anyway) does the session stay.
            if member.admin != "enabled" or member not in balancer.candidates(exclude):
                return None
        self.sessions.note(member, session, now)
        return member

    def responseHeader(self, request, member, status=200):
        """
        The C{(name, value)} header that gives the client its affinity to
        C{member} in a response with C{status}, or L{None} when it has it
        already (or the application sets it, or the response is a 304).
        """
        return None

    def status(self, member):
        """
        What the manager shows of C{member}'s sessions.
        """
        now = self.balancer.seconds()
        # (With workers, they see the sessions: the parent shows their sum,
        # in which a session seen by two workers counts twice.)
        seen = getattr(member, "workerSessions", None)
        return {
            "sessions_last_minute": self.sessions.count(member, now) if seen is None else seen,
            "sessions_until": self.drainEnds(member),
        }


class InsertedCookie(_Affinity):
    """
    The balancer's own cookie: C{TOKEN.SESSION}, C{TOKEN} a digest of the
    balancer's and member's names (the same in every worker and node, and
    after a restart; it does not tell the member's name), C{SESSION} random.
    """

    def __init__(self, balancer, config, routes=None):
        _Affinity.__init__(self, balancer, config, routes)
        self._tokens = {}

    def token(self, memberName):
        token = self._tokens.get(memberName)
        if token is None:
            key = f"{self.balancer.name}\0{memberName}".encode("utf-8")
            token = self._tokens[memberName] = hashlib.blake2b(key, digest_size=6).hexdigest()
        return token

    def _memberOfToken(self, token):
        for member in self.balancer.members:
            if self.token(member.name) == token:
                return member.name
        return None

    def _found(self, request):
        value = _text(request.cookie(self.config.cookie))
        match = _INSERTED.match(value) if value else None
        if match is None:
            return None
        name = self._memberOfToken(match.group(1))
        return None if name is None else (name, match.group(2))

    def responseHeader(self, request, member, status=200):
        if status == 304:
            # (A cache would update what it stored with it: not a session.)
            return None
        found = self._found(request)
        if found is not None and found[0] == member.name:
            return None
        config = self.config
        value = f"{config.cookie}={self.token(member.name)}.{os.urandom(8).hex()}; Path=/; HttpOnly; SameSite=Lax"
        if request.secure:
            value += "; Secure"
        if config.maxAge is not None:
            value += f"; Max-Age={config.maxAge}"
        return (b"Set-Cookie", value.encode("ascii"))


class SessionRoute(_Affinity):
    """
    The route at the end of the application's session id (C{ID.ROUTE}): in
    the URL parameter (C{;name=ID.ROUTE} in the path, or C{name=ID.ROUTE}
    in the query), else in the session cookie, as Apache looks.
    """

    def _found(self, request):
        config = self.config
        session = None
        if config.sessionParam is not None:
            session = _parameter(request, config.sessionParam)
        if session is None and config.sessionCookie is not None:
            session = _text(request.cookie(config.sessionCookie))
        if not session or "." not in session:
            return None
        route = session.rsplit(".", 1)[1]
        return self.routes.get(route, route), session


def _parameter(request, name):
    """
    The value of URL parameter C{name}: a path parameter (C{;name=v}), else
    a query parameter (C{name=v}); L{None} if neither.
    """
    path, query = _text(request.path), _text(request.query)
    prefix = name + "="
    for segment in (path or "").split("/"):
        for parameter in segment.split(";")[1:]:
            if parameter.startswith(prefix):
                return parameter[len(prefix):]
    for pair in (query or "").split("&"):
        if pair.startswith(prefix):
            return pair[len(prefix):]
    return None


def affinityFor(balancer, config, routes=None):
    """
    The affinity of C{balancer} as C{config} (a
    L{playbalancer.config.sticky.StickyConfig}) says, or L{None}.

    @param routes: route -> member name, for members with a C{route}.
    """
    if config is None:
        return None
    kind = InsertedCookie if config.insertsCookie else SessionRoute
    return kind(balancer, config, routes)
