"""
The manager's JSON API.  State changes only through POST, PUT and DELETE,
and only with JSON bodies.
"""

from __future__ import annotations

import json

from twisted.internet.defer import ensureDeferred, succeed
from twisted.web import resource
from twisted.web.server import NOT_DONE_YET

from playbalancer.cluster.interfaces import StoreError
from playbalancer.manager import model
from playbalancer.manager.guard import sameOrigin
from playbalancer.manager.model import ChangeError
from playbalancer.manager.overview import overview
from playbalancer.manager.timeline import timeline

#: The largest request body the manager reads.
MAX_BODY = 64 * 1024


def jsonResponse(request, code, value):
    """
    Answer C{request} with C{value} as JSON.
    """
    body = json.dumps(value, indent=1).encode("utf-8") + b"\n"
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"content-length", b"%d" % len(body))
    return b"" if request.method == b"HEAD" else body


def jsonError(request, code, message, headers=(), details=None):
    for name, value in headers:
        request.setHeader(name, value)
    return jsonResponse(request, code, dict(details or {}, error=message))


class Answer(resource.Resource):
    """
    A fixed JSON error, whatever the path below.
    """

    isLeaf = True

    def __init__(self, code, message, headers=()):
        resource.Resource.__init__(self)
        self.code = code
        self.message = message
        self.headers = headers

    def render(self, request):
        return jsonError(request, self.code, self.message, self.headers)


def readJSON(request):
    """
    The JSON body of a state-changing API request, or L{ChangeError}.
    """
    contentType = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if contentType != b"application/json":
        raise ChangeError(415, "the API takes Content-Type: application/json")
    data = request.content.read(MAX_BODY + 1) if request.content is not None else b""
    if len(data) > MAX_BODY:
        raise ChangeError(413, "request body too large")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ChangeError(400, "the body is not valid JSON")


def _forced(request):
    """
    Whether a C{DELETE} goes past L{model.guardLastUsable}: C{?force=true}
    (a C{DELETE} carries no body).
    """
    return request.args.get(b"force") == [b"true"]


