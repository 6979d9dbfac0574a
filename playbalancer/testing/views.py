"""
Requests as a scheduler sees them (L{playbalancer.interfaces.IRequestView}),
made in one line for tests and simulations: L{requestView} gives the very
object the HTTP/1.1 front hands to C{pick}, L{tcpView} the one TCP mode
hands it.
"""

from __future__ import annotations

from playbalancer.balancer import Member
from playbalancer.http.wire import RequestHead
from playbalancer.tcp import ConnectionView

__all__ = ["requestView", "tcpView", "candidateMembers", "candidateMember"]


def _bytes(value):
    return value.encode("latin-1") if isinstance(value, str) else value


def _pairs(items):
    if isinstance(items, dict):
        items = items.items()
    return [(_bytes(name), _bytes(value)) for name, value in items]


def requestView(
    path=b"/",
    query=b"",
    method=b"GET",
    host=b"www.example.test",
    clientAddress="192.0.2.1",
    secure=False,
    headers=(),
    cookies=(),
):
    """
    An HTTP request as the HTTP/1.1 front passes it to a scheduler (a
    L{playbalancer.http.wire.RequestHead}, which provides
    L{playbalancer.interfaces.IRequestView}).

    @param path: the path (C{bytes}, or Latin-1 text); C{query}, C{method}
        and C{host} likewise (C{host} L{None}: an HTTP/1.0 request without
        one).
    @param clientAddress: the client's IP address (C{str}), or L{None} as
        for a client on a UNIX socket.
    @param headers: C{(name, value)} pairs, or a C{dict}, sent as they are
        (a name may repeat).
    @param cookies: C{(name, value)} pairs, or a C{dict}, sent in one
        I{Cookie} header.
    """
    path, query, method, host = _bytes(path), _bytes(query), _bytes(method), _bytes(host)
    sent = [] if host is None else [(b"Host", host)]
    sent.extend(_pairs(headers))
    cookies = _pairs(cookies)
    if cookies:
        sent.append((b"Cookie", b"; ".join(name + b"=" + value for name, value in cookies)))
    head = RequestHead(method, path + b"?" + query if query else path, b"HTTP/1.1", sent)
    head.host = host
    head.client = clientAddress
    head.secure = secure
    return head


class _Peer:
    def __init__(self, host):
        self.host = host


def tcpView(clientAddress=None, secure=False):
    """
    A TCP-mode connection as the TCP relay passes it to a scheduler (a
    L{playbalancer.tcp.ConnectionView}): only C{clientAddress} and
    C{secure} are known, the rest is L{None}.

    @param clientAddress: the client's IP address (C{str}), or L{None} as
        for a client on a UNIX socket.
    """
    return ConnectionView(None if clientAddress is None else _Peer(clientAddress), secure)


def candidateMembers(*names, **weights):
    """
    Real members (L{playbalancer.balancer.Member}) to pass to C{pick} as
    candidates, in the order named, each of weight 1 unless C{weights}
    gives another (C{candidateMembers("a", "b", b=3)}).  Set C{active} on
    them to stand for requests in flight.
    """
    return [
        Member(name, f"http://member-{index}.invalid:8080/", weights.get(name, 1))
        for index, name in enumerate(names)
    ]


def candidateMember(name, weight=1, active=0):
    """
    One real member for C{pick}, of C{weight}, with C{active} requests in
    flight (L{candidateMembers} for several).
    """
    (member,) = candidateMembers(name, **{name: weight})
    member.active = active
    return member
