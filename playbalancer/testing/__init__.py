"""
Test doubles for playbalancer and for code built on it: members on real
sockets that record what reached them (L{members}), members that fail on
purpose (L{faultmember}), raw HTTP clients that show the exact bytes of a
response (L{client}), a real C{twistd playbalancer} child (L{twistd}), a
throw-away etcd cluster (L{etcd}), and self-signed certificates
(L{certs}).  The names most tests use are importable from here.
"""

from playbalancer.testing.certs import writeSelfSigned
from playbalancer.testing.client import (
    RawConversation,
    _RawClient,
    freePort,
    freePorts,
    rawExchange,
)
from playbalancer.testing.members import BrokenMember, HoldPage, MemberServer
from playbalancer.testing.twistd import TwistdProcess
from playbalancer.testing.waiting import closeAll, waitUntil

__all__ = [
    "HoldPage",
    "MemberServer",
    "BrokenMember",
    "closeAll",
    "waitUntil",
    "rawExchange",
    "freePorts",
    "freePort",
    "RawConversation",
    "TwistdProcess",
    "writeSelfSigned",
    "_RawClient",
]
