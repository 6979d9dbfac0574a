"""
The demo launcher says where things are as its config says.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from playbalancer.config import parseConfig
from playbalancer.demo import endpointURL, summary


class DemoSummaryTests(SynchronousTestCase):
    def test_endpointURL(self):
        for endpoint, url in [
            ("tcp:8080:interface=127.0.0.1", "http://127.0.0.1:8080/"),
            ("tcp:19080", "http://127.0.0.1:19080/"),
            ("tcp6:8080:interface=\\:\\:1", "http://[::1]:8080/"),
            ("tcp6:8080", "http://[::1]:8080/"),
            ("ssl:8443:privateKey=k.pem:certKey=c.pem:interface=127.0.0.2", "https://127.0.0.2:8443/"),
            ("unix:/run/pb.sock", None),
        ]:
            self.assertEqual(endpointURL(endpoint), url, endpoint)

    def test_summaryFollowsTheConfig(self):
        config = parseConfig(
            {
                "listen": [{"endpoint": "tcp:19080:interface=127.0.0.1", "balancer": "web"}],
                "balancer": {"web": {"member": [{"name": "a", "url": "http://127.0.0.1:19999"}]}},
                "manager": {"endpoint": "tcp:19081:interface=127.0.0.1"},
            }
        )
        text = summary(config)
        self.assertIn("curl -i http://127.0.0.1:19080/", text)
        self.assertIn("manager: http://127.0.0.1:19081/", text)
        self.assertNotIn("8080", text.replace("19080", ""))
        self.assertNotIn("8081", text.replace("19081", ""))
