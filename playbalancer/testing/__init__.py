"""
Test doubles for playbalancer and for code built on it: members on real
sockets that record what reached them (L{members}), members that fail on
purpose (L{faultmember}), raw HTTP clients that show the exact bytes of a
response (L{client}), free ports for child processes (L{ports}), a real
C{twistd playbalancer} child (L{twistd}), a throw-away etcd cluster
(L{etcd}), and self-signed certificates (L{certs}).  For scheduler
authors: a simulator that runs a scheduler against synthetic members and
requests (L{simulator}, L{simulated}, L{simreport}), conformance tests
any scheduler's test case can inherit (L{schedulercases}), and requests
and members as C{pick} sees them (L{views}).  The names most tests use
are importable from here.
"""

from playbalancer.testing.certs import writeSelfSigned
from playbalancer.testing.client import RawConversation, _RawClient, rawExchange
from playbalancer.testing.members import BrokenMember, HoldPage, MemberServer
from playbalancer.testing.ports import freePort, freePorts
from playbalancer.testing.schedulercases import SchedulerConformanceMixin, awkwardViews
from playbalancer.testing.simreport import (
    MemberReport,
    PhaseReport,
    RemapReport,
    SimulationReport,
)
from playbalancer.testing.simulated import (
    Fault,
    Keys,
    Latency,
    RequestStream,
    SimulatedMember,
    addMember,
    down,
    drainMember,
    enableMember,
    exponential,
    fixed,
    lognormal,
    phase,
    refusing,
    removeMember,
    setWeight,
    uniform,
)
from playbalancer.testing.simulator import Simulation, simulate
from playbalancer.testing.twistd import TwistdProcess
from playbalancer.testing.views import candidateMember, candidateMembers, requestView, tcpView
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
    # For scheduler authors
    "SchedulerConformanceMixin",
    "awkwardViews",
    "requestView",
    "tcpView",
    "candidateMembers",
    "candidateMember",
    "Simulation",
    "simulate",
    "SimulationReport",
    "MemberReport",
    "PhaseReport",
    "RemapReport",
    "SimulatedMember",
    "Latency",
    "fixed",
    "uniform",
    "exponential",
    "lognormal",
    "Fault",
    "down",
    "refusing",
    "Keys",
    "RequestStream",
    "addMember",
    "removeMember",
    "drainMember",
    "enableMember",
    "setWeight",
    "phase",
]
