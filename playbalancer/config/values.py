"""
Checking configuration values: L{ConfigError}, which names the key path
of a problem; the reader of one TOML table; and the checks of single
values (names, counts, seconds, URLs, endpoints), each taking the value
and its key path.
"""

from __future__ import annotations

import json
import math
import re

from hyperlink import URL, URLParseError

__all__ = ["NAME", "ConfigError", "memberURL"]

NAME = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


class ConfigError(Exception):
    """
    A configuration problem at C{path}.
    """

    def __init__(self, path, message):
        Exception.__init__(self, path, message)
        self.path = path
        self.message = message

    def __str__(self):
        return f"{self.path}: {self.message}" if self.path else self.message


class _Table:
    """
    Reads the keys of one TOML table, remembering its path for errors and
    refusing keys nobody asked for.
    """

    def __init__(self, data, path):
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected a table, got {_show(data)}")
        self._data = dict(data)
        self.path = path

    def at(self, key):
        key = _key(key)
        return f"{self.path}.{key}" if self.path else key

    def get(self, key, kind, default=None, required=False):
        if key not in self._data:
            if required:
                raise ConfigError(self.at(key), "missing")
            return default
        value = self._data.pop(key)
        return kind(value, self.at(key))

    def done(self):
        for key in self._data:
            raise ConfigError(self.at(key), "unknown key")


def _key(key):
    """
    A TOML key as it would be written: quoted unless it is a bare key.
    """
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _show(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _string(value, path):
    if not isinstance(value, str):
        raise ConfigError(path, f"expected a string, got {_show(value)}")
    return value


def _name(value, path):
    _string(value, path)
    if not NAME.match(value):
        raise ConfigError(
            path, f"expected a name of 1-64 letters, digits, '.', '_' or '-', got {value!r}"
        )
    return value


def _bool(value, path):
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {_show(value)}")
    return value


def _count(value, path):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(path, f"expected a whole number >= 0, got {_show(value)}")
    return value


def _nonNegative(unit):
    """
    A check for a finite number >= 0 of C{unit}, given as a float.
    """

    def check(value, path):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise ConfigError(path, f"expected {unit} >= 0, got {_show(value)}")
        return float(value)

    return check


_seconds = _nonNegative("a number of seconds")
_rate = _nonNegative("bytes per second")


def _positiveSeconds(value, path):
    if _seconds(value, path) <= 0:
        raise ConfigError(path, f"expected a number of seconds > 0, got {_show(value)}")
    return float(value)


def _array(value, path):
    if not isinstance(value, list):
        raise ConfigError(path, f"expected an array of tables, got {_show(value)}")
    return value


#: The characters RFC 3986 allows in a URL's scheme, authority and path;
#: and a percent sign must start a %XX escape.
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/\[\]%?#]*\Z")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


#: A host name: labels of letters, digits, hyphens (and underscores, which
#: container names use), each 1-63 long, not starting or ending with a
#: hyphen.
_HOST_NAME = re.compile(
    r"(?=.{1,253}\.?\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?\Z"
)


def _isIPLiteral(host):
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def memberURL(value, path, mode="http"):
    """
    Check a member URL: C{http://} or C{https://}, a host, optionally a port
    and a path prefix; nothing else.  In TCP mode: C{tcp://host:port}.
    The one check for a member URL, wherever it comes from: the config,
    the API and the page's form, the state file.
    """
    _string(value, path)
    schemes = ("tcp",) if mode == "tcp" else ("http", "https")
    article = "a" if mode == "tcp" else "an"
    expected = f"expected {article} {schemes[0]}:// URL, got {value!r}"
    if not _URL_CHARACTERS.match(value) or _BAD_ESCAPE.search(value):
        # Spaces, CR and LF above all: they would end up in request lines.
        raise ConfigError(path, f"expected only URL characters (RFC 3986) in {value!r}")
    try:
        url = URL.from_text(value)
    except (URLParseError, ValueError):
        raise ConfigError(path, expected)
    if url.scheme not in schemes or not url.host or not url.absolute:
        raise ConfigError(path, expected)
    if not _isIPLiteral(url.host) and not _HOST_NAME.match(url.host):
        raise ConfigError(path, f"expected a host name or IP address in {value!r}")
    if mode == "tcp" and (url.port is None or any(url.path)):
        raise ConfigError(path, f"expected tcp://host:port, got {value!r}")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise ConfigError(path, f"expected a port from 1 to 65535 in {value!r}")
    if url.userinfo or url.query or url.fragment:
        raise ConfigError(path, f"expected no user, query or fragment in {value!r}")
    try:
        str(value).encode("ascii")
    except UnicodeEncodeError:
        raise ConfigError(path, f"expected an ASCII URL, got {value!r}")
    return value


def _endpoint(value, path):
    _string(value, path)
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(None, value)
    except Exception as e:
        raise ConfigError(path, f"bad endpoint {value!r}: {e}")
    return value


def _caFile(value, path):
    from playbalancer.membertls import loadAuthorities

    try:
        loadAuthorities(_string(value, path))
    except ValueError as e:
        raise ConfigError(path, str(e)) from None
    return value


def filesDigest(*paths):
    """
    A digest of the contents of the files at C{paths} (L{None}s skipped,
    unreadable files count as empty; L{None} when there are none): a
    reload that finds a file renewed under the same name sees a change.
    """
    import hashlib

    if all(path is None for path in paths):
        return None
    digest = hashlib.sha256()
    for path in paths:
        if path is None:
            continue
        try:
            with open(path, "rb") as f:
                digest.update(f.read())
        except OSError:
            pass
        digest.update(b"\0")
    return digest.hexdigest()


def _atLeast(minimum, maximum=None):
    def check(value, path):
        value = _count(value, path)
        if value < minimum:
            raise ConfigError(path, f"expected at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(path, f"expected at most {maximum}, got {value}")
        return value

    return check
