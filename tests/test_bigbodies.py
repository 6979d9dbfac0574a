"""
Large bodies stream through a real C{twistd playbalancer} process without
growing its memory: a 1 GiB download and a 256 MiB upload.
"""

from __future__ import annotations

import os
import platform

import treq
from zope.interface import implementer

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IBodyProducer
from treq.client import HTTPClient

from playbalancer.testing import MemberServer, TwistdProcess, freePort

MiB = 2**20
DOWNLOAD = int(os.environ.get("PLAYBALANCER_TEST_DOWNLOAD_MIB", "1024")) * MiB
UPLOAD = int(os.environ.get("PLAYBALANCER_TEST_UPLOAD_MIB", "256")) * MiB
#: How much the balancer's peak memory may grow while the bodies pass.
#: (PyPy's garbage collector lets garbage grow further before collecting;
#: either way the bound does not depend on how much passes through.)
ALLOWED_GROWTH = (96 if platform.python_implementation() == "PyPy" else 48) * MiB



def memoryOf(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


@implementer(IBodyProducer)
class GeneratedBody:
    """
    C{length} bytes made on the fly, 64 KiB at a time, pausing when asked.
    """

    def __init__(self, length):
        self.length = length

    def startProducing(self, consumer):
        chunk = b"u" * 65536

        def chunks():
            left = self.length
            while left > 0:
                piece = chunk if left >= len(chunk) else chunk[:left]
                consumer.write(piece)
                left -= len(piece)
                yield None

        self._task = task.cooperate(chunks())
        return self._task.whenDone().addCallback(lambda _: None)

    def pauseProducing(self):
        self._task.pause()

    def resumeProducing(self):
        self._task.resume()

    def stopProducing(self):
        self._task.stop()


class BigBodyTests(TestCase):
    timeout = 300

    def setUp(self):
        self.member = MemberServer("app1", reactor).start()
        self.addCleanup(self.member.stop)
        self.port = freePort()
        config = self.mktemp()
        with open(config, "w") as f:
            f.write(
                f"""
[[listen]]
endpoint = "tcp:{self.port}:interface=127.0.0.1"
balancer = "big"

[balancer.big]
[[balancer.big.member]]
name = "app1"
url = "{self.member.url}"
"""
            )
        self.child = TwistdProcess(config, self.mktemp())
        self.addCleanup(self.child.stop)
        pool = HTTPConnectionPool(reactor)
        self.addCleanup(pool.closeCachedConnections)
        self.client = HTTPClient(Agent(reactor, pool=pool))
        self.base = f"http://127.0.0.1:{self.port}"

    async def _ready(self):
        for _ in range(200):
            try:
                response = await self.client.get(self.base + "/health")
                await treq.content(response)
                if response.code == 200:
                    return
            except Exception:
                pass
            self.assertTrue(self.child.running(), "twistd exited")
            await task.deferLater(reactor, 0.05, lambda: None)
        self.fail("balancer did not come up")

    async def test_downloadAndUploadStream(self):
        await self._ready()
        baseline = memoryOf(self.child.pid, "VmRSS")

        response = await self.client.get(self.base + f"/large?size={DOWNLOAD}", unbuffered=True)
        self.assertEqual(response.code, 200)
        received = [0]

        def count(data):
            received[0] += len(data)

        await treq.collect(response, count)
        self.assertEqual(received[0], DOWNLOAD)

        response = await self.client.post(self.base + "/upload", data=GeneratedBody(UPLOAD))
        body = await treq.json_content(response)
        self.assertEqual(body["body_length"], UPLOAD)

        growth = memoryOf(self.child.pid, "VmHWM") - baseline
        print(f"\nbalancer peak memory growth: {growth / MiB:.1f} MiB "
              f"for {DOWNLOAD // MiB} MiB down, {UPLOAD // MiB} MiB up")
        self.assertLess(growth, ALLOWED_GROWTH)
