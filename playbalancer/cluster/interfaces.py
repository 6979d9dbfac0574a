"""
What cluster mode needs from a distributed store; etcd is the first
implementation (L{playbalancer.cluster.etcd.EtcdStore}), and a Redis one
would provide the same.
"""

from __future__ import annotations

from zope.interface import Interface


class StoreError(Exception):
    """
    The store could not be reached or refused a request.
    """


class CompactedError(StoreError):
    """
    The revision to watch from was compacted away: read everything again.
    """


class IStateStore(Interface):
    """
    A key-value store with revisions, compare-and-set, watches and leases.
    Methods are coroutines; failures raise L{StoreError}.
    """

    def range(prefix):
        """
        C{(revision, {key: (value, modRevision)})} of every key under
        C{prefix}.
        """

    def get(key):
        """
        C{(value, modRevision)} of C{key}, or C{(None, 0)}.
        """

    def compareAndSet(key, value, modRevision):
        """
        Write C{value} if C{key} was last written at C{modRevision} (0: it
        does not exist); the new revision, or L{None} if it had changed.
        """

    def put(key, value, lease=None):
        """
        Write C{value}, bound to C{lease} if given; the new revision.
        """

    def grant(ttl):
        """
        A new lease of C{ttl} seconds; its id.
        """

    def keepAlive(lease):
        """
        Renew C{lease}; whether it still exists.
        """

    def watch(prefix, startRevision, onEvents):
        """
        Call C{onEvents(revision, [(key, value or None, modRevision)])} for
        changes under C{prefix} from C{startRevision} on, until the watch
        ends (raising why); it must end when the store loses its leader.

        @raise CompactedError: the store no longer has C{startRevision}
            (it was compacted): the caller reads everything under
            C{prefix} again at once, without counting it as a failure.
        """

    def rotate():
        """
        Use another endpoint of the store from now on.
        """

    def close():
        """
        Close the connections to the store; may return a L{Deferred}.
        """

    def stopWatching():
        """
        End the current watch.
        """
