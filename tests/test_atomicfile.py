"""
L{playbalancer.atomicfile}: the writer the state file and the cluster
cache share.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import TestCase

from playbalancer import statefile
from playbalancer.atomicfile import replaceFile


class ReplaceFileTests(TestCase):
    def setUp(self):
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        self.path = os.path.join(self.directory, "state.json")
        self.synced = []
        realFsync = os.fsync

        def fsync(fd):
            self.synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
            realFsync(fd)

        self.patch(os, "fsync", fsync)

    def test_fileThenDirectorySynced(self):
        replaceFile(self.path, b"one")
        replaceFile(self.path, b"two")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"two")
        self.assertEqual(len(self.synced), 4)
        self.assertEqual(os.path.dirname(self.synced[0]), os.path.realpath(self.directory))
        self.assertNotEqual(self.synced[0], os.path.realpath(self.path))
        self.assertEqual(self.synced[1], os.path.realpath(self.directory))
        self.assertEqual(os.listdir(self.directory), ["state.json"])

    def test_failureLeavesTheOldFile(self):
        replaceFile(self.path, b"old")

        def refuse(source, target):
            raise OSError(28, "No space left on device")

        self.patch(os, "replace", refuse)
        self.assertRaises(OSError, replaceFile, self.path, b"new")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"old")
        self.assertEqual(os.listdir(self.directory), ["state.json"])

    def test_stateFileDirectorySynced(self):
        """
        The state file's rename is made durable too (#14 item 12).
        """
        statefile.write(self.path, {"format": 1, "balancers": {}})
        self.assertEqual(self.synced[-1], os.path.realpath(self.directory))
