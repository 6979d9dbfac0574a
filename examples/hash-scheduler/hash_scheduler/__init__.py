"""
A consistent-hashing scheduler for playbalancer: requests with the same key
(a header, a cookie, the path or the client address, read from the
L{IRequestView} the balancer passes to C{pick}) go to the same member.

It uses rendezvous (highest random weight) hashing: every candidate gets a
score from a hash of its name and the key, and the highest score wins.
Taking a member out moves only the keys that were on it (they go to their
second choice); adding one takes over about its share of keys from the
others, and nothing else moves.  Weights are honoured: a member of weight 2
gets about twice the keys of one of weight 1.

The hash is BLAKE2b, not Python's C{hash()}: it is the same in every
process and after every restart, so the workers of one balancer, and
several balancers, agree on where a key goes.
"""

from __future__ import annotations

import hashlib
import math

from zope.interface import implementer

from twisted.plugin import IPlugin

from playbalancer.interfaces import IScheduler, ISchedulerFactory

__all__ = ["RendezvousHashScheduler", "HashSchedulerFactory", "hashScheduler", "parseKey"]

_KNOWN_OPTIONS = frozenset(["key"])

#: The characters of an HTTP token (RFC 9110 5.6.2): header and cookie names.
_TOKEN = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

#: Hashes are cut to 52 bits, so that C{(h + 0.5) / 2**52} is exact and
#: strictly between 0 and 1.
_BITS = 52


def _unit(name, key):
    """
    A number in (0, 1), uniform over keys, from C{name} (C{str}) and C{key}
    (C{bytes}); the same in every process.
    """
    encoded = name.encode("utf-8")
    digest = hashlib.blake2b(
        len(encoded).to_bytes(4, "big") + encoded + key, digest_size=8
    ).digest()
    h = int.from_bytes(digest, "big") >> (64 - _BITS)
    return (h + 0.5) / (1 << _BITS)


def _score(member, key):
    """
    Weighted rendezvous score: C{weight / -ln(u)}.  With equal weights the
    order is that of C{u} itself; with unequal ones each member wins a share
    of keys proportional to its weight.
    """
    return member.weight / -math.log(_unit(member.name, key))


def parseKey(spec):
    """
    Turn the C{key} option into a function from an L{IRequestView} to the
    key (C{bytes}, C{str}) or L{None}.

    @raise ValueError: C{spec} is not one of C{"header:<Name>"},
        C{"cookie:<name>"}, C{"path"} or C{"client"}.
    """
    if not isinstance(spec, str):
        raise ValueError(f"option key must be a string, got {spec!r}")
    kind, colon, name = spec.partition(":")
    if not colon and kind == "path":
        return lambda request: request.path
    if not colon and kind == "client":
        return lambda request: request.clientAddress
    if colon and kind in ("header", "cookie"):
        if not name or not set(name) <= _TOKEN:
            raise ValueError(
                f"option key: {spec!r} needs a {kind} name made of token characters"
            )
        encoded = name.encode("ascii")
        if kind == "header":
            return lambda request: request.header(encoded)
        return lambda request: request.cookie(encoded)
    raise ValueError(
        f'option key must be "header:<Name>", "cookie:<name>", "path" or "client", got {spec!r}'
    )


@implementer(IScheduler)
class RendezvousHashScheduler:
    """
    The candidate with the highest rendezvous score for the request's key.

    A request without a key value (the header or cookie was not sent or is
    empty; in TCP mode, any key but C{client}) is placed by hashing a
    running count instead: such requests spread over the candidates in
    proportion to their weights, with no affinity.

    @ivar keyOf: a function from an L{IRequestView} to the key, or L{None}.
    """

    def __init__(self, keyOf):
        self.keyOf = keyOf
        self._unkeyed = 0

    def keyFor(self, request):
        """
        The key (C{bytes}) of C{request}, or L{None} when it has none.
        """
        # Before playbalancer 0.2, TCP mode passed None instead of a view.
        value = None if request is None else self.keyOf(request)
        if isinstance(value, str):
            value = value.encode("utf-8")
        return value or None

    def pick(self, candidates, request):
        if len(candidates) == 1:
            return candidates[0]
        key = self.keyFor(request)
        if key is None:
            self._unkeyed += 1
            # A prefix no real key has (they are tagged b"k" below).
            key = b"n%d" % (self._unkeyed,)
        else:
            key = b"k" + key
        # Names are unique in a balancer: they break (vanishingly rare) ties.
        return max(candidates, key=lambda member: (_score(member, key), member.name))


@implementer(IPlugin, ISchedulerFactory)
class HashSchedulerFactory:
    name = "rendezvous"
    description = "Consistent (rendezvous) hashing of a header, cookie, path or client address."

    def makeScheduler(self, options):
        unknown = sorted(set(options) - _KNOWN_OPTIONS)
        if unknown:
            raise ValueError(
                f"scheduler {self.name!r}: unknown option(s) {', '.join(unknown)}"
                f" (known: {', '.join(sorted(_KNOWN_OPTIONS))})"
            )
        if "key" not in options:
            raise ValueError(
                f'scheduler {self.name!r}: option key is required (for example key = "header:X-User")'
            )
        try:
            keyOf = parseKey(options["key"])
        except ValueError as e:
            raise ValueError(f"scheduler {self.name!r}: {e}") from None
        return RendezvousHashScheduler(keyOf)

    def __repr__(self):
        return f"<HashSchedulerFactory {self.name!r}>"


hashScheduler = HashSchedulerFactory()
