"""
Maglev lookup tables: the consistent hash behind the C{hash} scheduler
(L{playbalancer.schedulers.hashing}).

A table has L{TABLE_SIZE} slots, each naming one member; a key goes to the
slot its hash picks.  Members fill the table taking turns, each along its
own permutation of the slots (from a hash of its name), as in Maglev
(Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
Balancer", NSDI 2016).  So every member holds a share of the slots that
follows its weight to within a slot or so, and when a member leaves or
comes, most slots keep their member: about the ideal share of keys moves
(see C{benchmarks/hashing.py} for the figures).

Everything is hashed with BLAKE2b, never Python's C{hash()}: the same
names, weights and keys give the same table and places in every process,
worker and release.
"""

from __future__ import annotations

import hashlib
import math
from array import array

__all__ = ["TABLE_SIZE", "keyHash", "buildTable", "tableWeight"]

#: Slots in a table: a prime, so that every skip walks all slots.  Fixed for
#: good: changing it moves nearly every key.  Some 6,500 slots per member
#: with 10 members keep the moved share when one leaves near the ideal.
TABLE_SIZE = 65537

#: What empty slots hold while a table is filled.
_EMPTY = -1


def _hash64(data, person):
    """
    A 64-bit number from C{data} (C{bytes}); C{person} (at most 16 bytes)
    keeps the hashes of different uses apart.
    """
    digest = hashlib.blake2b(data, digest_size=8, person=person).digest()
    return int.from_bytes(digest, "big")


def keyHash(key):
    """
    The hash of a request key (C{bytes}): a number in C{[0, 2**64)}, the
    same in every process.  Its remainder by L{TABLE_SIZE} is the key's
    slot.
    """
    return _hash64(key, b"playbalancer-key")


def tableWeight(weight):
    """
    The weight a member has in a table.  A whole weight is kept exactly; a
    fractional one (a member in its slow start ramps through them) is
    rounded to the nearest power of 2**(1/4), so that a ramp rebuilds the
    table about 18 times rather than at every request.  Anything not above
    0 counts as 0.
    """
    if weight <= 0:
        return 0
    if isinstance(weight, int):
        return weight
    if weight == int(weight):
        return int(weight)
    return 2.0 ** (round(math.log2(weight) * 4) / 4)


def _permutation(name):
    """
    Where a member's walk over the slots starts, and its step.
    """
    encoded = name.encode("utf-8")
    offset = _hash64(encoded, b"maglev-offset") % TABLE_SIZE
    skip = _hash64(encoded, b"maglev-skip") % (TABLE_SIZE - 1) + 1
    return offset, skip


def buildTable(entries):
    """
    Fill a lookup table.

    Members take turns in the order of their names (so the order of
    C{entries} changes nothing but the numbers stored), and each turn a
    member gains credit equal to its weight; for each whole multiple of the
    largest weight it holds, it takes the next free slot along its
    permutation.  Shares of slots therefore follow the weights.

    @param entries: a sequence of C{(name, weight)}: unique names (C{str}),
        weights as L{tableWeight} gives them.  When no weight is above 0,
        all count as equal.
    @return: an C{array} of L{TABLE_SIZE} positions in C{entries}.
    """
    weights = [weight if weight > 0 else 0 for _, weight in entries]
    if not any(weights):
        weights = [1] * len(entries)
    largest = max(weights)
    order = sorted(
        (position for position in range(len(entries)) if weights[position] > 0),
        key=lambda position: entries[position][0],
    )
    turnWeights = [weights[position] for position in order]
    slots = []
    skips = []
    for position in order:
        offset, skip = _permutation(entries[position][0])
        slots.append(offset)
        skips.append(skip)
    credits = [0] * len(order)
    table = [_EMPTY] * TABLE_SIZE
    left = TABLE_SIZE
    size = TABLE_SIZE
    while left:
        for turn, position in enumerate(order):
            credit = credits[turn] + turnWeights[turn]
            if credit >= largest:
                slot, skip = slots[turn], skips[turn]
                while credit >= largest and left:
                    credit -= largest
                    while table[slot] != _EMPTY:
                        slot += skip
                        if slot >= size:
                            slot -= size
                    table[slot] = position
                    left -= 1
                slots[turn] = slot
            credits[turn] = credit
            if not left:
                break
    return array("H" if len(entries) < 0xFFFF else "L", table)
