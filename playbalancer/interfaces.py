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


class IRequestView(Interface):
    """
    What a scheduler may know of the request (or, in TCP mode, the
    connection) it places.  Every client face provides it: the HTTP/1.1
    front, and later the twisted.web resource and HTTP/2 streams; TCP mode
    gives the client's address and L{None} for the rest.  Values are
    C{bytes} as they came, except C{clientAddress}.
    """

    method = Attribute("The method (C{b'GET'}), or L{None} in TCP mode.")
    path = Attribute("The path, without the query (C{b'/a/b'}), or L{None}.")
    query = Attribute("What follows C{?} in the target (C{b''} if nothing), or L{None}.")
    host = Attribute("The authority the client asked for, or L{None}.")
    clientAddress = Attribute(
        "The client's IP address (C{str}; from the PROXY protocol or a trusted "
        "proxy where configured), or L{None}."
    )
    secure = Attribute("Whether the client came over TLS (C{bool}).")

    def header(name):
        """
        The value of request header C{name} (C{bytes}, any case); the last
        one if it was sent more than once; L{None} if not sent (always in
        TCP mode).
        """

    def cookie(name):
        """
        The value of cookie C{name} (C{bytes}) from the C{Cookie} headers,
        or L{None}.
        """


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
        @param request: an L{IRequestView} provider: what a hashing or
            affinity scheduler needs (method, path, host, headers, cookies,
            client address).  In TCP mode only the client address is known.

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
