"""
The operating files in etc/: the systemd unit and the logrotate snippet
say what the README says (their behaviour, READY/MAINPID, SIGHUP and
SIGUSR1, is tested over real processes in test_upgrade, test_reload and
test_accesslog_reopen).
"""

from __future__ import annotations

import configparser
import os
import shlex

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SystemdUnitTests(SynchronousTestCase):
    def unit(self):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str
        parser.read(os.path.join(ROOT, "etc", "systemd", "playbalancer.service"))
        return parser

    def test_notifyWithMainPidChanges(self):
        service = self.unit()["Service"]
        self.assertEqual(service["Type"], "notify")
        self.assertEqual(service["NotifyAccess"], "all")
        self.assertEqual(service["ExecReload"], "/bin/kill -HUP $MAINPID")

    def test_runsInTheForegroundWithoutPidFile(self):
        from playbalancer.tap import Options

        argv = shlex.split(self.unit()["Service"]["ExecStart"])
        self.assertTrue(argv[0].endswith("/twistd"))
        self.assertIn("--nodaemon", argv)
        self.assertIn("--pidfile=", argv)
        plugin = argv[argv.index("playbalancer") + 1 :]
        self.assertEqual(plugin[0], "--config")
        self.assertIn("config", Options().synopsis)

    def test_stopTimeoutLongerThanTheGrace(self):
        from playbalancer.config import DEFAULT_SHUTDOWN_GRACE

        timeout = float(self.unit()["Service"]["TimeoutStopSec"])
        self.assertGreater(timeout, DEFAULT_SHUTDOWN_GRACE)


    def test_writablePlacesUnderProtectSystem(self):
        """
        C{ProtectSystem=strict} makes the file system read-only: the
        upgrade's handover file and the workers' manager sockets go to the
        runtime directory systemd makes (C{$RUNTIME_DIRECTORY}), and /tmp is
        a private writable one.
        """
        service = self.unit()["Service"]
        self.assertEqual(service["ProtectSystem"], "strict")
        self.assertEqual(service["RuntimeDirectory"], "playbalancer")
        self.assertEqual(service["PrivateTmp"], "yes")

    def test_handoverFileInTheRuntimeDirectory(self):
        from playbalancer.upgrade import Upgrader

        upgrader = Upgrader(None, None, None, None, argv=["twistd"])
        self.patch(os, "environ", {"RUNTIME_DIRECTORY": "/run/playbalancer"})
        self.assertEqual(upgrader.stateDirectory(), "/run/playbalancer")
        self.patch(os, "environ", {})
        self.assertIsNone(upgrader.stateDirectory())


class LogrotateTests(SynchronousTestCase):
    def test_reopensWithUSR1ToTheMainProcess(self):
        with open(os.path.join(ROOT, "etc", "logrotate.d", "playbalancer")) as f:
            text = f.read()
        self.assertIn("--signal=USR1 --kill-who=main playbalancer.service", text)
        self.assertIn("postrotate", text)
