"""
Message bodies on an HTTP/1.1 connection: a strict streaming decoder for
the chunked coding, and a counter for C{Content-Length} bodies.  Both hand
body bytes on as they arrive and say where the message ended, so that the
bytes after it (a pipelined request, say) are kept.
"""

from __future__ import annotations

import re

from playbalancer.http.wire import HTTPError

_SIZE_LINE = re.compile(
    rb"(0*[0-9A-Fa-f]{1,16})(?:[ \t]*;[^\x00-\x08\x0a-\x1f\x7f]*)?\Z"
)
_TRAILER_LINE = re.compile(
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*\Z"
)

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)

#: The longest chunk-size line (with extensions) or trailer line accepted.
MAX_LINE = 4096
#: The most trailer bytes accepted (trailers are read and dropped).
MAX_TRAILERS = 16384


class ChunkedDecoder:
    """
    Decode a chunked body as it arrives.

    @param onData: called with each piece of body data.
    @param status: the status of the L{HTTPError} raised on a coding error
        (400 for a client's request, 502 for a member's response).
    """

    def __init__(self, onData, status=400):
        self._onData = onData
        self._status = status
        self._state = _SIZE
        self._remaining = 0
        self._buffer = b""
        self._trailerBytes = 0

    @property
    def done(self):
        return self._state == _DONE

    def feed(self, data):
        """
        Decode C{data}.

        @raise HTTPError: the coding is broken.
        @return: L{None} while the body goes on; when it ended, the bytes
            that followed it (possibly empty).
        """
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        position = 0
        size = len(data)
        while position < size:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, size - position)
                if position == 0 and take == size:
                    self._onData(data)
                else:
                    self._onData(data[position : position + take])
                position += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _DATA_END
            elif state == _DATA_END:
                if size - position < 2:
                    self._buffer = data[position:]
                    return None
                if data[position : position + 2] != b"\r\n":
                    raise HTTPError(self._status, "chunk data longer than its size")
                position += 2
                self._state = _SIZE
            else:
                end = data.find(b"\r\n", position)
                if end == -1:
                    if size - position > MAX_LINE:
                        raise HTTPError(self._status, "a chunk line is too long")
                    self._buffer = data[position:]
                    if b"\n" in self._buffer:
                        raise HTTPError(self._status, "a bare LF in the chunked coding")
                    return None
                line = data[position:end]
                position = end + 2
                if state == _SIZE:
                    self._sizeLine(line)
                else:
                    self._trailerLine(line)
                    if self._state == _DONE:
                        return data[position:]
        return None

    def _sizeLine(self, line):
        found = _SIZE_LINE.match(line)
        if found is None:
            raise HTTPError(self._status, "an invalid chunk size")
        chunkSize = int(found.group(1), 16)
        if chunkSize:
            self._remaining = chunkSize
            self._state = _DATA
        else:
            self._state = _TRAILER

    def _trailerLine(self, line):
        if not line:
            self._state = _DONE
            return
        self._trailerBytes += len(line) + 2
        if self._trailerBytes > MAX_TRAILERS:
            raise HTTPError(self._status, "trailers are too large")
        if not _TRAILER_LINE.match(line):
            raise HTTPError(self._status, "an invalid trailer field")


class LengthCounter:
    """
    A body of C{length} bytes, handed on as it arrives.
    """

    def __init__(self, onData, length):
        self._onData = onData
        self._remaining = length

    @property
    def done(self):
        return self._remaining == 0

    def feed(self, data):
        """
        @return: L{None} while the body goes on; when it ended, the bytes
            that followed it.
        """
        remaining = self._remaining
        if len(data) <= remaining:
            self._remaining = remaining - len(data)
            if data:
                self._onData(data)
            return b"" if not self._remaining else None
        self._remaining = 0
        self._onData(data[:remaining])
        return data[remaining:]
