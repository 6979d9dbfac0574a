"""
The built-in C{hash} scheduler: consistent hashing of a request key (the
client address, a header, a cookie or the path) over a Maglev table
(L{playbalancer.schedulers.maglev}), with an optional bound on load.

Options (C{[balancer.NAME.scheduler_options]}):

    - C{key} (required): C{"client"}, C{"header:<Name>"}, C{"cookie:<name>"}
      or C{"path"}.
    - C{balance_factor}: a number above 1, such as C{1.25}: no member takes
      a new request while it would hold more than that many times its
      weight's share of the requests in flight (Mirrokni, Thorup,
      Zadimoghaddam: "Consistent Hashing with Bounded Loads", 2018; HAProxy's
      C{hash-balance-factor}, which is this number in percent).  Absent, or
      C{0} as in HAProxy: no bound, every key always goes to its own member.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from zope.interface import implementer

from twisted.plugin import IPlugin

from playbalancer.interfaces import IScheduler, ISchedulerFactory
from playbalancer.schedulers import RoundRobinScheduler
from playbalancer.schedulers.maglev import TABLE_SIZE, buildTable, keyHash, tableWeight

__all__ = ["ConsistentHashScheduler", "ConsistentHashFactory", "consistentHash", "parseKey"]

_OPTIONS = ("balance_factor", "key")

#: The characters of an HTTP token (RFC 9110 5.6.2): header and cookie names.
_TOKEN = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

#: Tables kept per scheduler, for the last candidate sets seen (a table is
#: 128 KiB).
CACHED_TABLES = 4


def _clientAddress(request):
    return None if request is None else request.clientAddress


def parseKey(spec):
    """
    Turn the C{key} option into a function from an L{IRequestView} (or
    L{None}) to the key's value (C{bytes} or C{str}), or L{None}.

    @raise ValueError: C{spec} is not C{"client"}, C{"header:<Name>"},
        C{"cookie:<name>"} or C{"path"}; the message names C{key}.
    """
    if not isinstance(spec, str):
        raise ValueError(f"option key must be a string, got {spec!r}")
    kind, colon, name = spec.partition(":")
    if not colon and kind == "client":
        return _clientAddress
    if not colon and kind == "path":
        return lambda request: None if request is None else request.path
    if colon and kind in ("header", "cookie"):
        if not name or not set(name) <= _TOKEN:
            raise ValueError(
                f"option key: {spec!r} needs a {kind} name made of token characters"
            )
        encoded = name.encode("ascii")
        if kind == "header":
            return lambda request: None if request is None else request.header(encoded)
        return lambda request: None if request is None else request.cookie(encoded)
    raise ValueError(
        'option key must be "client", "header:<Name>", "cookie:<name>" or "path",'
        f" got {spec!r}"
    )


def parseBalanceFactor(value):
    """
    Check the C{balance_factor} option.

    @return: the factor (C{float}), or L{None} for no bound (C{0}).
    @raise ValueError: not C{0} nor a finite number above 1; the message
        names C{balance_factor}.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"option balance_factor must be a number above 1 (or 0 for no bound), got {value!r}"
        )
    if value == 0:
        return None
    if not math.isfinite(value) or value <= 1:
        raise ValueError(
            f"option balance_factor must be above 1 (or 0 for no bound), got {value!r}"
        )
    return float(value)


def _asBytes(value):
    """
    A key value as C{bytes}; L{None} for a missing or empty one.
    """
    if isinstance(value, str):
        value = value.encode("utf-8")
    return value or None


