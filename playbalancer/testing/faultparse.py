"""
The request parsing of L{playbalancer.testing.faultmember.FaultMember}:
only what a member that fails on purpose needs (method, version, framing,
C{Connection} and C{Expect}), strict enough to refuse what it cannot
frame.
"""

from __future__ import annotations

import re

__all__ = ["MAX_HEAD", "BadRequest", "Request", "LengthBody", "ChunkedBody"]

#: A request head (or a chunk-size line) longer than this is refused.
MAX_HEAD = 1024 * 1024

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/1\.[01]")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")


class BadRequest(Exception):
    """
    A request the member cannot frame: it answers C{400} and closes.
    """


class Request:
    """
    A parsed request head: only what the member needs.
    """

    def __init__(self, head):
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _VERSION.fullmatch(parts[2]):
            raise BadRequest()
        method, _, version = parts
        lengths, codings, connection, self.expectsContinue = set(), [], set(), False
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                raise BadRequest()
            name, value = name.lower(), value.strip(b" \t")
            items = [item.strip(b" \t").lower() for item in value.split(b",")]
            if name == b"content-length":
                lengths.update(items)
            elif name == b"transfer-encoding":
                codings.extend(items)
            elif name == b"connection":
                connection.update(items)
            elif name == b"expect" and value.lower() == b"100-continue":
                self.expectsContinue = True
        self.headOnly = method == b"HEAD"
        self.close = b"close" in connection or (
            version == b"HTTP/1.0" and b"keep-alive" not in connection
        )
        self.keepAlive10 = version == b"HTTP/1.0" and not self.close
        if codings:
            if codings[-1] != b"chunked":
                raise BadRequest()
            self.body = ChunkedBody()
            self.close = self.close or bool(lengths)
        elif lengths:
            if len(lengths) != 1 or not _DIGITS.fullmatch(next(iter(lengths))):
                raise BadRequest()
            self.body = LengthBody(int(next(iter(lengths))))
        else:
            self.body = LengthBody(0)
        self.hasBody = not isinstance(self.body, LengthBody) or self.body.left > 0


class LengthBody:
    def __init__(self, length):
        self.left = length

    def consume(self, buffer):
        """
        Discard body bytes from the front of C{buffer}; true once done.
        """
        n = min(self.left, len(buffer))
        del buffer[:n]
        self.left -= n
        return self.left == 0


class ChunkedBody:
    def __init__(self):
        self.state = "size"
        self.left = 0

    def consume(self, buffer):
        """
        Discard chunked body bytes from the front of C{buffer}; true once
        the last-chunk and the trailers are read.
        """
        while True:
            if self.state == "data":
                n = min(self.left, len(buffer))
                del buffer[:n]
                self.left -= n
                if self.left:
                    return False
                self.state = "crlf"
            if self.state == "crlf":
                if len(buffer) < 2:
                    return False
                if buffer[:2] != b"\r\n":
                    raise BadRequest()
                del buffer[:2]
                self.state = "size"
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise BadRequest()
                return False
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            if self.state == "trailer":
                if not line:
                    return True
                continue
            size = line.split(b";", 1)[0].strip(b" \t")
            if not _HEX.fullmatch(size):
                raise BadRequest()
            self.left = int(size, 16)
            self.state = "data" if self.left else "trailer"