class ApiResource(resource.Resource):
    """
    C{GET api/status}; C{GET api/history}; C{GET api/rolling}, C{POST
    api/rolling/<b>}, C{POST api/rolling/<b>/report}; C{GET, POST, PUT, DELETE
    api/balancers/<b>/members/<m>}; C{POST api/reload}, C{POST api/upgrade}.
    """

    isLeaf = True

    def __init__(self, root):
        resource.Resource.__init__(self)
        self.root = root

    def render(self, request):
        try:
            return self._route(request)
        except ChangeError as e:
            return jsonError(request, e.code, e.message, details=e.details)

    def _route(self, request):
        path = request.postpath
        method = request.method
        if path == [b"status"]:
            if method not in (b"GET", b"HEAD"):
                request.setHeader(b"allow", b"GET, HEAD")
                raise ChangeError(405, "status is read with GET")
            return jsonResponse(request, 200, self.statusAnswer())
        if path == [b"history"]:
            return self._history(request)
        if path[:1] == [b"rolling"]:
            return self._rolling(request, path[1:])
        if path == [b"reload"]:
            return self._reload(request)
        if path == [b"upgrade"]:
            return self._upgrade(request)
        if len(path) == 4 and path[0] == b"balancers" and path[2] == b"members":
            try:
                balancerName, memberName = path[1].decode("utf-8"), path[3].decode("utf-8")
            except UnicodeDecodeError:
                raise ChangeError(400, "names must be UTF-8")
            return self._member(request, balancerName, memberName)
        raise ChangeError(404, "not found")

    def statusAnswer(self):
        """
        What C{GET api/status} answers: every balancer and member, the
        listeners, certificates, overview and timeline.
        """
        now = self.root.clock.seconds()
        status = model.status(self.root.balancers, now)
        status["listeners"] = model.listenerStatus(self.root.listeners)
        status["certificates"] = model.certificateStatus(self.root.listenerConfigs(), now)
        status["overview"] = overview(self.root.balancers, status["balancers"], self.root.history)
        status["timeline"] = timeline(status["balancers"])
        cluster = getattr(self.root, "cluster", None)
        if cluster is not None:
            status["cluster"] = cluster.summary()
        tier = self._tier()
        if tier is not None:
            for balancerName, info in status["balancers"].items():
                for memberName, member in info["members"].items():
                    member["tier"] = tier.tierState(balancerName, memberName)
        return status

    def changeMember(self, balancerName, memberName, body, who):
        """
        Make the change C{POST api/balancers/B/members/M} makes (C{body},
        its JSON), for the API and for a rolling restart the manager runs:
        a L{Deferred} firing with C{(code, answer)}; L{ChangeError} when
        the change is refused.
        """
        cluster = getattr(self.root, "cluster", None)
        if cluster is not None:
            return self._clusterWrite(b"POST", body, cluster, balancerName, memberName, who)
        balancer, member = model.find(self.root.balancers, balancerName, memberName)
        model.applyChange(balancer, member, body, who)
        return succeed((200, self._answerJSON(balancer, member)))

    def _history(self, request):
        """
        C{GET api/history[?balancer=B]}: the last minutes, sampled by the
        manager (see L{playbalancer.manager.history}), and which node's.
        """
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            raise ChangeError(405, "history is read with GET")
        history = self.root.history
        if history is None:
            raise ChangeError(404, "this manager keeps no history")
        wanted = request.args.get(b"balancer")
        balancerName = None
        if wanted is not None:
            try:
                balancerName = wanted[0].decode("utf-8")
            except UnicodeDecodeError:
                raise ChangeError(400, "names must be UTF-8")
            model.find(self.root.balancers, balancerName)
        answer = history.asJSON(balancerName)
        answer["time"] = self.root.clock.seconds()
        cluster = getattr(self.root, "cluster", None)
        answer["node"] = cluster.node if cluster is not None else None
        return jsonResponse(request, 200, answer)

    def _rolling(self, request, rest):
        """
        C{GET api/rolling}: the rolling restarts known (see
        L{playbalancer.manager.restarts}); C{POST api/rolling/B}: start
        one that the manager runs, with the command of B's config (see
        L{playbalancer.manager.rollout}); C{POST api/rolling/B/report}: a
        step of one, from C{playbalancer rolling-restart}.
        """
        restarts = self.root.restarts
        rollouts = self.root.rollouts
        if rest == []:
            if request.method not in (b"GET", b"HEAD"):
                request.setHeader(b"allow", b"GET, HEAD")
                raise ChangeError(405, "rolling restarts are read with GET")
            return jsonResponse(request, 200, self.root.rollingStatus())
        if not (len(rest) == 1 or (len(rest) == 2 and rest[1] == b"report")):
            raise ChangeError(404, "not found")
        if request.method != b"POST":
            request.setHeader(b"allow", b"POST")
            raise ChangeError(405, "rolling restarts are started, and reports sent, with POST")
        if not sameOrigin(request):
            raise ChangeError(403, "cross-site requests are refused")
        try:
            balancerName = rest[0].decode("utf-8")
        except UnicodeDecodeError:
            raise ChangeError(400, "names must be UTF-8")
        model.find(self.root.balancers, balancerName)
        body = readJSON(request)  # (a JSON body: no HTML form can send one)
        who = self.root.who(request)
        if len(rest) == 2:
            return jsonResponse(request, 200, restarts.report(balancerName, body, who).asJSON())
        if body != {}:
            raise ChangeError(400, "a rolling restart is started with an empty JSON object: "
                                   "its command is the config file's")
        if rollouts is None:
            raise ChangeError(404, "this manager cannot run rolling restarts")
        return jsonResponse(request, 202, rollouts.start(balancerName, who).asJSON())

    def _reload(self, request):
        """
        C{POST api/reload}: read the config file again and apply it (see
        L{playbalancer.reload}); 200 with what changed once applied (by
        every worker process), or 400 with why nothing did.
        """
        return self._lifecycle(request, "reload", "reloader", lambda r: r.reload, 400)

    def _upgrade(self, request):
        """
        C{POST api/upgrade}: hand over to a new process (see
        L{playbalancer.upgrade}); answered once it serves (200, with its
        PID) or failed (500, with why; this process serves on).
        """
        return self._lifecycle(request, "upgrade", "upgrader", lambda u: u.upgrade, 500)

    def _lifecycle(self, request, verb, attribute, action, failedCode):
        """
        A C{POST} that changes the running balancer as a whole: C{action}
        of the root's C{attribute} is called with who asked, and its
        result (C{ok}, C{asJSON()}) answered with 200 or C{failedCode}.
        """
        if request.method != b"POST":
            request.setHeader(b"allow", b"POST")
            raise ChangeError(405, f"{verb} with POST")
        if not sameOrigin(request):
            raise ChangeError(403, "cross-site requests are refused")
        readJSON(request)  # (a JSON body: no HTML form can send one)
        target = getattr(self.root, attribute, None)
        if target is None:
            raise ChangeError(404, f"this balancer cannot {verb}")

        def answer(result):
            if not request.finished and not getattr(request, "_disconnected", False):
                code = 200 if result.ok else failedCode
                request.write(jsonResponse(request, code, result.asJSON()))
                request.finish()

        action(target)(self.root.who(request)).addCallback(answer)
        return NOT_DONE_YET

    def _member(self, request, balancerName, memberName):
        method = request.method
        balancers = self.root.balancers
        if method in (b"GET", b"HEAD"):
            balancer, member = model.find(balancers, balancerName, memberName, removing=True)
            return self._answer(request, 200, balancer, member)
        if method not in (b"POST", b"PUT", b"DELETE"):
            request.setHeader(b"allow", b"GET, HEAD, POST, PUT, DELETE")
            raise ChangeError(405, "use GET, POST, PUT or DELETE")
        if not sameOrigin(request):
            raise ChangeError(403, "cross-site requests are refused")
        who = self.root.who(request)
        cluster = getattr(self.root, "cluster", None)
        if cluster is not None:
            return self._clusterChange(request, cluster, balancerName, memberName, who)
        if method == b"DELETE":
            balancer, member = model.find(balancers, balancerName, memberName, removing=True)
            if not member.removing:
                if not _forced(request):
                    model.guardLastUsable(balancer, member, removing=True)
                balancer.removeMember(member, who)
            return self._answer(request, 200, balancer, member)
        body = readJSON(request)
        if method == b"PUT":
            balancer, _ = model.find(balancers, balancerName)
            member = model.addMember(balancer, memberName, body, who)
            return self._answer(request, 201, balancer, member)
        return self._answerLater(request, self.changeMember(balancerName, memberName, body, who))

    def _clusterChange(self, request, cluster, balancerName, memberName, who):
        method = request.method
        body = readJSON(request) if method != b"DELETE" else {}
        if method == b"DELETE" and _forced(request):
            body["force"] = True
        return self._answerLater(
            request, self._clusterWrite(method, body, cluster, balancerName, memberName, who)
        )

    def _answerLater(self, request, answered):
        """
        Answer C{request} with the C{(code, answer)} C{answered} fires with.
        """

        def respond(result):
            code, answer = result
            if not request.finished and not getattr(request, "_disconnected", False):
                request.write(jsonResponse(request, code, answer))
                request.finish()

        if answered.called:
            result = []
            answered.addCallback(result.append)
            if result:
                code, answer = result[0]
                return jsonResponse(request, code, answer)
        answered.addCallback(respond)
        answered.addErrback(lambda f: (request.processingFailed(f), None)[1])
        return NOT_DONE_YET

    def _clusterWrite(self, method, body, cluster, balancerName, memberName, who):
        """
        In cluster mode a change goes to the store, for every node: a
        L{Deferred} firing with C{(code, answer)} once this node applied
        it, with its revision.
        """
        balancers = self.root.balancers
        forceLocal = isinstance(body, dict) and body.pop("force_local", False) is True
        if method == b"DELETE":
            balancer, member = model.find(balancers, balancerName, memberName, removing=True)
            if not member.removing and body.get("force") is not True:
                model.guardLastUsable(balancer, member, removing=True)
            fields = {"removed": True}
        elif method == b"PUT":
            balancer, _ = model.find(balancers, balancerName)
            member = model.addMember(balancer, memberName, body, who, apply=False)
            fields = {
                "url": member.url,
                "standby": member.standby,
                "weight": member.configuredWeight,
                "admin": "enabled",
                "removed": False,
            }
        else:
            balancer, member = model.find(balancers, balancerName, memberName)
            checked = model.checkChange(member, body)
            if not checked.pop("force"):
                model.guardLastUsable(balancer, member, checked["admin"], checked["weight"])
            if checked.pop("reset"):
                balancer.reset(member, who)  # passive failures are this node's own
            fields = checked
            if fields.get("admin") == "drain" and member.admin != "drain":
                # One start for the whole tier (a sticky balancer's bound).
                fields["drain_since"] = balancer.seconds()
        if forceLocal:
            if not cluster.degraded:
                raise ChangeError(409, "force_local is only for when the store is degraded")
            if method == b"DELETE":
                balancer.removeMember(member, who)
            elif method == b"PUT":
                balancer.addMember(member, who)
            else:
                model.applyChange(balancer, member, body, who)
            return succeed((200, self._answerJSON(balancer, member)))
        if cluster.degraded:
            raise ChangeError(503, f"the cluster store is degraded ({cluster.reason}); "
                                   "send \"force_local\": true to change this node only")

        def written(revision):
            current = balancer.member(memberName) or member
            taking = current in balancer.candidates()
            answer = model.balancerMemberStatus(balancer, current, balancer.seconds(), taking)
            answer["revision"] = revision
            answer["tier"] = cluster.tierState(balancerName, memberName)
            return (201 if method == b"PUT" else 200, answer)

        def failed(failure):
            failure.trap(StoreError)
            return (503, {"error": str(failure.value)})

        d = ensureDeferred(cluster.write(balancerName, memberName, fields, who))
        d.addCallbacks(written, failed)
        return d

    def _tier(self):
        """
        What spreads this balancer's traffic over several processes: the
        cluster node, or the worker supervisor (its C{tierState} says what
        a drain waits for, once it has sent any pending change), or
        L{None}; right after an upgrade, with the old process counted.
        """
        tier = getattr(self.root, "cluster", None) or getattr(self.root, "workers", None)
        predecessor = getattr(self.root, "predecessor", None)
        if predecessor is not None and predecessor.running():
            # Right after an upgrade: the old process's requests count too.
            tier = predecessor.tier(tier, self.root.balancers)
        sync = getattr(tier, "sync", None)
        if sync is not None:
            sync()
        return tier

    def _answer(self, request, code, balancer, member):
        return jsonResponse(request, code, self._answerJSON(balancer, member))

    def _answerJSON(self, balancer, member):
        taking = member in balancer.candidates()
        answer = model.balancerMemberStatus(balancer, member, balancer.seconds(), taking)
        tier = self._tier()
        if tier is not None:
            answer["tier"] = tier.tierState(balancer.name, member.name)
        return answer
