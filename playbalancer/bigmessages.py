"""
Messages of any size over AMP, whose values hold at most 64 KiB: a message
(JSON) is compressed, cut into pieces sent in order as L{Piece} commands,
and put together again by the receiver (a L{PieceReceiver}).

AMP delivers the commands of one connection in order, so the pieces of a
message arrive one after the other; messages of different kinds may
interleave.
"""

from __future__ import annotations

import json
import zlib

from twisted.logger import Logger
from twisted.protocols import amp

_log = Logger()

#: Compressed bytes per piece (an AMP value holds at most 65,535).
PIECE_BYTES = 60000


class Piece(amp.Command):
    """
    One piece of a message of kind C{kind}; C{last} on its final piece.
    """

    arguments = [(b"kind", amp.Unicode()), (b"data", amp.String()), (b"last", amp.Boolean())]
    response = []
    requiresAnswer = False


def pieces(message, size=PIECE_BYTES):
    """
    The compressed pieces of a JSON-ready C{message}, at least one.
    """
    data = zlib.compress(json.dumps(message, separators=(",", ":")).encode("utf-8"), 1)
    return [data[start : start + size] for start in range(0, len(data), size)] or [b""]


def sendMessage(protocol, kind, message):
    """
    Send C{message} (JSON-ready) to C{protocol}'s peer as L{Piece}s.

    @raise Exception: what C{json.dumps} or AMP raise synchronously.
    """
    sendPieces(protocol, kind, pieces(message))


def sendPieces(protocol, kind, parts):
    """
    Send the L{pieces} of a message (made once for several peers).
    """
    for index, part in enumerate(parts):
        protocol.callRemote(Piece, kind=kind, data=part, last=index == len(parts) - 1)


class PieceReceiver(amp.CommandLocator):
    """
    Mixed into an L{amp.AMP}: puts L{Piece}s together and calls
    C{messageReceived(kind, message)} with each whole message.
    """

    _partial = None

    @Piece.responder
    def _piece(self, kind, data, last):
        if self._partial is None:
            self._partial = {}
        parts = self._partial.setdefault(kind, [])
        parts.append(data)
        if last:
            del self._partial[kind]
            try:
                message = json.loads(zlib.decompress(b"".join(parts)).decode("utf-8"))
                self.messageReceived(kind, message)
            except Exception:
                _log.failure("could not handle a {kind} message", kind=kind)
        return {}

    def messageReceived(self, kind, message):
        raise NotImplementedError()
