"""
A throw-away etcd cluster on 127.0.0.1 for tests: three members on their
own ports and temporary directories, started and ended by their PIDs;
optionally with TLS (and client certificates) and authentication.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import signal
import subprocess
import tempfile
import time
import urllib.request

from playbalancer.testing.client import freePorts

__all__ = ["EtcdCluster"]


class EtcdCluster:
    """
    C{size} etcd members (C{etcd} from Debian's etcd-server package).

    @param certificate: C{(keyPath, certPath)} to serve clients over TLS.
    @param clientCA: a PEM file: clients must show a certificate it signed.
    """

    def __init__(self, size=3, executable="etcd", certificate=None, clientCA=None):
        self.size = size
        self.certificate = certificate
        self.clientCA = clientCA
        self._context = None
        if certificate is not None:
            self._context = ssl.create_default_context(cafile=certificate[1])
            if clientCA is not None:
                self._context.load_cert_chain(certificate[1], certificate[0])
        self._token = None
        self.executable = executable
        self.directory = tempfile.mkdtemp(prefix="pb-etcd-")
        ports = freePorts(2 * size)
        self.clientPorts = ports[:size]
        self.peerPorts = ports[size:]
        self.processes = [None] * size
        self.token = os.path.basename(self.directory)

    @property
    def endpoints(self):
        scheme = "https" if self.certificate else "http"
        return [f"{scheme}://127.0.0.1:{port}" for port in self.clientPorts]

    def _command(self, index):
        peers = ",".join(
            f"n{i}=http://127.0.0.1:{port}" for i, port in enumerate(self.peerPorts)
        )
        client = self.endpoints[index]
        peer = f"http://127.0.0.1:{self.peerPorts[index]}"
        tls = []
        if self.certificate:
            tls = ["--key-file", self.certificate[0], "--cert-file", self.certificate[1]]
        if self.clientCA:
            tls += ["--client-cert-auth", "--trusted-ca-file", self.clientCA]
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
        ] + tls

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
                    if "header" in self.call("/v3/kv/range", {"key": "AA=="}, endpoint):
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        raise RuntimeError("etcd did not come up")

    def call(self, path, body, endpoint=None):
        """
        One JSON request to the gateway (as root once L{enableAuth} ran).

        @raise OSError: when etcd cannot be reached or refuses.
        """
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = self._token
        request = urllib.request.Request(
            (endpoint or self.endpoints[0]) + path, data=json.dumps(body).encode(), headers=headers
        )
        with urllib.request.urlopen(request, timeout=2, context=self._context) as answer:
            return json.loads(answer.read())

    def enableAuth(self, user, password, prefix=b"/playbalancer/"):
        """
        Turn authentication on, with C{user} allowed to read and write
        under C{prefix} only.
        """
        rootPassword = base64.b64encode(os.urandom(12)).decode()
        key = base64.b64encode(prefix).decode()
        end = base64.b64encode(prefix[:-1] + bytes([prefix[-1] + 1])).decode()
        self.call("/v3/auth/user/add", {"name": "root", "password": rootPassword})
        self.call("/v3/auth/role/add", {"name": "root"})
        self.call("/v3/auth/user/grant", {"user": "root", "role": "root"})
        self.call("/v3/auth/user/add", {"name": user, "password": password})
        self.call("/v3/auth/role/add", {"name": "playbalancer"})
        self.call(
            "/v3/auth/role/grant",
            {"name": "playbalancer", "perm": {"permType": "READWRITE", "key": key, "range_end": end}},
        )
        self.call("/v3/auth/user/grant", {"user": user, "role": "playbalancer"})
        self.call("/v3/auth/enable", {})
        self._token = self.call("/v3/auth/authenticate", {"name": "root", "password": rootPassword})["token"]

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
