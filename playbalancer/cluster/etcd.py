"""
An etcd v3 client over etcd's JSON gateway (C{/v3/kv/range}, C{/v3/kv/txn},
C{/v3/watch}, C{/v3/lease/*}) with treq: no grpc dependency.

Keys and values are bytes (base64 on the wire).  A request that fails on
one endpoint is not retried here; the caller moves on with L{rotate}.  With
a user and password, the store authenticates first (C{/v3/auth/authenticate})
and sends the token in the C{Authorization} header, again when etcd says
the token is no longer valid.
"""

from __future__ import annotations

import base64
import json

import treq
from twisted.internet.defer import CancelledError
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from playbalancer.cluster.interfaces import CompactedError, IStateStore, StoreError


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _unb64(text):
    return base64.b64decode(text) if text else b""


def prefixEnd(prefix):
    """
    The end of the key range of all keys starting with C{prefix}.
    """
    return prefix[:-1] + bytes([prefix[-1] + 1])


class AuthenticationError(StoreError):
    """
    etcd refused the user and password.
    """


#: gRPC's UNAUTHENTICATED: the token expired or etcd restarted.
_UNAUTHENTICATED = 16


class _WatchStream(Protocol):
    """
    Reads a watch response: one JSON object per line.
    """

    def __init__(self, onResult, done):
        self.onResult = onResult
        self.done = done
        self.buffer = b""

    def dataReceived(self, data):
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line.strip():
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                self.onResult(message)

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.callback(None)


