"""
C{playbalancer init}: write the commented starter configuration.
"""

from __future__ import annotations

from playbalancer.ctl.client import CommandError
from playbalancer.starter import addPortOptions, portsFromOptions, starterConfig, writeStarter


def addInitParser(commands, out):
    """
    Add the C{init} command to the C{commands} sub-parsers.
    """
    init = commands.add_parser(
        "init",
        help="write a commented starter configuration file",
        description="Write the commented starter configuration (two app instances, the "
        "second a hot standby, a balancer and its manager, all on 127.0.0.1) to PATH; "
        "an existing file is left as it is unless --force.",
        out=out,
    )
    init.add_argument("path", nargs="?", default="playbalancer.toml", metavar="PATH",
                      help="where to write it (default playbalancer.toml; - for standard output)")
    init.add_argument("--force", action="store_true", help="replace PATH if it exists")
    addPortOptions(init)
    init.set_defaults(run=None)


def writeInit(options, out):
    """
    C{playbalancer init}: the starter config to C{options.path}, or to
    C{out} for C{-}.
    """
    try:
        ports = portsFromOptions(options)
        if options.path == "-":
            out.write(starterConfig(ports))
            return
        writeStarter(options.path, ports, force=options.force)
    except ValueError as e:
        raise CommandError(f"init: {e}")
    except FileExistsError:
        raise CommandError(f"init: {options.path} exists; --force replaces it")
    except IsADirectoryError:
        raise CommandError(f"init: {options.path} is a directory")
    except OSError as e:
        raise CommandError(f"init: cannot write {options.path}: {e.strerror}")
    out.write(
        f"wrote {options.path}: balancer on 127.0.0.1:{ports.listen}, manager on "
        f"127.0.0.1:{ports.manager}, members 127.0.0.1:{ports.app1} and "
        f"127.0.0.1:{ports.app2} (standby)\n"
        f"check it: playbalancer check {options.path}\n"
        f"run it:   twistd -n playbalancer --config {options.path}\n"
        f"change it: playbalancer --manager http://127.0.0.1:{ports.manager} status\n"
    )
