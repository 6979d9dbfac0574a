"""
C{twistd playbalancer}: command-line options and the service that wires
configuration, balancers, schedulers and listeners together.
"""

from __future__ import annotations

import os
import sys

from twisted.application.service import MultiService, Service
from twisted.logger import Logger
from twisted.python import usage

from playbalancer.assembly import (  # noqa: F401 (their old home)
    buildBalancer,
    buildBalancers,
    buildPools,
    makeHealthChecker,
    makeProxy,
    memberTLS,
)
from playbalancer.assembly import frontSettingsOf as frontSettings  # noqa: F401 (its old name)
from playbalancer.running import Running, listenerName
from playbalancer.config import ConfigError, configFromArguments, loadConfig, parseConfig
from playbalancer.schedulers import availableSchedulers
from playbalancer.tokens import readTokenFile


_log = Logger()


class Options(usage.Options):
    synopsis = (
        "[--config FILE] | [--listen ENDPOINT --member URL [--member URL ...] "
        "[--standby URL ...] [--scheduler NAME] [--retry SECONDS]]"
    )
    longdesc = (
        "Run the playbalancer load balancer, from a TOML file or, for a quick "
        "start, from the command line."
    )
    optParameters = [
        ["config", "c", None, "TOML configuration file."],
        ["listen", "l", "tcp:8080", "Listen on this Twisted endpoint (without --config)."],
        ["scheduler", "s", "round-robin", "Scheduler name (without --config)."],
        ["retry", None, "60", "Seconds a failed member rests (without --config)."],
        ["workers", "w", None, "Worker processes serving the listeners (overrides workers =)."],
        [
            "manager",
            None,
            None,
            "Serve the manager on this endpoint (without --config), "
            "e.g. tcp:8081:interface=127.0.0.1.",
        ],
    ]

    def __init__(self):
        usage.Options.__init__(self)
        self["members"] = []
        self["standbys"] = []
        #: C{(url, standby)} in the order given, for the members' names.
        self["entries"] = []

    def opt_member(self, url):
        """
        A member URL, e.g. http://127.0.0.1:9999 (repeatable).
        """
        self["members"].append(url)
        self["entries"].append((url, False))

    opt_m = opt_member

    def opt_version(self):
        """
        Print playbalancer's version (and Twisted's and Python's) and exit.
        """
        from playbalancer._version import versionLine

        print(versionLine("twistd playbalancer"))
        sys.exit(0)

    def opt_standby(self, url):
        """
        A hot-standby member URL, used only while no other is usable (repeatable).
        """
        self["standbys"].append(url)
        self["entries"].append((url, True))

    def _workers(self):
        return _workersOption(self["workers"])

    def postOptionsPaths(self):
        """
        Where this process started, and its config file's path from there:
        twistd's C{--rundir} changes the directory before a reload reads
        the file again, and an upgrade's new process starts here.
        """
        self.startDirectory = os.getcwd()
        if self["config"]:
            self["config"] = os.path.abspath(self["config"])

    def readConfigFile(self, schedulers):
        """
        The config in the C{--config} file, with C{--workers} applied.

        @raise ConfigError: when it does not check out.
        """
        config = loadConfig(self["config"], schedulers)
        if self["workers"] is not None:
            config.raw = dict(config.raw, workers=self._workers())
            config = parseConfig(config.raw, schedulers)
        return config

    def loader(self):
        """
        What a reload reads the config with: C{() -> (config, schedulers)},
        or L{None} without a C{--config} file.
        """
        if not self["config"]:
            return None

        def load():
            schedulers = availableSchedulers()
            return self.readConfigFile(schedulers), schedulers

        return load

    def postOptions(self):
        schedulers = availableSchedulers()
        self.postOptionsPaths()
        try:
            if self["config"]:
                if self["members"] or self["standbys"] or self["manager"]:
                    raise usage.UsageError(
                        "use either --config or --member/--standby/--manager, not both"
                    )
                self.config = self.readConfigFile(schedulers)
            else:
                if not self["members"] and not self["standbys"]:
                    raise usage.UsageError("give --config FILE, or at least one --member URL")
                try:
                    retry = float(self["retry"])
                except ValueError:
                    raise usage.UsageError(f"--retry: expected seconds, got {self['retry']!r}")
                self.config = configFromArguments(
                    self["listen"],
                    self["members"],
                    self["standbys"],
                    self["scheduler"],
                    retry,
                    schedulers,
                    manager=self["manager"],
                    workers=self._workers() if self["workers"] is not None else 1,
                    entries=self["entries"],
                )
        except ConfigError as e:
            # One clear line and a non-zero exit, never a traceback (and
            # the old process of an upgrade is told why).
            from playbalancer.handover import reportFailure

            reportFailure(f"playbalancer: {e}")
            raise SystemExit(f"playbalancer: {e}")
        self.schedulers = schedulers