@implementer(IStateStore)
class EtcdStore:
    """
    etcd through its JSON gateway.

    @param endpoints: base URLs, e.g. C{["http://127.0.0.1:2379"]}.
    @param http: a L{treq.client.HTTPClient}.
    @param timeout: seconds for each unary request.
    @param credentials: C{(user, password)}, or L{None} when etcd does not
        require authentication.
    """

    def __init__(self, endpoints, http, reactor, timeout=2.0, pool=None, credentials=None):
        self.pool = pool
        self.credentials = credentials
        self._token = None
        self.endpoints = list(endpoints)
        self.http = http
        self.reactor = reactor
        self.timeout = timeout
        self._current = 0
        self._stream = None
        #: The watch request while its response has not begun, or L{None}.
        self._watchAsked = None

    def close(self):
        """
        Close the connections to the store (when the node stops).
        """
        if self.pool is not None:
            return self.pool.closeCachedConnections()
        return None

    def stopWatching(self):
        """
        End the current watch, if any (when the node stops).
        """
        asked = self._watchAsked
        if asked is not None and not asked.called:
            # Still connecting, or waiting for the response's head.
            asked.cancel()
        stream = self._stream
        if stream is not None and stream.transport is not None:
            stream.transport.stopProducing()

    @property
    def endpoint(self):
        return self.endpoints[self._current]

    def rotate(self):
        """
        Use the next endpoint from now on.
        """
        self._current = (self._current + 1) % len(self.endpoints)

    async def _headers(self, extra=None):
        headers = {b"Content-Type": [b"application/json"]}
        if self.credentials is not None:
            if self._token is None:
                self._token = await self._authenticate()
            headers[b"Authorization"] = [self._token.encode("ascii")]
        headers.update(extra or {})
        return headers

    async def _authenticate(self):
        user, password = self.credentials
        try:
            answer = await self._post("/v3/auth/authenticate", {"name": user, "password": password}, {})
        except StoreError as e:
            raise AuthenticationError(f"{e} (authenticating as {user!r})") from None
        token = answer.get("token")
        if not isinstance(token, str) or not token.isascii() or not token:
            raise AuthenticationError(f"{self.endpoint}: no token for {user!r}")
        return token

    async def _call(self, path, body):
        try:
            return await self._post(path, body, await self._headers())
        except StoreError as e:
            if getattr(e, "code", None) != _UNAUTHENTICATED or self.credentials is None:
                raise
        self._token = None  # expired: once more with a new one
        return await self._post(path, body, await self._headers())

    async def _post(self, path, body, headers):
        try:
            response = await self.http.post(
                self.endpoint + path,
                data=json.dumps(body).encode("ascii"),
                headers=headers,
                timeout=self.timeout,
            )
            text = await treq.content(response)
        except CancelledError:
            raise StoreError(f"{self.endpoint}: no answer within {self.timeout}s")
        except Exception as e:
            raise StoreError(f"{self.endpoint}: {e.__class__.__name__}: {e}")
        try:
            answer = json.loads(text)
        except ValueError:
            raise StoreError(f"{self.endpoint}: not JSON (HTTP {response.code})")
        if not isinstance(answer, dict):
            raise StoreError(f"{self.endpoint}: not a JSON object (HTTP {response.code})")
        if response.code != 200 or "error" in answer:
            error = StoreError(f"{self.endpoint}: {answer.get('error') or answer.get('message') or response.code}")
            error.code = answer.get("code")
            raise error
        return answer

    async def range(self, prefix):
        """
        Every key under C{prefix}.

        @return: C{(revision, {key: (value, modRevision)})}.
        """
        answer = await self._call(
            "/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(prefixEnd(prefix))}
        )
        revision = int(answer["header"]["revision"])
        found = {}
        for kv in answer.get("kvs", []):
            found[_unb64(kv["key"])] = (_unb64(kv.get("value")), int(kv.get("mod_revision", 0)))
        return revision, found

    async def get(self, key):
        """
        C{(value, modRevision)} of one key, or C{(None, 0)}.
        """
        answer = await self._call("/v3/kv/range", {"key": _b64(key)})
        kvs = answer.get("kvs", [])
        if not kvs:
            return None, 0
        return _unb64(kvs[0].get("value")), int(kvs[0].get("mod_revision", 0))

    async def compareAndSet(self, key, value, modRevision):
        """
        Write C{value} if C{key} was last written at C{modRevision} (0: if
        it does not exist).

        @return: the new revision, or L{None} when the key had changed.
        """
        answer = await self._call(
            "/v3/kv/txn",
            {
                "compare": [
                    {
                        "key": _b64(key),
                        "target": "MOD",
                        "result": "EQUAL",
                        "mod_revision": str(modRevision),
                    }
                ],
                "success": [{"request_put": {"key": _b64(key), "value": _b64(value)}}],
            },
        )
        if not answer.get("succeeded"):
            return None
        return int(answer["header"]["revision"])

    async def put(self, key, value, lease=None):
        body = {"key": _b64(key), "value": _b64(value)}
        if lease is not None:
            body["lease"] = str(lease)
        answer = await self._call("/v3/kv/put", body)
        return int(answer["header"]["revision"])

    async def grant(self, ttl):
        """
        A new lease of C{ttl} seconds; its id.
        """
        answer = await self._call("/v3/lease/grant", {"TTL": ttl})
        return int(answer["ID"])

    async def keepAlive(self, lease):
        """
        Renew a lease.

        @return: whether it still exists.
        """
        answer = await self._call("/v3/lease/keepalive", {"ID": str(lease)})
        result = answer.get("result", answer)
        return int(result.get("TTL", 0)) > 0

    async def revoke(self, lease):
        await self._call("/v3/lease/revoke", {"ID": str(lease)})

    async def watch(self, prefix, startRevision, onEvents):
        """
        Watch every key under C{prefix} from C{startRevision} until the
        watch ends.  The watch requires a leader: it ends when the cluster
        loses its leader.

        @param onEvents: called as C{onEvents(revision, [(key, value or
            None for a delete, modRevision)])} for each batch of changes,
            and with an empty list for progress notifications.
        @raise CompactedError: C{startRevision} was compacted.
        @raise StoreError: when the watch ends, with why.
        """
        from twisted.internet.defer import Deferred

        body = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _b64(prefixEnd(prefix)),
                "start_revision": str(startRevision),
                "progress_notify": True,
            }
        }
        # clientv3's WithRequireLeader, through the gateway.
        headers = await self._headers({b"Grpc-Metadata-Hasleader": [b"true"]})
        self._watchAsked = self.http.post(
            self.endpoint + "/v3/watch",
            data=json.dumps(body).encode("ascii"),
            headers=headers,
            unbuffered=True,
            timeout=self.timeout,
        )
        try:
            response = await self._watchAsked
        except Exception as e:
            raise StoreError(f"{self.endpoint}: watch: {e.__class__.__name__}: {e}")
        finally:
            self._watchAsked = None
        done = Deferred()
        ended = []

        def end(error):
            ended.append(error)
            if stream.transport is not None:
                stream.transport.stopProducing()

        def onResult(message):
            if ended:
                return
            if "error" in message:
                if isinstance(message["error"], dict) and message["error"].get("code") == _UNAUTHENTICATED:
                    self._token = None
                end(StoreError(f"{self.endpoint}: watch: {message['error'].get('message')}"))
                return
            result = message.get("result", {})
            if result.get("compact_revision") and int(result["compact_revision"]) > 0:
                end(CompactedError(f"revision {startRevision} was compacted"))
                return
            if result.get("canceled"):
                reason = result.get("cancel_reason", "")
                if "auth token" in reason:
                    self._token = None  # the next watch authenticates again
                end(StoreError(f"{self.endpoint}: watch canceled: {reason}"))
                return
            if result.get("created") and not result.get("events"):
                # Its revision is the store's, not what was delivered yet.
                return
            revision = int(result.get("header", {}).get("revision", 0))
            changes = []
            for event in result.get("events", []):
                kv = event["kv"]
                key = _unb64(kv["key"])
                if event.get("type") == "DELETE":
                    changes.append((key, None, int(kv.get("mod_revision", revision))))
                else:
                    changes.append((key, _unb64(kv.get("value")), int(kv.get("mod_revision", revision))))
            onEvents(revision, changes)

        stream = self._stream = _WatchStream(onResult, done)
        response.deliverBody(stream)
        await done
        self._stream = None
        if ended:
            raise ended[0]
        raise StoreError(f"{self.endpoint}: the watch stream ended")
