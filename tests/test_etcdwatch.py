"""
EtcdStore.stopWatching while the watch request has not been answered yet.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from playbalancer.cluster.etcd import EtcdStore
from playbalancer.cluster.interfaces import StoreError


class UnansweredHTTP:
    """
    A treq-like client whose requests stay unanswered (still connecting).
    """

    def __init__(self):
        self.asked = []
        self.cancelled = []

    def post(self, url, **kwargs):
        d = Deferred(lambda d: self.cancelled.append(url))
        self.asked.append(url)
        return d


class StopWatchingTests(SynchronousTestCase):
    def test_cancelsAWatchNotAnsweredYet(self):
        """
        A node stopped just after it asked for its watch leaves no request
        behind: the unanswered request is cancelled, and the watch ends
        with a L{StoreError}.
        """
        http = UnansweredHTTP()
        store = EtcdStore(["http://127.0.0.1:1"], http, Clock())
        watching = ensureDeferred(store.watch(b"/p/", 1, lambda events: None))
        self.assertEqual(http.asked, ["http://127.0.0.1:1/v3/watch"])
        self.assertNoResult(watching)
        store.stopWatching()
        self.assertEqual(http.cancelled, ["http://127.0.0.1:1/v3/watch"])
        self.failureResultOf(watching, StoreError)
        self.assertIsNone(store._watchAsked)
