"""
A throw-away etcd cluster on 127.0.0.1 for tests: three members on their
own ports and temporary directories, started and ended by their PIDs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

from playbalancer.testing import freePorts


class EtcdCluster:
    """
    C{size} etcd members (C{etcd} from Debian's etcd-server package).
    """

    def __init__(self, size=3, executable="etcd"):
        self.size = size
        self.executable = executable
        self.directory = tempfile.mkdtemp(prefix="pb-etcd-")
        ports = freePorts(2 * size)
        self.clientPorts = ports[:size]
        self.peerPorts = ports[size:]
        self.processes = [None] * size
        self.token = os.path.basename(self.directory)

    @property
    def endpoints(self):
        return [f"http://127.0.0.1:{port}" for port in self.clientPorts]

    def _command(self, index):
        peers = ",".join(
            f"n{i}=http://127.0.0.1:{port}" for i, port in enumerate(self.peerPorts)
        )
        client = f"http://127.0.0.1:{self.clientPorts[index]}"
        peer = f"http://127.0.0.1:{self.peerPorts[index]}"
        return [
            self.executable,
            "--name", f"n{index}",
            "--data-dir", os.path.join(self.directory, f"n{index}"),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", peers,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", self.token,
            "--heartbeat-interval", "100",
            "--election-timeout", "1000",
            "--logger", "zap",
            "--log-outputs", os.path.join(self.directory, f"n{index}.log"),
        ]

    def start(self, indexes=None):
        """
        Start the members (all, or C{indexes}); returns when the cluster
        answers reads.
        """
        for index in indexes if indexes is not None else range(self.size):
            self.processes[index] = subprocess.Popen(
                self._command(index), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        return self

    def waitReady(self, timeout=30.0):
        """
        Block until a member answers a linearizable read (a leader exists).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for endpoint in self.endpoints:
                try:
                    request = urllib.request.Request(
                        endpoint + "/v3/kv/range",
                        data=b'{"key": "AA=="}',
                        headers={"Content-Type": "application/json"},
                    )
                    with urllib.request.urlopen(request, timeout=1) as answer:
                        if answer.status == 200 and b"header" in answer.read():
                            return
                except OSError:
                    pass
            time.sleep(0.1)
        raise RuntimeError("etcd did not come up")

    def kill(self, index):
        """
        SIGKILL one member.
        """
        process = self.processes[index]
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        self.processes[index] = None

    def stop(self):
        """
        End every member started here and remove the directories.
        """
        for index in range(self.size):
            self.kill(index)
        shutil.rmtree(self.directory, ignore_errors=True)
