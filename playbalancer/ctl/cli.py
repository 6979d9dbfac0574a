"""
C{playbalancer}: the control command, a client of the manager's JSON API.

    playbalancer status
    playbalancer drain web/app1 --wait --timeout 120
    playbalancer add web/app3 http://127.0.0.1:9003 --weight 2

It exits 0 when the command worked and 1 otherwise, with one line on
standard error.
"""

from __future__ import annotations

import argparse
import os
import sys

from hyperlink import URL, URLParseError

from playbalancer._version import versionLine
from playbalancer.ctl.client import CommandError, ManagerClient, waitDrained
from playbalancer.ctl.client import (  # noqa: F401 (playbalancer.cli, this module now, had them)
    POLL_INTERVAL,
    REQUEST_TIMEOUT,
    ManagerError,
    decodeAnswer,
    findMember,
    networkReason,
    remaining,
)
from playbalancer.ctl.init import addInitParser, writeInit
from playbalancer.ctl.show import (  # noqa: F401 (this module had them)
    adminText,
    dumpJSON,
    formatBalancer,
    formatStatus,
    formatTable,
    health,
    latency,
    memberLine,
    removedLine,
)
from playbalancer.tokens import readTokenFile

__all__ = [
    "DEFAULT_MANAGER",
    "MANAGER_ENV",
    "TOKEN_FILE_ENV",
    "DEFAULT_DRAIN_TIMEOUT",
    "ADMIN_COMMANDS",
    "dumpJSON",
    "health",
    "latency",
    "adminText",
    "formatTable",
    "formatBalancer",
    "formatStatus",
    "memberLine",
    "removedLine",
    "showStatus",
    "setAdmin",
    "setStandby",
    "setWeight",
    "resetMember",
    "addMember",
    "removeMember",
    "target",
    "weight",
    "seconds",
    "makeParser",
    "readToken",
    "checkManagerURL",
    "tokenWarnings",
    "parseArguments",
    "run",
    "main",
]

DEFAULT_MANAGER = "http://127.0.0.1:8081"
MANAGER_ENV = "PLAYBALANCER_MANAGER"
TOKEN_FILE_ENV = "PLAYBALANCER_TOKEN_FILE"

#: Seconds C{drain --wait} waits by default; C{--timeout 0} waits forever.
DEFAULT_DRAIN_TIMEOUT = 300.0

#: The command that sets each admin state.
ADMIN_COMMANDS = {"enable": "enabled", "drain": "drain", "disable": "disabled"}


# Commands: each takes (client, options, out, reactor).


async def showStatus(client, options, out, reactor):
    status = await client.status()
    out.write(dumpJSON(status) if options.json else formatStatus(status))


async def _changeMember(client, options, out, **fields):
    balancer, name = options.target
    if getattr(options, "force", False):
        fields["force"] = True
    member = await client.change(balancer, name, **fields)
    if not options.json:
        out.write(memberLine(balancer, name, member))
    return member


async def setAdmin(client, options, out, reactor):
    """
    C{enable}, C{drain} (optionally C{--wait}) and C{disable}.
    """
    member = await _changeMember(client, options, out, admin=ADMIN_COMMANDS[options.command])
    if getattr(options, "wait", False):
        balancer, name = options.target
        progress = None if options.json else out
        member = await waitDrained(
            client, reactor, balancer, name, member, options.timeout, progress
        )
    if options.json:
        out.write(dumpJSON(member))


async def setStandby(client, options, out, reactor):
    member = await _changeMember(client, options, out, standby=options.state == "on")
    if options.json:
        out.write(dumpJSON(member))


async def setWeight(client, options, out, reactor):
    member = await _changeMember(client, options, out, weight=options.weight)
    if options.json:
        out.write(dumpJSON(member))


async def resetMember(client, options, out, reactor):
    member = await _changeMember(client, options, out, reset=True)
    if options.json:
        out.write(dumpJSON(member))


async def addMember(client, options, out, reactor):
    balancer, name = options.target
    standby = True if options.standby else None
    member = await client.add(balancer, name, options.url, standby, options.weight)
    out.write(dumpJSON(member) if options.json else memberLine(balancer, name, member))


async def removeMember(client, options, out, reactor):
    balancer, name = options.target
    member = await client.remove(balancer, name, options.force)
    out.write(dumpJSON(member) if options.json else removedLine(balancer, name, member))


async def reloadConfig(client, options, out, reactor):
    result = await client.reload()
    if options.json:
        out.write(dumpJSON(result))
    else:
        out.write(f"reloaded: version {result.get('version')}: {result.get('changes')}\n")


async def upgradeProcess(client, options, out, reactor):
    result = await client.upgrade()
    if options.json:
        out.write(dumpJSON(result))
    else:
        out.write(
            f"upgraded: the new process (PID {result.get('pid')}) serves; the old one "
            f"(PID {result.get('old')}) exits once its requests in flight finish\n"
        )


