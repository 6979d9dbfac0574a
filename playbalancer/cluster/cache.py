"""
The file a cluster node keeps its last snapshot of the tier in
(L{SnapshotCache}), to serve from when the store cannot be reached at
start-up.
"""

from __future__ import annotations

import json

from twisted.logger import Logger

from playbalancer.atomicfile import replaceFile

# One namespace for the cluster node's log lines, as before this module.
_log = Logger(namespace="playbalancer.cluster.node")


class SnapshotCache:
    """
    A snapshot (C{{"revision": int, "records": {key: record}}}, as
    L{playbalancer.cluster.mirror.TierMirror.snapshot} gives) in one JSON
    file, replaced atomically. A file that cannot be written or read is
    logged, not raised; with no C{path}, nothing is kept.
    """

    def __init__(self, path):
        self.path = path

    def save(self, snapshot):
        """
        Write C{snapshot} over the file.
        """
        if not self.path:
            return
        try:
            replaceFile(self.path, json.dumps(snapshot).encode("utf-8"), prefix=".playbalancer-cache-")
        except OSError as e:
            _log.warn("cluster: cannot write the cache {path}: {problem}", path=self.path, problem=e.strerror)

    def read(self):
        """
        The snapshot in the file, or L{None} when there is none or it is
        not one (a missing file is not logged).
        """
        if not self.path:
            return None
        try:
            with open(self.path, encoding="utf-8") as f:
                cached = json.load(f)
        except (OSError, ValueError) as e:
            if not isinstance(e, FileNotFoundError):
                _log.warn("cluster: cannot use the cache {path}: {problem}", path=self.path, problem=e)
            return None
        if (
            not isinstance(cached, dict)
            or not isinstance(cached.get("records"), dict)
            or isinstance(cached.get("revision"), bool)
            or not isinstance(cached.get("revision"), int)
        ):
            _log.warn("cluster: cannot use the cache {path}: not a snapshot", path=self.path)
            return None
        return cached
