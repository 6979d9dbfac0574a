"""
A "power of two choices" scheduler for playbalancer: pick two distinct
members at random and take the one with fewer requests in flight relative
to its weight.
"""

from __future__ import annotations

import random

from zope.interface import implementer

from twisted.plugin import IPlugin

from playbalancer.interfaces import IScheduler, ISchedulerFactory

__all__ = ["PowerOfTwoChoicesScheduler", "P2CSchedulerFactory", "p2c"]

_KNOWN_OPTIONS = frozenset(["seed"])


@implementer(IScheduler)
class PowerOfTwoChoicesScheduler:
    """
    Two distinct random candidates; the less loaded one (C{active / weight})
    wins, the first drawn on a tie.

    C{pick} is given the request as an
    L{playbalancer.interfaces.IRequestView} (in TCP mode only its client
    address and C{secure} are known); this scheduler does not look at it.
    """

    def __init__(self, rng=None):
        self._random = rng if rng is not None else random.Random()

    def pick(self, candidates, request):
        if len(candidates) == 1:
            return candidates[0]
        first, second = self._random.sample(range(len(candidates)), 2)
        a, b = candidates[first], candidates[second]
        # a.active / a.weight <= b.active / b.weight, without division
        # (candidates have weight > 0).
        if a.active * b.weight <= b.active * a.weight:
            return a
        return b


@implementer(IPlugin, ISchedulerFactory)
class P2CSchedulerFactory:
    name = "p2c"
    description = "Power of two choices: the less loaded of two random members."

    def makeScheduler(self, options):
        unknown = sorted(set(options) - _KNOWN_OPTIONS)
        if unknown:
            raise ValueError(
                f"scheduler {self.name!r}: unknown option(s) {', '.join(unknown)}"
                f" (known: {', '.join(sorted(_KNOWN_OPTIONS))})"
            )
        if "seed" in options:
            seed = options["seed"]
            if not isinstance(seed, int) or isinstance(seed, bool):
                raise ValueError(
                    f"scheduler {self.name!r}: option seed must be an integer, got {seed!r}"
                )
            return PowerOfTwoChoicesScheduler(random.Random(seed))
        return PowerOfTwoChoicesScheduler()

    def __repr__(self):
        return f"<P2CSchedulerFactory {self.name!r}>"


p2c = P2CSchedulerFactory()
