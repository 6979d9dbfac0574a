"""
benchmarks/openloop.c, the open-loop load generator of benchmarks/tail.py
and latency.py --generator c: built with the machine's C compiler and run
against a twisted.web site on 127.0.0.1, it sends what it says and counts
what went wrong.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.join(ROOT, "benchmarks"))

import latency  # noqa: E402


class Counting(Resource):
    isLeaf = True

    def __init__(self, code):
        Resource.__init__(self)
        self.code = code
        self.seen = []

    def render_GET(self, request):
        self.seen.append((request.path, request.getHeader(b"host"), request.clientproto))
        request.setResponseCode(self.code)
        return b"x" * 100


class OpenLoopTests(TestCase):
    def setUp(self):
        if not (shutil.which("cc") or shutil.which("gcc")):
            raise self.failureException("a C compiler is needed to build benchmarks/openloop.c")
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        self.program = latency.buildOpenLoop(directory)

    def serve(self, code):
        resource = Counting(code)
        port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return resource, port.getHost().port

    async def run_(self, port, rate="200", seconds="1", connections="4"):
        out, err, code = await getProcessOutputAndValue(
            self.program, ["127.0.0.1", str(port), "/small", rate, seconds, connections,
                           "example.test"])
        self.assertEqual(code, 0, err)
        return json.loads(out)

    async def test_sendsEveryRequestDue(self):
        """
        RATE x SECONDS GETs over keep-alive connections, each answered and
        timed; the Host given is sent; the generator's CPU is reported.
        """
        resource, port = self.serve(200)
        result = await self.run_(port)
        self.assertEqual((result["requests"], result["answered"], result["errors"]), (200, 200, 0))
        self.assertEqual(len(resource.seen), 200)
        self.assertEqual(set(resource.seen), {(b"/small", b"example.test", b"HTTP/1.1")})
        self.assertTrue(0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"], result)
        self.assertGreaterEqual(result["generator_cpu_s"], 0)
        self.assertGreater(result["achieved_rate"], 0)

    async def test_answersOtherThan200AreErrors(self):
        resource, port = self.serve(404)
        result = await self.run_(port, rate="50")
        self.assertEqual((result["answered"], result["errors"]), (50, 50))

    async def test_badArguments(self):
        out, err, code = await getProcessOutputAndValue(
            self.program, ["localhost", "80", "/", "10", "1", "1"])
        self.assertEqual(code, 2)
        self.assertIn(b"IPv4 address", err)

    def test_runOpenLoopFromLatency(self):
        """
        latency.runOpenLoop builds the command line from a URL (path and
        Host from it); here against a port where nothing listens, which the
        program refuses with its own status.
        """
        with self.assertRaises(subprocess.CalledProcessError) as caught:
            latency.runOpenLoop(self.program, "http://127.0.0.1:1/x", 10, 1, 1)
        self.assertEqual(caught.exception.cmd[1:], ["127.0.0.1", "1", "/x", "10", "1", "1",
                                                    "127.0.0.1:1"])