# Arguments


class _Parser(argparse.ArgumentParser):
    """
    An argument parser that raises L{CommandError} instead of exiting, and
    writes help to C{out}.
    """

    def __init__(self, *args, out=None, **kwargs):
        argparse.ArgumentParser.__init__(self, *args, **kwargs)
        self.out = out

    def _print_message(self, message, file=None):
        if message:
            (self.out or file or sys.stderr).write(message)

    def error(self, message):
        raise CommandError(f"{message} (see {self.prog} --help)")


def target(value):
    """
    C{BALANCER/MEMBER} as a pair of names.
    """
    balancer, slash, member = value.partition("/")
    if not slash or not balancer or not member or "/" in member:
        raise argparse.ArgumentTypeError(f"expected BALANCER/MEMBER, e.g. web/app1, got {value!r}")
    return balancer, member


def weight(value):
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got {value!r}")
    return number


def seconds(value):
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds, 0 or more, got {value!r}")
    return number


def _addGlobalOptions(parser, suppress):
    """
    The options every command takes, before or after its name; below the
    top level they default to nothing so they do not hide the top's.
    """
    unset = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--manager",
        metavar="URL",
        default=unset,
        help=f"the manager's URL (default: ${MANAGER_ENV}, else {DEFAULT_MANAGER})",
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        default=unset,
        help=f"a file holding the manager's token (default: ${TOKEN_FILE_ENV})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="print the manager's JSON answer",
    )


def makeParser(out=None):
    parser = _Parser(
        prog="playbalancer",
        description="Look at and change a running playbalancer through its manager.",
        out=out,
    )
    _addGlobalOptions(parser, suppress=False)
    parser.add_argument("--version", action="version", version=versionLine("playbalancer"))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, run, text, targeted=True):
        sub = commands.add_parser(name, help=text, description=text, out=out)
        _addGlobalOptions(sub, suppress=True)
        if targeted:
            sub.add_argument("target", metavar="BALANCER/MEMBER", type=target)
        sub.set_defaults(run=run)
        return sub

    command("status", showStatus, "show every balancer and member", targeted=False)
    command("enable", setAdmin, "let a member take new requests")
    drain = command("drain", setAdmin, "send a member no new requests, let the active ones end")
    drain.add_argument(
        "--wait", action="store_true", help="wait until the member has no active request"
    )
    drain.add_argument(
        "--timeout",
        type=seconds,
        metavar="S",
        help=f"give up waiting after S seconds (default {DEFAULT_DRAIN_TIMEOUT:g}; 0: never)",
    )
    disable = command("disable", setAdmin, "send a member no request at all")
    weigh = command("weight", setWeight, "set a member's weight")
    weigh.add_argument("weight", type=weight, metavar="N")
    remove = command("remove", removeMember, "remove a member once its active requests end")
    for sub in (drain, disable, weigh, remove):
        sub.add_argument(
            "--force",
            action="store_true",
            help="even if it is the last usable member of its balancer (every new request "
            "then gets 503)",
        )
    standby = command("standby", setStandby, "make a member a hot standby, or not")
    standby.add_argument("state", choices=("on", "off"), metavar="on|off")
    command("reset", resetMember, "mark a failed member up now, without waiting for its retry")
    add = command("add", addMember, "add a member")
    add.add_argument("url", metavar="URL", help="the member's URL, e.g. http://10.0.0.5:8080")
    add.add_argument("--standby", action="store_true", help="add it as a hot standby")
    add.add_argument("--weight", type=weight, metavar="N", help="its weight (default 1)")
    command(
        "reload",
        reloadConfig,
        "read the balancer's config file again and apply it, as kill -HUP does; "
        "a config that cannot be applied changes nothing (exit status 1, with why)",
        targeted=False,
    )
    command(
        "upgrade",
        upgradeProcess,
        "start a new balancer process (new code and interpreter, same command line) on "
        "the same listening sockets, as kill -USR2 does; the old one finishes its requests "
        "and exits; a new process that fails leaves the old one serving (exit status 1)",
        targeted=False,
    )
    rolling = command(
        "rolling-restart",
        _rollingRestart,
        "restart every member in turn: drain, wait, run a command, wait for health, enable",
        targeted=False,
    )
    rolling.add_argument("balancer", metavar="BALANCER")
    rolling.add_argument(
        "--exec",
        required=True,
        metavar="COMMAND",
        help="shell command that restarts one member; it gets PLAYBALANCER_BALANCER, "
        "PLAYBALANCER_MEMBER and PLAYBALANCER_URL",
    )
    rolling.add_argument(
        "--timeout",
        type=seconds,
        metavar="S",
        default=DEFAULT_DRAIN_TIMEOUT,
        help=f"longest wait for a drain, and for health checks (default {DEFAULT_DRAIN_TIMEOUT:g})",
    )
    rolling.add_argument("--members", metavar="a,b", help="only these members (standbys still last)")
    check = commands.add_parser(
        "check",
        help="check a configuration file as start-up does, and print what it would run",
        description="Check a configuration file as start-up does (nothing is bound or "
        "started), and print what it would run; exit status 1 with the first problem.",
        out=out,
    )
    check.add_argument("config", metavar="CONFIG", help="the TOML configuration file")
    check.set_defaults(run=None)
    addInitParser(commands, out)
    return parser


