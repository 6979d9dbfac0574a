"""
What the browser tests share: a real headless Chromium, driven through
chromedriver's W3C WebDriver HTTP API with treq, so the browser never
blocks the reactor that runs the members, the balancer and the manager.

Needs chromium and chromedriver (Debian: C{chromium}, C{chromium-driver});
C{PLAYBALANCER_CHROMIUM} and C{PLAYBALANCER_CHROMEDRIVER} name other
binaries.  Without them these tests fail: they are not optional.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal

from twisted.internet import defer, reactor
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater

from tests import test_manager

#: W3C WebDriver's key for an element reference.
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-proxy-server",
    "--password-store=basic",
    "--window-size=1500,700",
]


def findProgram(variable, names):
    """
    The program named by environment C{variable}, or the first of C{names}
    on C{PATH}; L{None} if there is none.
    """
    named = os.environ.get(variable)
    if named:
        return shutil.which(named)
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


async def sleep(seconds):
    await deferLater(reactor, seconds, lambda: None)


class WebDriverError(Exception):
    pass


class NotOneElement(WebDriverError, AssertionError):
    """
    A selector that should match one element matched none or several: a
    failure, unless the page is being replaced (L{BrowserCase.waitFor}
    reads again).
    """


class ChromedriverProcess(ProcessProtocol):
    """
    A chromedriver child listening on a port of its own choosing
    (C{--port=0}): C{started} fires with that port.
    """

    def __init__(self):
        self.output = b""
        self.started = defer.Deferred()
        self.ended = defer.Deferred()
        self.running = True

    def childDataReceived(self, fd, data):
        self.output = (self.output + data)[-20000:]
        if not self.started.called:
            match = re.search(rb"started successfully on port (\d+)", self.output)
            if match:
                self.started.callback(int(match.group(1)))

    def processEnded(self, reason):
        self.running = False
        if not self.started.called:
            self.started.errback(
                WebDriverError(f"chromedriver exited before listening: {self.outputText()}")
            )
        self.ended.callback(None)

    def outputText(self):
        return self.output.decode("utf-8", "replace").strip()[-3000:]

    async def stop(self, grace=5.0):
        """
        End the process by its PID: TERM, then KILL after C{grace} seconds.
        """
        for sig, wait in (("TERM", grace), ("KILL", grace)):
            if not self.running:
                return
            try:
                self.transport.signalProcess(sig)
            except ProcessExitedAlready:
                return
            ended = defer.Deferred()
            self.ended.addBoth(lambda result: ended.called or ended.callback(None))
            timer = reactor.callLater(wait, lambda: ended.called or ended.callback(None))
            await ended
            if timer.active():
                timer.cancel()


class WebDriverSession:
    """
    One browser session, every command a non-blocking treq request to
    chromedriver.
    """

    def __init__(self, client, base):
        self.client = client
        self.base = base
        self.session = None

    async def command(self, method, path, body=None, timeout=20):
        if method == "POST" and body is None:
            body = {}
        url = self.base + path
        data = json.dumps(body).encode("utf-8") if body is not None else None
        response = await self.client.request(
            method, url, data=data, timeout=timeout,
            headers={b"Content-Type": [b"application/json; charset=utf-8"]},
        )
        text = (await response.content()).decode("utf-8", "replace")
        try:
            value = json.loads(text).get("value")
        except (ValueError, AttributeError):
            raise WebDriverError(f"{method} {path}: HTTP {response.code}: {text[:500]}")
        if response.code != 200:
            if isinstance(value, dict):
                text = f"{value.get('error')}: {value.get('message')}"
            raise WebDriverError(f"{method} {path}: HTTP {response.code}: {text[:1000]}")
        return value

    async def start(self, binary, args, prefs):
        capabilities = {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": binary, "args": args, "prefs": prefs},
        }
        value = await self.command(
            "POST", "/session", {"capabilities": {"alwaysMatch": capabilities}}, timeout=60
        )
        self.session = f"/session/{value['sessionId']}"
        await self.command(
            "POST", self.session + "/timeouts", {"pageLoad": 15000, "script": 5000, "implicit": 0}
        )

    async def quit(self):
        if self.session is not None:
            session, self.session = self.session, None
            await self.command("DELETE", session, timeout=15)

    async def go(self, url):
        await self.command("POST", self.session + "/url", {"url": url}, timeout=30)

    async def url(self):
        return await self.command("GET", self.session + "/url")

    async def find(self, css):
        found = await self.command(
            "POST", self.session + "/elements", {"using": "css selector", "value": css}
        )
        return [element[ELEMENT] for element in found]

    async def one(self, css):
        found = await self.find(css)
        if len(found) != 1:
            raise NotOneElement(f"{len(found)} elements match {css!r}, not 1")
        return found[0]

    async def text(self, css):
        element = await self.one(css)
        return await self.command("GET", f"{self.session}/element/{element}/text")

    async def click(self, css):
        element = await self.one(css)
        await self.command("POST", f"{self.session}/element/{element}/click")

    async def script(self, source, *args):
        return await self.command(
            "POST", self.session + "/execute/sync", {"script": source, "args": list(args)}
        )

    async def screenshot(self):
        return base64.b64decode(await self.command("GET", self.session + "/screenshot"))

    async def executeAsync(self, source, *args):
        """
        Run C{source}, which calls its last argument with the result.
        """
        return await self.command(
            "POST", self.session + "/execute/async", {"script": source, "args": list(args)}, timeout=30
        )

    async def resize(self, width, height):
        """
        Make the window C{width} x C{height} pixels.
        """
        await self.command(
            "POST", self.session + "/window/rect", {"width": width, "height": height}
        )

    async def keys(self, css, text):
        """
        Type C{text} into the element C{css} (C{"\ue007"} is Enter), as a
        keyboard would.
        """
        element = await self.one(css)
        await self.command(
            "POST", f"{self.session}/element/{element}/value", {"text": text}
        )


class BrowserCase(test_manager.ManagerTestCase):
    timeout = 120

    def kill(self, pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def killStrays(self, profile):
        """
        Kill, by PID, any browser process still using our own profile
        directory (left behind if chromedriver died without closing it).
        """
        if not os.path.isdir("/proc"):
            return
        marker = f"--user-data-dir={profile}".encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    arguments = f.read().split(b"\0")
            except OSError:
                continue
            if marker in arguments:
                self.kill(int(entry))

    async def startBrowser(self, javascript=True):
        """
        Start chromedriver and a headless Chromium with a fresh profile in
        this test's temporary directory; everything is ended in cleanup.
        """
        chromium = findProgram("PLAYBALANCER_CHROMIUM", CHROMIUM_NAMES)
        chromedriver = findProgram("PLAYBALANCER_CHROMEDRIVER", ("chromedriver",))
        if chromium is None or chromedriver is None:
            self.fail(
                "the browser tests need Chromium and chromedriver "
                f"(found chromium: {chromium}, chromedriver: {chromedriver}); "
                "install them (Debian: apt-get install chromium chromium-driver) "
                "or name them in PLAYBALANCER_CHROMIUM and PLAYBALANCER_CHROMEDRIVER"
            )
        self.tempDir = os.path.abspath(self.mktemp())
        profile = os.path.join(self.tempDir, "profile")
        os.makedirs(profile)

        self.addCleanup(self.killStrays, profile)
        # chromedriver --port=0 takes a free IPv6 port, then the same number
        # on IPv4, which may be taken: then it exits, and is started again.
        for attempt in range(3):
            driver = ChromedriverProcess()
            reactor.spawnProcess(
                driver, chromedriver, [chromedriver, "--port=0"], env=dict(os.environ),
                path=self.tempDir, childFDs={0: "w", 1: "r", 2: "r"},
            )
            self.addCleanup(driver.stop)
            timer = reactor.callLater(20, driver.started.cancel)
            try:
                port = await driver.started
                break
            except defer.CancelledError:
                self.fail(f"chromedriver did not start in 20 s: {driver.outputText()}")
            except WebDriverError as e:
                if "port not available" not in str(e) or attempt == 2:
                    raise
            finally:
                if timer.active():
                    timer.cancel()

        browser = WebDriverSession(self.client(), f"http://127.0.0.1:{port}")
        prefs = {} if javascript else {
            "profile.managed_default_content_settings.javascript": 2,
            "webkit.webprefs.javascript_enabled": False,
        }
        try:
            await browser.start(chromium, CHROMIUM_ARGS + [f"--user-data-dir={profile}"], prefs)
        except Exception as e:
            self.fail(f"Chromium did not start: {e}\nchromedriver said: {driver.outputText()}")
        self.addCleanup(browser.quit)
        return browser

    async def waitFor(self, what, read, expected, timeout=5.0):
        """
        Read C{read()} until it equals C{expected}; fail after C{timeout}
        seconds with the last value.
        """
        deadline = reactor.seconds() + timeout
        while True:
            try:
                value = await read()
            except WebDriverError as e:  # say, the page is being replaced
                value = str(e)
            if value == expected or reactor.seconds() > deadline:
                break
            await sleep(0.1)
        self.assertEqual(value, expected, f"{what} after {timeout} s")

    def row(self, member, field):
        return f'tr[data-member="{member}"] [data-field="{field}"]'

    async def state(self, browser, member):
        """
        The member's state as the page says it, without its sign.
        """
        text = await browser.text(self.row(member, "state_text"))
        return text.split(" ", 1)[1] if " " in text else text

    async def admin(self, browser, member):
        """
        The admin button shown pressed (C{enable}, C{drain} or C{disable}),
        or L{None}; failing if more than one is.
        """
        pressed = await browser.script(
            "return Array.from(document.querySelectorAll("
            "'tr[data-member=\"' + arguments[0] + '\"] [data-field=\"admin\"] button'))"
            ".filter(function (b) { return b.getAttribute('aria-pressed') === 'true'; })"
            ".map(function (b) { return b.value; });",
            member,
        )
        self.assertLessEqual(len(pressed), 1, pressed)
        return pressed[0] if pressed else None

    async def screenshot(self, browser, name):
        data = await browser.screenshot()
        path = os.path.join(self.tempDir, name)
        with open(path, "wb") as f:
            f.write(data)
        self.assertTrue(os.path.isfile(path))
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), PNG_MAGIC)
        return path

    async def startAll(self, javascript):
        a, b = self.startMembers("app1", "app2")
        self.startBalancer([a.url, b.url])
        self.startManager()
        client = self.client()
        for _ in range(4):
            await self.fetch(client, "/")
        browser = await self.startBrowser(javascript)
        await browser.go(self.managerURL)
        return browser

    async def checkShown(self, browser):
        self.assertEqual(await browser.text("h1"), "playbalancer")
        for name in ("app1", "app2"):
            self.assertEqual(await browser.text(f'tr[data-member="{name}"] td strong'), name)
            self.assertEqual(await self.state(browser, name), "taking traffic")
            self.assertEqual(await self.admin(browser, name), "enable")

    async def liveStarted(self, browser):
        return (await browser.text("#live")).startswith("live · updated")
