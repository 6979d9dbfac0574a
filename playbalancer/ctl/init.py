"""
C{playbalancer init}: write the commented starter configuration.
"""

from __future__ import annotations

from playbalancer.ctl.client import CommandError
from playbalancer.starter import portsFromOptions, starterConfig, writeStarter


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