#: Commands that do not talk to a manager.
OFFLINE_COMMANDS = ("check", "init")


async def _rollingRestart(client, options, out, reactor):
    from playbalancer.ctl.rolling import rollingRestart

    await rollingRestart(client, options, out, reactor)


def readToken(path):
    """
    The token in the file at C{path}, stripped; never empty.
    """
    try:
        return readTokenFile(path)
    except ValueError as e:
        raise CommandError(f"--token-file: {e}")


def checkManagerURL(value):
    try:
        url = URL.from_text(value)
    except URLParseError:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise CommandError(f"--manager: expected an http:// or https:// URL, got {value!r}")
    try:
        value.encode("ascii")
    except UnicodeEncodeError:
        raise CommandError(f"--manager: expected an ASCII URL, got {value!r}")
    return value


def tokenWarnings(managerURL, tokenFile):
    """
    What to tell the user before sending the token: it goes in clear to a
    manager that is not on this machine, or its file is readable by others.
    """
    from playbalancer.tokens import exposure

    warnings = []
    url = URL.from_text(managerURL)
    if url.scheme == "http" and not _isLoopback(url.host):
        warnings.append(
            f"the token is sent in clear over http:// to {url.host}; use https:// "
            "or reach the manager over a loopback address or an SSH tunnel"
        )
    problem = exposure(tokenFile)
    if problem is not None:
        warnings.append(f"--token-file: {problem}")
    return warnings


def _isLoopback(host):
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parseArguments(argv, environ, out=None):
    """
    The options of the command line C{argv}, with the manager URL and token
    resolved; L{CommandError} when they make no sense.
    """
    options = makeParser(out).parse_args(argv)
    if options.command in OFFLINE_COMMANDS:
        return options  # (no manager, no token)
    if options.command == "drain" and options.timeout is not None and not options.wait:
        raise CommandError("--timeout goes with --wait (see playbalancer drain --help)")
    if getattr(options, "wait", False) and options.timeout is None:
        options.timeout = DEFAULT_DRAIN_TIMEOUT
    options.manager = checkManagerURL(
        options.manager or environ.get(MANAGER_ENV) or DEFAULT_MANAGER
    )
    tokenFile = options.token_file or environ.get(TOKEN_FILE_ENV)
    options.token = readToken(tokenFile) if tokenFile else None
    options.warnings = tokenWarnings(options.manager, tokenFile) if tokenFile else []
    return options


async def run(reactor, argv, stdout=None, stderr=None, environ=None, http=None):
    """
    Run the command line C{argv} (without the program name); its exit
    status.

    @param http: a treq C{HTTPClient}; by default one of its own.
    """
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    environ = os.environ if environ is None else environ
    pool = None
    try:
        try:
            options = parseArguments(argv, environ, stdout)
        except SystemExit as e:  # --help
            return e.code or 0
        if options.command == "check":
            from playbalancer.ctl.check import checkConfig

            checkConfig(options.config, reactor, stdout)
            return 0
        if options.command == "init":
            writeInit(options, stdout)
            return 0
        if http is None:
            from treq.client import HTTPClient
            from twisted.web.client import Agent, HTTPConnectionPool

            pool = HTTPConnectionPool(reactor)
            http = HTTPClient(Agent(reactor, pool=pool))
        for warning in options.warnings:
            stderr.write(f"playbalancer: warning: {warning}\n")
        client = ManagerClient(http, options.manager, options.token, reactor)
        await options.run(client, options, stdout, reactor)
    except CommandError as e:
        stderr.write(f"playbalancer: {e}\n")
        return 1
    finally:
        if pool is not None:
            await pool.closeCachedConnections()
    return 0


def main(argv=None):
    """
    The C{playbalancer} console script.
    """
    from twisted.internet.task import react

    argv = sys.argv[1:] if argv is None else argv
    finished = []

    async def command(reactor):
        try:
            code = await run(reactor, argv)
        except Exception as e:
            sys.stderr.write(f"playbalancer: unexpected error: {type(e).__name__}: {e}\n")
            code = 1
        finished.append(code)
        raise SystemExit(code)

    try:
        react(command)
    except SystemExit:
        if not finished:
            sys.stderr.write("playbalancer: interrupted\n")
            raise SystemExit(130)
        raise


if __name__ == "__main__":
    # Run the importable module's main, so that there is one CommandError
    # class for this module and the ones that import it (rolling.py).
    from playbalancer.ctl.cli import main as _main

    _main()