def _workersOption(value):
    try:
        return int(value)
    except ValueError:
        raise usage.UsageError(f"--workers: expected a number, got {value!r}")


def _fail(message):
    """
    Stop start-up with one clear line and a non-zero exit.
    """
    raise SystemExit(f"playbalancer: {message}")


def readToken(path):
    """
    The token in the file at C{path}, stripped; never empty.
    """
    from playbalancer.tokens import exposure

    try:
        token = readTokenFile(path)
    except ValueError as e:
        _fail(f"manager.token_file: {e}")
    problem = exposure(path)
    if problem is not None:
        _log.warn("manager.token_file: {problem}", problem=problem)
    return token


def makeManager(config, balancers, reactor, listeners=()):
    """
    The manager resource and its optional state keeper, or C{(None, None)}
    when the config has no C{[manager]}.

    @param listeners: the C{[(name, factory)]} of the front listeners, for
        the metrics (filled in later is fine).
    """
    if config.manager is None:
        return None, None
    from playbalancer.manager import ManagerRoot
    from playbalancer.manager.rollout import Rollouts
    from playbalancer.observe.metrics import MetricsPage, registryFor
    from playbalancer.manager.guard import AccessPolicy
    from playbalancer.statefile import StateFileError, StateKeeper

    settings = config.manager
    token = readToken(settings.tokenFile) if settings.tokenFile else None
    keeper = None
    if settings.stateFile:
        keeper = StateKeeper(settings.stateFile, balancers)
        try:
            keeper.load()
        except StateFileError as e:
            _fail(str(e))
        keeper.watch()
    policy = AccessPolicy(settings.allow, token, reactor, hosts=settings.allowedHosts)
    metrics = MetricsPage(registryFor(balancers, listeners))
    root = ManagerRoot(balancers, policy, reactor, metrics=metrics)
    root.listeners = listeners
    root.rollouts = Rollouts(root, reactor)
    return root, keeper


def makeClusterNode(settings, balancers, reactor):
    """
    The L{playbalancer.cluster.node.ClusterNode} of a C{[cluster]} table.
    """
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    from playbalancer.cluster.access import storeAccess
    from playbalancer.cluster.etcd import EtcdStore
    from playbalancer.cluster.node import ClusterNode

    try:
        tls, credentials = storeAccess(settings)
    except ValueError as e:  # a file changed since the config was read
        _fail(str(e))
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 4
    agent = Agent(reactor, contextFactory=tls, pool=pool)
    store = EtcdStore(settings.endpoints, HTTPClient(agent), reactor, pool=pool, credentials=credentials)
    return ClusterNode(
        store,
        balancers,
        settings.tier,
        settings.node,
        reactor,
        cachePath=settings.cacheFile,
        leaseTTL=settings.leaseTTL,
        startupTimeout=settings.startupTimeout,
    )


class _HeapSettler(Service):
    """
    Calls C{settle} when started (see L{playbalancer.memory.settleHeap});
    runs C{trimmer} (a L{playbalancer.memory.HeapTrimmer}), if any, while
    running.
    """

    def __init__(self, settle, trimmer=None):
        self.settle = settle
        self.trimmer = trimmer

    def startService(self):
        Service.startService(self)
        self.settle()
        if self.trimmer is not None:
            self.trimmer.start()

    def stopService(self):
        Service.stopService(self)
        if self.trimmer is not None:
            self.trimmer.stop()


def makeService(options, reactor=None):
    """
    The running balancer: one listening service per C{[[listen]]} (or the
    worker processes that serve them), the health checks and the manager.

    Started by an upgrade (L{playbalancer.handover}), it listens on the
    sockets handed over and tells the old process how its start went.
    """
    from playbalancer.handover import Handover

    _oneLineListenErrors()
    handover = Handover.fromEnvironment()
    try:
        return _makeService(options, reactor, handover)
    except SystemExit as e:
        handover.say(f"failed {str(e).replace('playbalancer: ', '', 1)}")
        raise


