"""
An HTTP/2 conformance corpus of raw-frame cases, in the spirit of h2spec's
sections (RFC 9113, RFC 7541) plus the HTTP/2 attack classes, and
L{runCorpus} to run it against a server.

Each case (L{playbalancer.testing.h2probe.Case}) has a name, the RFC
section, what the client sends, and the set of acceptable outcomes;
running it records what the server did (GOAWAY code, RST_STREAM code,
response status, close, timeout) and passes when that is acceptable.
The server must answer C{GET /} and C{POST /echo} with 200.

    from playbalancer.testing.h2corpus import runCorpus
    for result in runCorpus("127.0.0.1", 8443, tls=True):
        print(result.case.name, result.outcome.label(), result.mark)
"""

from __future__ import annotations

import time

from playbalancer.testing.h2flowcases import FLOW_CASES
from playbalancer.testing.h2framecases import FRAME_CASES
from playbalancer.testing.h2headcases import HEAD_CASES
from playbalancer.testing.h2probe import runCase

__all__ = ["CASES", "CaseResult", "runCorpus", "expectedText"]

#: Every case, framing first.
CASES = tuple(FRAME_CASES) + tuple(FLOW_CASES) + tuple(HEAD_CASES)


class CaseResult:
    """
    One case run against one server.

    @ivar case: the L{Case}.
    @ivar outcome: the recorded L{Outcome}.
    @ivar seconds: how long the case took.
    @ivar passed: C{True} or C{False}; C{None} when the case does not apply.
    """

    def __init__(self, case, outcome, seconds):
        self.case = case
        self.outcome = outcome
        self.seconds = seconds
        if outcome.notApplicable:
            self.passed = None
        else:
            self.passed = outcome.matches(case.accept)

    @property
    def mark(self):
        """
        C{"ok"}, C{"FAIL"} (C{"fail"} for a SHOULD) or C{"n/a"}.
        """
        if self.passed is None:
            return "n/a"
        if self.passed:
            return "ok"
        return "FAIL" if self.case.level == "MUST" else "fail"

    def asDict(self):
        """
        The result as JSON-friendly values.
        """
        return {
            "name": self.case.name,
            "section": self.case.section,
            "level": self.case.level,
            "summary": self.case.summary,
            "expected": list(self.case.accept),
            "outcome": self.outcome.asDict(),
            "passed": self.passed,
            "seconds": round(self.seconds, 3),
        }


def expectedText(case):
    """
    The acceptable outcomes of C{case} in a few words, e.g.
    C{"GOAWAY PROTOCOL_ERROR | closed"}.
    """
    return " | ".join(token.replace(":", " ") for token in case.accept)


def runCorpus(host, port, tls=True, authority=None, timeout=2.0, cases=None,
              match=None, progress=None):
    """
    Run the corpus against the server at C{host}:C{port}, one connection
    per case, one case after another.

    @param tls: TLS with ALPN h2 (certificate not verified) if true, else
        prior-knowledge h2c on cleartext.
    @param authority: the C{:authority} of the requests (and the SNI name);
        C{host:port} by default.
    @param timeout: seconds to wait for each step and for the outcome (the
        attack cases allow a few times more).
    @param cases: the cases to run, L{CASES} by default.
    @param match: run only the cases whose name contains this text.
    @param progress: called with each L{CaseResult} as it is recorded.
    @return: a list of L{CaseResult}, in the cases' order.
    """
    if authority is None:
        authority = "%s:%d" % (host, port)
    results = []
    for case in CASES if cases is None else cases:
        if match and match not in case.name:
            continue
        start = time.monotonic()
        outcome = runCase(case, host, port, tls=tls, authority=authority, timeout=timeout)
        result = CaseResult(case, outcome, time.monotonic() - start)
        results.append(result)
        if progress is not None:
            progress(result)
    return results
