"""
The commented starter configuration, shipped inside the package as
C{starter.toml} (in the repository, C{etc/playbalancer.toml} links to it):
the story's two app instances on ports 9999 and 9998, the second a hot
standby, the balancer on 8080 and the manager on 8081, all on 127.0.0.1.

C{playbalancer init} writes it, and C{playbalancer-demo} runs it, both with
other ports when asked.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from importlib import resources

from playbalancer.atomicfile import replaceFile


@dataclass(frozen=True)
class StarterPorts:
    """
    The ports of the starter config: the balancer's listener, the manager
    and the two app instances (the second the hot standby).
    """

    listen: int = 8080
    manager: int = 8081
    app1: int = 9999
    app2: int = 9998

    def check(self):
        """
        @raise ValueError: naming the option (C{--port}, C{--manager-port},
            C{--app-ports}) of the first port that is not 1..65535, or that
            is used twice.
        """
        seen = {}
        for field in ("listen", "manager", "app1", "app2"):
            port, option = getattr(self, field), OPTIONS[field]
            if not 1 <= port <= 65535:
                raise ValueError(f"{option}: expected ports 1..65535, got {port}")
            if port in seen:
                other = seen[port]
                where = "twice" if other == option else f"also given to {other}"
                raise ValueError(f"{option}: port {port} {where}")
            seen[port] = option


#: The command-line option that sets each of L{StarterPorts}.
OPTIONS = {"listen": "--port", "manager": "--manager-port", "app1": "--app-ports", "app2": "--app-ports"}

DEFAULT_PORTS = StarterPorts()


def _template():
    return resources.files("playbalancer").joinpath("starter.toml").read_text("utf-8")


def _replaceAll(text, old, new):
    """
    C{text} with every C{old} made C{new}; C{old} must occur, so that an
    edit of the template that drops it fails here rather than leaving a
    port unchanged.
    """
    if old not in text:
        raise ValueError(
            f"the starter config was edited ({old!r} is no longer in it): its ports cannot be changed"
        )
    return text.replace(old, new)


def starterConfig(ports=DEFAULT_PORTS):
    """
    The text of the starter config with C{ports} (a L{StarterPorts}),
    comments included.

    @raise ValueError: when C{ports} do not check out.
    """
    ports.check()
    text = _template()
    if ports == DEFAULT_PORTS:
        return text
    # Through placeholders, so that a port that is another's old number
    # is not replaced twice.
    swaps = [
        ("tcp:8080:", "tcp:%d:", ports.listen),
        ("tcp:8081:", "tcp:%d:", ports.manager),
        (":9999", ":%d", ports.app1),
        (":9998", ":%d", ports.app2),
    ]
    for index, (old, _, _) in enumerate(swaps):
        text = _replaceAll(text, old, f"\0{index}\0")
    for index, (_, new, port) in enumerate(swaps):
        text = text.replace(f"\0{index}\0", new % port)
    return text


def writeStarter(path, ports=DEFAULT_PORTS, force=False):
    """
    Write the starter config to C{path} (mode 0644), in one step: a reader
    sees the old file or the new one, and a symbolic link at C{path} is
    replaced, not written through.

    @param force: replace a file already there; without it, an existing
        file (or link) is left as it is.
    @raise FileExistsError: when C{path} exists and C{force} is false.
    @raise IsADirectoryError: when C{path} is a directory.
    @raise ValueError: when C{ports} do not check out.
    """
    text = starterConfig(ports)
    if os.path.isdir(path):
        raise IsADirectoryError(path)
    if os.path.lexists(path) and not force:
        raise FileExistsError(path)
    replaceFile(path, text.encode("utf-8"), prefix=".playbalancer-init-", mode=0o644)


def _appPorts(value):
    try:
        first, second = (int(part) for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two ports, as in 9999,9998; got {value!r}")
    return first, second


def addPortOptions(parser):
    """
    Give the argparse C{parser} the options for L{StarterPorts}; those not
    given are L{None}.
    """
    parser.add_argument("--port", type=int, metavar="N",
                        help=f"the balancer's port (default {DEFAULT_PORTS.listen})")
    parser.add_argument("--manager-port", type=int, metavar="N",
                        help=f"the manager's port (default {DEFAULT_PORTS.manager})")
    parser.add_argument(
        "--app-ports", type=_appPorts, metavar="A,B",
        help=f"the two app instances' ports, the second the hot standby "
        f"(default {DEFAULT_PORTS.app1},{DEFAULT_PORTS.app2})",
    )


def portsFromOptions(options):
    """
    The L{StarterPorts} that the options of L{addPortOptions} give, with
    the defaults for those not given.

    @raise ValueError: when they do not check out.
    """
    app1, app2 = options.app_ports or (DEFAULT_PORTS.app1, DEFAULT_PORTS.app2)
    ports = StarterPorts(
        DEFAULT_PORTS.listen if options.port is None else options.port,
        DEFAULT_PORTS.manager if options.manager_port is None else options.manager_port,
        app1,
        app2,
    )
    ports.check()
    return ports
