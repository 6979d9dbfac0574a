"""
Who may use the manager, and the headers and tokens that keep a browser
from being turned against it (Apache's balancer-manager had CSRF and XSS
holes: CVE-2007-6420, CVE-2007-6421, CVE-2012-4558).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os

from twisted.internet.address import IPv4Address, IPv6Address

#: Sent with every manager response.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]

#: How long a form's anti-CSRF token stays good, in seconds.
CSRF_LIFETIME = 12 * 3600


class Refusal(Exception):
    """
    The request may not use the manager: C{code} and C{message} say why.
    """

    def __init__(self, code, message, headers=()):
        Exception.__init__(self, message)
        self.code = code
        self.message = message
        self.headers = list(headers)


def _addressIP(address):
    if not isinstance(address, (IPv4Address, IPv6Address)):
        return None  # a Unix socket: only local users can reach it
    ip = ipaddress.ip_address(address.host.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip


def forwardedClients(request):
    """
    Every client address that forwarding headers claim for C{request}:
    each C{X-Forwarded-For} entry, each C{Forwarded} element's C{for=},
    each C{X-Real-IP}, on every line of them.  An entry that is not an IP
    address (C{unknown}, an obfuscated name, garbage) is C{""}.  Empty
    when the request carries none of these headers.
    """
    headers = request.requestHeaders
    claimed = []
    for line in headers.getRawHeaders(b"x-forwarded-for", []):
        claimed.extend(_ipText(entry) for entry in line.split(b","))
    for line in headers.getRawHeaders(b"x-real-ip", []):
        claimed.append(_ipText(line))
    for line in headers.getRawHeaders(b"forwarded", []):
        for element in line.split(b","):
            found = False
            for pair in element.split(b";"):
                name, _, value = pair.strip().partition(b"=")
                if name.strip().lower() == b"for":
                    found = True
                    value = value.strip().strip(b'"')
                    if value.startswith(b"["):
                        value = value[1:].split(b"]", 1)[0]
                    elif value.count(b":") == 1:
                        value = value.split(b":", 1)[0]
                    claimed.append(_ipText(value))
            if not found:
                claimed.append("")
    return claimed


def _ipText(value):
    text = value.strip().decode("latin-1")
    return text if _isIP(text) else ""


def hostName(value):
    """
    The host name of a C{Host} header value, lower-cased, without the port
    or IPv6 brackets; L{None} without a header.
    """
    if not value:
        return None
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    # (A final dot names the same host, as routes match it.)
    return (text.rsplit(":", 1)[0] if text.count(":") == 1 else text).rstrip(".")


def _isIP(name):
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class AccessPolicy:
    """
    Address allow-list first, then the optional bearer token, and
    anti-CSRF tokens for HTML forms.

    @param allow: CIDR networks (strings) that may connect.
    @param token: the secret every request must present, or L{None}.
    @param hosts: host names (besides IP addresses and C{localhost}) that
        requests may name in C{Host}.
    @param clock: provides C{seconds()}, for the form tokens.
    """

    def __init__(self, allow, token, clock, secret=None, hosts=()):
        self.networks = [ipaddress.ip_network(n, strict=False) for n in allow]
        self.hosts = {"localhost"} | {h.lower() for h in hosts}
        self.token = token
        self.clock = clock
        self._secret = secret if secret is not None else os.urandom(32)

    def allowsAddress(self, address):
        """
        Whether a client at C{address} (a Twisted address) passes the
        allow-list.  A Unix socket does: only local users can reach it.
        """
        ip = _addressIP(address)
        return ip is None or self.allowsIP(ip)

    def allowsIP(self, ip):
        """
        Whether the IP address C{ip} is on the allow-list.
        """
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)

    def check(self, request):
        """
        Raise L{Refusal} unless C{request} may use the manager.
        """
        address = request.getClientAddress()
        if not self.allowsAddress(address):
            raise Refusal(403, f"address {_addressIP(address)} is not allowed to use the manager")
        claimed = forwardedClients(request)
        if claimed and self.token is None:
            self._checkForwarded(request, address, claimed)
        host = hostName(request.getHeader(b"host"))
        if host is not None and not self.allowsHost(host):
            # A page on another site whose name was rebound to us (DNS
            # rebinding) sends its own name here.
            raise Refusal(
                403, f"host name {host!r} is not allowed (see manager.allowed_hosts)"
            )
        if self.token is not None and not self._presentsToken(request):
            raise Refusal(
                401,
                "a valid token is required",
                [(b"www-authenticate", b'Basic realm="playbalancer manager"')],
            )

    def allowsHost(self, host):
        """
        Whether requests may name C{host} (lower case, no port) in I{Host}:
        an IP address, C{localhost}, a name of C{allowed_hosts}, or one
        under a C{*.} wildcard there.
        """
        if host in self.hosts or _isIP(host):
            return True
        dot = host.find(".")
        while dot != -1:
            if "*" + host[dot:] in self.hosts:
                return True
            dot = host.find(".", dot + 1)
        return False

    def forRoute(self, host, addressChecked):
        """
        The policy of the manager behind a route of a front listener: the
        route's host (a name or C{*.} wildcard; L{None}: any host) is one
        requests may name, and when the route has its own C{allow} list
        (C{addressChecked}), that list replaces this one's addresses: the
        route checked the client before the manager got the request.  The
        token and the form tokens stay as they are.
        """
        policy = AccessPolicy([], self.token, self.clock, secret=self._secret)
        policy.networks = (
            [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
            if addressChecked
            else list(self.networks)
        )
        policy.hosts = set(self.hosts) | ({host} if host is not None else set())
        return policy

    def _checkForwarded(self, request, address, claimed):
        """
        A request a proxy passed on: behind a local proxy every client
        looks local, so without a token only a proxy the listener trusts
        may pass on requests, and only when every address the forwarding
        headers name is on the allow-list (a client can write these
        headers itself, and a proxy may pass them on unchanged).
        """
        trusted = getattr(getattr(request.channel, "site", None), "trustedProxies", ())
        ip = _addressIP(address)
        if ip is None or not any(ip in net for net in trusted):
            raise Refusal(
                403,
                "a request passed on by a proxy needs the manager's token_file "
                "(or the listener's trusted_proxies to name that proxy)",
            )
        for client in claimed:
            if not client or not self.allowsIP(ipaddress.ip_address(client)):
                raise Refusal(
                    403,
                    f"forwarded client {client or '(unreadable)'} is not allowed to use the manager",
                )

    def _presentsToken(self, request):
        expected = self.token.encode("utf-8")
        for value in request.requestHeaders.getRawHeaders(b"authorization", []):
            scheme, _, credentials = value.strip().partition(b" ")
            scheme = scheme.lower()
            credentials = credentials.strip()
            if scheme == b"bearer":
                offered = credentials
            elif scheme == b"basic":
                try:
                    decoded = base64.b64decode(credentials, validate=True)
                except ValueError:
                    continue
                offered = decoded.partition(b":")[2]
            else:
                continue
            if hmac.compare_digest(offered, expected):
                return True
        return False

    def who(self, request):
        """
        How a change made by C{request} is credited in the logs.
        """
        address = request.getClientAddress()
        return getattr(address, "host", None) or "local socket"

    def csrfToken(self):
        """
        A fresh token for one HTML form.
        """
        issued = b"%d" % int(self.clock.seconds())
        nonce = base64.urlsafe_b64encode(os.urandom(12))
        return (issued + b"." + nonce + b"." + self._sign(issued, nonce)).decode("ascii")

    def checkCsrf(self, token):
        """
        Whether C{token} (from a form) was made here and is still good.
        """
        if not isinstance(token, bytes):
            return False
        parts = token.split(b".")
        if len(parts) != 3 or not parts[0].isdigit():
            return False
        issued, nonce, signature = parts
        if not hmac.compare_digest(signature, self._sign(issued, nonce)):
            return False
        age = self.clock.seconds() - int(issued)
        return 0 <= age <= CSRF_LIFETIME

    def _sign(self, issued, nonce):
        mac = hmac.new(self._secret, issued + b"." + nonce, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=")


def sameOrigin(request):
    """
    C{False} when the browser says the request comes from another site
    (C{Origin}, or else C{Referer}, naming another host); C{True} when it
    says nothing (curl, scripts) or names this host.
    """
    host = request.getHeader(b"host")
    for header in (b"origin", b"referer"):
        value = request.getHeader(header)
        if value is None:
            continue
        if value == b"null":
            return False
        rest = value.partition(b"://")[2]
        return rest.split(b"/", 1)[0].lower() == (host or b"").lower()
    return True
