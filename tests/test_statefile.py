"""
Admin state that survives a restart, and a state file that cannot be read
stopping start-up cleanly instead of being wiped.
"""

from __future__ import annotations

import json
import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from playbalancer import statefile
from playbalancer.tap import Options, makeService

CONFIG = """
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
balancer = "web"

[manager]
endpoint = "tcp:0:interface=127.0.0.1"
state_file = "{state}"

[balancer.web]
[[balancer.web.member]]
name = "app1"
url = "http://127.0.0.1:9999"

[[balancer.web.member]]
name = "app2"
url = "http://127.0.0.1:9998"
standby = true
"""


class StateFileTests(SynchronousTestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.state = os.path.join(self.dir, "state.json")
        self.config = os.path.join(self.dir, "playbalancer.toml")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(state=self.state))

    def start(self):
        """
        Build the service as twistd would (not listening), on a Clock.
        """
        options = Options()
        options.parseOptions(["--config", self.config])
        return makeService(options, reactor=Clock())

    def test_changesSurviveRestart(self):
        """
        A drained member stays drained, a weight stays set, a member added
        at run time comes back, and one removed stays gone.
        """
        service = self.start()
        web = service.balancers["web"]
        web.setAdmin(web.member("app1"), "drain", "127.0.0.1")
        web.setWeight(web.member("app2"), 3, "127.0.0.1")
        web.setStandby(web.member("app2"), False, "127.0.0.1")
        from playbalancer.balancer import Member

        web.addMember(Member("app3", "http://127.0.0.1:9997", weight=2), "127.0.0.1")
        saved = json.load(open(self.state))
        self.assertEqual(saved["balancers"]["web"]["members"]["app1"]["admin"], "drain")

        web = self.start().balancers["web"]
        self.assertEqual([m.name for m in web.members], ["app1", "app2", "app3"])
        self.assertEqual(web.member("app1").admin, "drain")
        self.assertEqual((web.member("app2").weight, web.member("app2").standby), (3, False))
        self.assertEqual((web.member("app3").url, web.member("app3").weight), ("http://127.0.0.1:9997", 2))

        web.removeMember(web.member("app1"), "127.0.0.1")
        web.removeMember(web.member("app3"), "127.0.0.1")
        web = self.start().balancers["web"]
        self.assertEqual([m.name for m in web.members], ["app2"])

    def test_noFileYet(self):
        """
        Without a state file, start-up uses the config, and the first change
        writes the file.
        """
        web = self.start().balancers["web"]
        self.assertEqual(web.member("app1").admin, "enabled")
        self.assertFalse(os.path.exists(self.state))
        web.setAdmin(web.member("app1"), "disabled", "test")
        self.assertTrue(os.path.exists(self.state))

    def test_corruptFileStopsStartup(self):
        """
        A corrupt state file stops start-up with one clear line, and is left
        exactly as it was.
        """
        for content in [b'{"format": 1, "balancers": {', b"\xff\xfe", b'{"format": 99}',
                        b'{"format": 1, "balancers": {"web": {"members": {"app1": {"admin": "gone"}}}}}']:
            with open(self.state, "wb") as f:
                f.write(content)
            with self.assertRaises(SystemExit) as caught:
                self.start()
            message = str(caught.exception)
            self.assertTrue(message.startswith("playbalancer: state file "), message)
            self.assertIn("move it away", message)
            self.assertNotIn("\n", message)
            with open(self.state, "rb") as f:
                self.assertEqual(f.read(), content)

    def test_injectedURLStopsStartup(self):
        """
        A member URL in the state file is checked as the config's are: one
        with CR and LF in it never reaches a request line.
        """
        content = json.dumps({"format": 1, "balancers": {"web": {"members": {"app9": {
            "admin": "enabled", "standby": False, "weight": 1,
            "url": "http://127.0.0.1:9/x HTTP/1.1\r\nX-Injected: yes\r\nX-Pad:"}}, "removed": []}}})
        with open(self.state, "w") as f:
            f.write(content)
        with self.assertRaises(SystemExit) as caught:
            self.start()
        self.assertIn("URL characters", str(caught.exception))

    def test_atomicWriteLeavesNoTemporaryFiles(self):
        statefile.write(self.state, {"format": 1, "balancers": {}})
        statefile.write(self.state, {"format": 1, "balancers": {"x": {"members": {}}}})
        self.assertEqual(sorted(os.listdir(self.dir)), ["playbalancer.toml", "state.json"])
        self.assertEqual(statefile.read(self.state)["balancers"], {"x": {"members": {}}})

    def test_tokenFileProblems(self):
        """
        An unreadable or empty token file stops start-up with one line
        naming the key.
        """
        text = open(self.config).read().replace(
            "[manager]\n", f'[manager]\ntoken_file = "{self.dir}/token"\n'
        )
        with open(self.config, "w") as f:
            f.write(text)
        with self.assertRaises(SystemExit) as caught:
            self.start()
        self.assertIn("manager.token_file: cannot read", str(caught.exception))
        with open(os.path.join(self.dir, "token"), "w") as f:
            f.write("  \n")
        with self.assertRaises(SystemExit) as caught:
            self.start()
        self.assertIn("manager.token_file:", str(caught.exception))
        self.assertIn("is empty", str(caught.exception))
        with open(os.path.join(self.dir, "token"), "w") as f:
            f.write("s3cret\n")
        self.assertEqual(self.start().manager.policy.token, "s3cret")


class TCPStateTests(SynchronousTestCase):
    def test_restoredMemberWaitsForItsChecks(self):
        """
        A member added at run time and restored from the state file gets no
        traffic before its first passing health check, as when it was added.
        """
        from playbalancer.balancer import Balancer
        from playbalancer.schedulers import RoundRobinScheduler

        path = os.path.join(self.mktemp() + ".json")
        statefile.write(path, {"format": 1, "balancers": {"web": {"members": {
            "app9": {"admin": "enabled", "standby": False, "weight": 1, "url": "http://127.0.0.1:9"}},
            "removed": []}}})
        from playbalancer.balancer import Member

        clock = Clock()
        balancer = Balancer("web", RoundRobinScheduler(), [Member("app1", "http://127.0.0.1:1")], clock)
        balancer.activeChecks = True
        statefile.apply(statefile.read(path), {"web": balancer})
        app9 = balancer.member("app9")
        self.assertNotIn(app9, balancer.candidates())
        self.assertEqual(app9.downReason, "not checked yet")
        balancer.checkResult(app9, True, "200", 0.01, rise=1, fall=1)
        self.assertIn(app9, balancer.candidates())

    def test_tcpMemberAddedAtRuntime(self):
        from playbalancer.balancer import Balancer
        from playbalancer.schedulers import RoundRobinScheduler

        path = os.path.join(self.mktemp() + ".json")
        state = {"format": 1, "balancers": {"db": {"members": {
            "db9": {"admin": "enabled", "standby": False, "weight": 1, "url": "tcp://127.0.0.1:5439"}},
            "removed": []}}}
        statefile.write(path, state)
        balancers = {"db": Balancer("db", RoundRobinScheduler(), [], Clock())}
        statefile.apply(statefile.read(path), balancers)
        self.assertEqual(balancers["db"].member("db9").url, "tcp://127.0.0.1:5439")