def _oneLineListenErrors():
    """
    A listener that cannot listen stops twistd with one line on standard
    error (L{playbalancer.site.CannotServe}), not a traceback.
    """
    import sys

    from playbalancer.site import CannotServe

    previous = sys.excepthook
    if getattr(previous, "playbalancer", False):
        return

    def hook(kind, value, tb):
        if isinstance(value, CannotServe):
            sys.__stderr__.write(f"playbalancer: {value}\n")
        else:
            previous(kind, value, tb)

    hook.playbalancer = True
    sys.excepthook = hook


def _makeService(options, reactor, handover):
    if reactor is None:
        from twisted.internet import reactor

    from playbalancer.memory import nurseryAdvice, settleHeap, tuneAllocator

    tuneAllocator()
    advice = nurseryAdvice()
    if advice is not None:
        _log.warn(advice)
    config = options.config
    top = MultiService()
    listeners = []
    try:
        running = Running(config, options.schedulers, reactor, top, listeners)
    except ConfigError as e:
        _fail(str(e))
    running.handover = handover
    balancers = running.balancers
    manager, keeper = makeManager(config, balancers, reactor, listeners)
    running.manager = manager
    if manager is not None:
        from playbalancer.manager.history import History

        manager.history = History(balancers, reactor)
        manager.history.setServiceParent(top)
        # Their certificates on the page, in /api/status and the metrics.
        manager.listenerConfigs = manager.pages[b"metrics"].registry.collector.listenerConfigs = (
            lambda: running.config.listeners
        )
    handed = handover.state()
    if handed is not None:
        from playbalancer.lifecycle import applyHandedState

        applyHandedState(handed, balancers, reactor, config)
    fronts = top
    node = None
    if config.cluster is not None:
        from playbalancer.cluster.node import AfterReady

        node = makeClusterNode(config.cluster, balancers, reactor)
        node.setServiceParent(top)
        if manager is not None:
            manager.cluster = node
            manager.pages[b"metrics"].registry.collector.cluster = node
        # Traffic only once the tier's state is applied.
        fronts = AfterReady(node.ready)
        fronts.setServiceParent(top)

    supervisor = None
    if config.workers > 1:
        from playbalancer.reconfigure import checkAccessLogs
        from playbalancer.workers import WorkerSupervisor
        from playbalancer.workers.supervisor import CannotListen

        try:
            checkAccessLogs(config)
        except ConfigError as e:
            _fail(str(e))
        try:
            supervisor = WorkerSupervisor(
                config,
                balancers,
                reactor,
                listeners,
                [listenerName(listener.endpoint) for listener in config.listeners],
                handover=handover,
                manager=manager,
            )
        except CannotListen as e:
            _fail(f"listen[{e.index}].endpoint: {e}")
        except OSError as e:
            _fail(f"workers: cannot make the parent's sockets for manager routes: {e}")
        # (With a cluster node, workers start once the tier's state is in.)
        supervisor.setServiceParent(fronts)
        running.supervisor = supervisor
        if node is not None:
            node.workers = supervisor
        if manager is not None:
            # drain --wait waits for every worker (see tierState).
            manager.workers = supervisor
    else:
        try:
            running.serve(fronts)
        except ConfigError as e:
            _fail(str(e))
    if manager is not None:
        from playbalancer.manager.root import MetricsRoot, managerSite

        running.listenOther(config.manager.endpoint, managerSite(manager, manager.policy), top)
        if config.manager.metricsEndpoint:
            metrics = MetricsRoot(manager.policy, manager.pages[b"metrics"])
            metricsSite = managerSite(metrics, manager.policy)
            running.listenOther(config.manager.metricsEndpoint, metricsSite, top)
    _log.info(
        "configuration loaded: {listeners} listener(s), balancers {balancers}, {workers} worker(s)",
        listeners=len(config.listeners),
        balancers=", ".join(sorted(balancers)),
        workers=config.workers,
        playbalancer_event="config.loaded",
    )
    # Last, so that it runs once everything else has started.
    trimmer = None
    if supervisor is None:
        from playbalancer.memory import HeapTrimmer

        trimmer = HeapTrimmer(lambda: running.openConnections, reactor)
    _HeapSettler(settleHeap, trimmer).setServiceParent(top)
    from playbalancer.lifecycle import addLifecycle

    addLifecycle(top, running, options, reactor, keeper, node, supervisor)
    top.balancers = balancers
    #: [(name, front factory)] of the listeners this process serves.
    top.listeners = listeners
    top.manager = manager
    top.stateKeeper = keeper
    top.supervisor = supervisor
    top.cluster = node
    top.runtime = running
    return top
