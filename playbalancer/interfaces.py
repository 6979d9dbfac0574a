"""
The contracts between the parts: what schedulers (built-in or third-party
plugins) see, and what an exchange needs of the client it serves.
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
    front, the twisted.web resource (L{playbalancer.resource}), and later
    HTTP/2 streams; TCP mode gives the client's address and L{None} for the
    rest.  Values are C{bytes} as they came, except C{clientAddress}; the
    path and query are those under the resource's mount.
    """

    method = Attribute("The method (C{b'GET'}), or L{None} in TCP mode.")
    path = Attribute("The path, without the query (C{b'/a/b'}), or L{None}.")
    query = Attribute("What follows C{?} in the target (C{b''} if nothing), or L{None}.")
    host = Attribute("The authority the client asked for, or L{None}.")
    clientAddress = Attribute(
        "The client's IP address (C{str}): from the PROXY protocol, or, when "
        "the peer is one of C{trusted_proxies}, the last address in its "
        "X-Forwarded-For that is not a trusted proxy; L{None} when there is "
        "none (a UNIX socket)."
    )
    secure = Attribute("Whether the client came over TLS (C{bool}).")

    def header(name):
        """
        The value of request header C{name} (C{bytes} or ASCII text, any
        case); the last one if it was sent more than once; L{None} if not
        sent (always in TCP mode).
        """

    def cookie(name):
        """
        The value of cookie C{name} (C{bytes} or ASCII text) from the
        C{Cookie} headers, or L{None}.
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


class IResponseTimeObserver(Interface):
    """
    A scheduler that learns how fast each member answers.  When a
    balancer's scheduler also provides this, the balancer gives it its
    clock and reports every attempt that says something about a member's
    speed (L{playbalancer.responsetimes.report} says which do): an answer
    with the time it took, or a failure.  Nothing is reported in TCP mode
    except connections that could not be made.
    """

    def setClock(clock):
        """
        Keep time by C{clock} (its C{seconds()}), the balancer's.  Called
        when the scheduler becomes the balancer's, before any report.
        """

    def responseTime(member, seconds):
        """
        C{member} answered an attempt: its response head came C{seconds}
        after the attempt started (a connection to the member included).
        """

    def failed(member):
        """
        An attempt on C{member} failed for a reason of the member's: no
        connection, a reset, a malformed answer, a timeout, or a status in
        C{fail_on_status}.
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


class IClientSide(Interface):
    """
    The client one request came from, as the exchange serving it sees it
    (L{playbalancer.http.exchange.Exchange}).  One provider per kind of
    client: an HTTP/1.1 connection
    (L{playbalancer.http.responsewriter.ResponseWriter}), a twisted.web
    request (L{playbalancer.resource.WebRequestClient}), an in-memory
    client for tests (L{playbalancer.testing.exchange.MemoryClient}), and later
    an HTTP/2 stream.

    The provider owns the client's transport and the framing of what goes
    to it; the exchange never touches either.  It also reads the request
    body and hands it to the exchange (C{bodyData}, C{bodyEnd}), and tells
    it when the client is gone (C{clientGone}) or too slow
    (C{clientTimedOut}).
    """

    closing = Attribute(
        "Whether the client connection closes after this response (C{bool}); "
        "the provider itself then frames the response without keep-alive."
    )
    accessLog = Attribute(
        "The L{playbalancer.observe.accesslog.AccessLog} to record requests in, or L{None}."
    )

    def sendContinue():
        """
        Tell the client to send its body (C{100 Continue}), if its protocol
        has that.
        """

    def sendInterim(status, reason, headers):
        """
        Pass on an interim (1xx) response, if the client's protocol can
        take one.
        """

    def startResponse(status, reason, headers, length, keepAlive, upgrade=None):
        """
        Start the response.

        @param headers: C{(name, value)} pairs to send as they are: no
            connection headers, and no framing headers (the provider adds
            its own) except the member's I{Content-Length} on a response
            that has no body to frame (to a HEAD, or a 304).
        @param length: body bytes to come (0: none), or L{None} if unknown
            until L{finish}.  (For a HEAD request, what the member said, or
            0: no body comes either way.)
        @param keepAlive: whether the exchange lets the connection be kept.
        @param upgrade: for a C{101}, the protocol switched to (C{bytes}).
        """

    def writeBody(data):
        """
        Body bytes (or, in a tunnel, any bytes) for the client.
        """

    def readEnd():
        """
        The member's bytes read together have all been passed on: what
        the provider held back to send in one go may go now.
        """

    def finish():
        """
        The response is complete.
        """

    def respond(status, text, keepAlive=True, extra=()):
        """
        Answer with a short plain-text response of our own, complete.

        @param extra: more C{(name, value)} headers.
        @return: the number of body bytes sent (0 to a HEAD request).
        """

    def abort():
        """
        End a response that cannot be completed.  Where the response has a
        length or chunks, the client cannot take it for complete; where it
        is framed by the end of the connection (an HTTP/1.0 client, a
        member that gave no length), nothing can tell the client.
        """

    def pauseProducing():
        """
        Stop reading the request body (the member is slow to take it).
        """

    def resumeProducing():
        """
        Read the request body again.
        """

    def pauseWhileFull(producer):
        """
        Let the client pause C{producer} (with C{pauseProducing} and
        C{resumeProducing}) while what waits for the client is over its
        limit.

        @return: a token for L{stopPausing}.
        """

    def stopPausing(token):
        """
        Undo L{pauseWhileFull}, resuming the producer if it was paused.
        """

    def keepsUp():
        """
        Whether the client takes the response as fast as it comes.
        """

    def startTunnel(exchange):
        """
        After a C{101}: from now on the client's bytes go, as they are, to
        C{exchange.clientData}.
        """

    def tunnelActive():
        """
        Bytes went through the tunnel: its idle clock starts again.
        """

    def close():
        """
        Close the client connection once what was written has gone out.
        """
