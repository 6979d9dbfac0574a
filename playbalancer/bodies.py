"""
Request bodies as L{IBodyProducer}s for the member request, made again for
each attempt so that a request can be retried on another member.
"""

from __future__ import annotations

from zope.interface import implementer

from twisted.internet.defer import succeed
from twisted.web.client import FileBodyProducer
from twisted.web.iweb import IBodyProducer

#: Bodies up to this size are read into memory and sent in one write.
_SMALL = 64 * 1024


@implementer(IBodyProducer)
class BytesProducer:
    """
    A small body already in memory, written at once.
    """

    def __init__(self, data):
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer):
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class _KeepOpen:
    """
    A file whose C{close} does nothing, so that L{FileBodyProducer} leaves
    it open for a later attempt.
    """

    def __init__(self, file):
        self._file = file
        self.read = file.read
        self.seek = file.seek
        self.tell = file.tell

    def close(self):
        pass


class SpooledBody:
    """
    A request body that the front end has spooled (small ones to memory,
    large ones to a temporary file, as twisted.web does).

    @param file: the spooled body, or L{None} when the request had none.
    """

    def __init__(self, file, cooperator):
        self._file = file
        self._cooperator = cooperator
        if file is None:
            self.length = None
        else:
            file.seek(0, 2)
            self.length = file.tell()
        self._small = None
        if self.length is not None and self.length <= _SMALL:
            file.seek(0)
            self._small = file.read()
        #: Whether attempts read the body from the spooled file.
        self.spooled = self.length is not None and self._small is None

    def producer(self):
        """
        A new body producer positioned at the start, or L{None} for no body.
        """
        if self._small is not None:
            return BytesProducer(self._small)
        if self._file is None:
            return None
        self._file.seek(0)
        return FileBodyProducer(
            _KeepOpen(self._file), cooperator=self._cooperator, readSize=2**16
        )
