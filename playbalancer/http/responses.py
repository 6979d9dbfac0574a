"""
Short plain-text responses of our own (refusals, 502, 503, 504...).
"""

from __future__ import annotations

from http import HTTPStatus

REASONS = {
    200: b"OK",
    301: b"Moved Permanently",
    302: b"Found",
    303: b"See Other",
    307: b"Temporary Redirect",
    308: b"Permanent Redirect",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    417: b"Expectation Failed",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}

PLAIN = b"text/plain; charset=utf-8"


def plainBody(text):
    """
    The body of a plain response saying C{text}.
    """
    return text.encode("utf-8") + b"\n"


def plainResponse(status, text, keepAlive, head=False, extra=()):
    """
    The bytes of a short plain-text HTTP/1.1 response of our own.
    """
    body = plainBody(text)
    lines = [
        b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status) or reasonOf(status)),
        b"Content-Type: " + PLAIN + b"\r\n",
        b"Content-Length: %d\r\n" % len(body),
    ]
    for name, value in extra:
        lines.append(name + b": " + value + b"\r\n")
    if not keepAlive:
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    if not head:
        lines.append(body)
    return b"".join(lines)


def reasonOf(status):
    """
    The reason phrase of C{status}, for those not in L{REASONS}.
    """
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b"Error"


def responseText(status):
    """
    The plain-text body of an answer with C{status} and nothing more to
    say: its reason phrase.
    """
    return (REASONS.get(status) or reasonOf(status)).decode("ascii")