@implementer(IScheduler)
class ConsistentHashScheduler:
    """
    Each request goes to the member its key's slot names in the Maglev
    table of the candidates.  The table is built for each new set of
    candidates (names and weights, as
    L{playbalancer.schedulers.maglev.tableWeight} gives them) and kept for
    the last L{CACHED_TABLES} sets, so members going down and up again cost
    nothing once seen.

    Bounded load: with a factor C{c}, the member of a slot takes the request
    only if, counting the request, it would hold at most
    C{ceil(c * (A + 1) * w / W)} requests, where C{A} is the sum of the
    candidates' C{active}, C{w} its weight and C{W} the candidates' total
    weight.  For a whole number of requests that is
    C{active < c * (A + 1) * w / W}, which is what is computed.  Otherwise
    the next slots are tried, in table order, each member once.  Since the
    caps add up to more than C{A + 1}, some member always qualifies; should
    none that does be in the table (a weight too small a share for a
    slot), the least loaded relative to weight is chosen.
    C{active} counts this process's requests, so with several workers each
    bounds its own share.

    A request without a key value (the header or cookie is not sent or is
    empty; in TCP mode any key but C{client}) is placed by its client
    address instead, as C{key = "client"} would place it; with no client
    address either (a UNIX socket), requests go round robin by weight.

    @ivar keyOf: a function from an L{IRequestView} to the key, or L{None}.
    @ivar factor: the balance factor (C{float}), or L{None} for no bound.
    """

    def __init__(self, keyOf, factor=None):
        self.keyOf = keyOf
        self.factor = factor
        self._tables = OrderedDict()
        self._lastSeen = None
        self._lastTable = None
        self._roundRobin = RoundRobinScheduler()

    def keyFor(self, request):
        """
        The key (C{bytes}) that places C{request}: its key value, or its
        client address; L{None} when it has neither.
        """
        key = _asBytes(self.keyOf(request))
        if key is None and self.keyOf is not _clientAddress:
            key = _asBytes(_clientAddress(request))
        return key

    def tableFor(self, candidates):
        """
        The lookup table of C{candidates}, and how many of them it holds.

        @return: C{(table, held)}: the table gives positions in
            C{candidates} by slot; C{held} candidates have a slot (all but
            those whose weight is too small a share for one).
        """
        # The candidates as they are (cheap to compare: usually the same as
        # last time), then as tables see them.
        seen = [(m.name, m.weight) for m in candidates]
        if seen == self._lastSeen:
            return self._lastTable
        signature = tuple([(name, tableWeight(weight)) for name, weight in seen])
        tables = self._tables
        table = tables.get(signature)
        if table is None:
            slots = buildTable(signature)
            table = (slots, len(set(slots)))
            tables[signature] = table
            while len(tables) > CACHED_TABLES:
                tables.popitem(last=False)
        else:
            tables.move_to_end(signature)
        self._lastSeen = seen
        self._lastTable = table
        return table

    def pick(self, candidates, request):
        if len(candidates) == 1:
            return candidates[0]
        key = self.keyFor(request)
        if key is None:
            return self._roundRobin.pick(candidates, request)
        table, held = self.tableFor(candidates)
        slot = keyHash(key) % TABLE_SIZE
        member = candidates[table[slot]]
        if self.factor is None:
            return member
        return self._bounded(candidates, table, held, slot, member)

    def _bounded(self, candidates, table, held, slot, member):
        """
        The first member from C{slot} on that is under its cap.
        """
        totalWeight = 0
        inFlight = 1
        for candidate in candidates:
            totalWeight += candidate.weight
            inFlight += candidate.active
        if totalWeight <= 0:
            return member
        perWeight = self.factor * inFlight / totalWeight
        if member.active < perWeight * member.weight:
            return member
        tried = {table[slot]}
        size = TABLE_SIZE
        for step in range(1, size if held > 1 else 1):
            position = table[(slot + step) % size]
            if position in tried:
                continue
            candidate = candidates[position]
            if candidate.active < perWeight * candidate.weight:
                return candidate
            tried.add(position)
            if len(tried) == held:
                break
        return _leastLoaded(candidates)


def _leastLoaded(candidates):
    """
    The candidate with the fewest requests in flight relative to its
    weight (the first of equals).
    """
    best = candidates[0]
    for member in candidates[1:]:
        if member.active * best.weight < best.active * member.weight:
            best = member
    return best


@implementer(IPlugin, ISchedulerFactory)
class ConsistentHashFactory:
    """
    Makes L{ConsistentHashScheduler}s from the C{key} and
    C{balance_factor} options.
    """

    name = "hash"
    description = (
        "Consistent (Maglev) hashing of the client address, a header, a cookie or"
        " the path, optionally with bounded load."
    )

    def makeScheduler(self, options):
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ValueError(
                f"scheduler {self.name!r}: unknown option(s) {', '.join(unknown)}"
                f" (known: {', '.join(_OPTIONS)})"
            )
        if "key" not in options:
            raise ValueError(
                f"scheduler {self.name!r}: option key is required"
                ' (for example key = "header:X-User" or key = "client")'
            )
        try:
            keyOf = parseKey(options["key"])
            factor = parseBalanceFactor(options.get("balance_factor", 0))
        except ValueError as e:
            raise ValueError(f"scheduler {self.name!r}: {e}") from None
        return ConsistentHashScheduler(keyOf, factor)

    def __repr__(self):
        return f"<ConsistentHashFactory {self.name!r}>"


consistentHash = ConsistentHashFactory()
