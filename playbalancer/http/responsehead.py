"""
What of a member's response head goes to the client: its end-to-end
headers, with URLs that point at a member turned into the client's view
(Apache's C{ProxyPassReverse}), and what frames the body.
"""

from __future__ import annotations

from playbalancer.http.headers import responseHeadersForClient
from playbalancer.http.memberrequest import CONNECTION_WORDS


def clientHeaders(head, rewrite):
    """
    The C{(name, value)} pairs of member response C{head} for the client,
    location headers passed through C{rewrite}.
    """
    listed = head.connection - CONNECTION_WORDS if head.connection else frozenset()
    return list(responseHeadersForClient(head.headers, rewrite, listed))


def clientResponse(head, request, rewrite):
    """
    The final response for the client.

    @return: C{(headers, length, upgrade)} for
        L{playbalancer.interfaces.IClientSide.startResponse}: C{length}
        L{None} when unknown, C{upgrade} the protocol of a C{101}.
    """
    headers = clientHeaders(head, rewrite)
    status = head.status
    length = head.length
    upgrade = None
    if status == 101:
        upgrade = b""
        for name, value in head.headers:
            if name.lower() == b"upgrade":
                upgrade = value
        length = None
    elif length == 0:
        # No body.  Pass on a HEAD or 304 response's own length (never a
        # 1xx's or 204's: RFC 9110 8.6 forbids it there).
        if status == 304 or request.method == b"HEAD":
            for name, value in head.headers:
                if name.lower() == b"content-length":
                    headers.append((b"Content-Length", value))
                    break
    elif length == -1:
        length = None
    return headers, length, upgrade


def rewriteLocation(value, request, member, rewriter):
    """
    A location header's C{value} in the client's view: a URL that points at
    a member is rewritten to the address the client used (plus the mount
    path), and, under a mount, a path on the member to the same path
    under the mount.

    @param rewriter: the balancer's L{playbalancer.http.headers.LocationRewriter}.
    """
    mountPath = request.mountPath
    if mountPath and value[:1] == b"/" and value[:2] != b"//":
        basePath = member.basePath
        if not basePath:
            return mountPath + value
        if value.startswith(basePath):
            rest = value[len(basePath) :]
            if not rest or rest[:1] in b"/?#":
                return mountPath + (rest or b"/")
        return value
    if request.host is None:
        return value
    scheme = b"https://" if request.secure else b"http://"
    return rewriter.rewrite(value, scheme + request.host + mountPath)
