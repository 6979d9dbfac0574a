"""
The contracts that schedulers (built-in or third-party plugins) see.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IMember(Interface):
    """
    One backend of a balancer, as a scheduler sees it.
    """

    name = Attribute("The member's name, unique in its balancer (C{str}).")
    url = Attribute("The member's URL as configured (C{str}).")
    weight = Attribute("Relative share of new requests (C{int}, >= 0).")
    standby = Attribute("C{True} for a hot standby (Apache's C{status=+H}).")
    active = Attribute("Requests (or connections) in flight on it (C{int}).")


class IScheduler(Interface):
    """
    Chooses the member that serves one request.
    """

    def pick(candidates, request):
        """
        Choose one member.

        @param candidates: a non-empty sequence of L{IMember} providers, the
            usable members in configured order.  Members that are down, out
            of service or have no weight are already removed, and the standby
            rule is already applied.
        @param request: what a hashing scheduler needs: for HTTP, the
            L{twisted.web.iweb.IRequest} (client address, headers, path); it
            may be L{None} (TCP mode).

        @return: one element of C{candidates}.
        """


class ISchedulerFactory(Interface):
    """
    A named kind of scheduler; what a scheduler plugin provides (along with
    L{twisted.plugin.IPlugin}).
    """

    name = Attribute("The value of C{scheduler =} in the config (C{str}).")
    description = Attribute("One line for people (C{str}).")

    def makeScheduler(options):
        """
        Make a new scheduler for one balancer.

        @param options: a C{dict} from the balancer's optional
            C{scheduler_options} table (empty by default).
        @raise ValueError: when an option is wrong; the message names it.

        @return: an L{IScheduler} provider.
        """
