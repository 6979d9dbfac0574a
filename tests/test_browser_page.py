"""
The manager page's second edition in a real headless Chromium (see
L{tests.browserharness}), at a desktop's width and a phone's: the overview
and the tab's title, controls that show state and change it (with the
mouse and the keyboard), the confirmation before a removal, the timeline
in local time with its filter, nothing sideways at 420 px, and no serious
or critical finding of axe-core (loaded from tests/browser/, installed by
C{make test}).
"""

from __future__ import annotations

import json
import os
import re

from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from playbalancer.balancer import Balancer
from playbalancer.config.rolling import RollingRestartConfig
from playbalancer.manager.history import History
from playbalancer.manager.rollout import Rollouts
from playbalancer.schedulers import RoundRobinScheduler
from playbalancer.testing import candidateMembers, waitUntil

from tests.browserharness import BrowserCase
from tests.test_rolling_cli import _RollingCase

AXE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "browser", "node_modules", "axe-core",
                   "axe.min.js")

DESKTOP = (1400, 900)
PHONE = (420, 900)

#: Screenshots go here too when set (C{docs/} makes the README's).
SCREENSHOTS = os.environ.get("PLAYBALANCER_SCREENSHOTS")


class PageTests(BrowserCase):
    async def openPage(self, size=DESKTOP, members=("app1", "app2"), history=True, bursts=8):
        servers = self.startMembers(*members)
        balancer = self.startBalancer([s.url for s in servers])
        self.startManager()
        if history:
            clock = Clock()
            clock.advance(1000)
            self.manager.history = History({"test": balancer}, clock)
            self.manager.history.startService()
            self.addCleanup(self.manager.history.stopService)
            client = self.client()
            for burst in range(bursts):
                for _ in range(1 + (burst * 7) % 5):
                    await self.fetch(client, "/")
                clock.advance(5)
        browser = await self.startBrowser(True)
        await browser.resize(*size)
        await browser.go(self.managerURL)
        await self.waitFor("live indicator", lambda: self.liveStarted(browser), True)
        return browser

    async def keep(self, browser, name):
        path = await self.screenshot(browser, name)
        if SCREENSHOTS:
            with open(path, "rb") as f, open(os.path.join(SCREENSHOTS, name), "wb") as out:
                out.write(f.read())

    async def sideways(self, browser):
        """
        How many pixels the page is wider than the window (0: none).
        """
        return await browser.script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;"
        )

    async def test_desktopAndPhone(self):
        """
        At 1400 px the members are a table; at 420 px they are cards, every
        control in view, nothing wider than the window.
        """
        browser = await self.openPage(DESKTOP, members=("app1", "app2", "app3"), bursts=180)
        self.balancer.setAdmin(self.balancer.member("app3"), "drain", who="127.0.0.1")
        await self.waitFor("app3 draining", lambda: self.admin(browser, "app3"), "drain")
        await self.keep(browser, "manager-desktop.png")
        self.assertEqual(await self.sideways(browser), 0)
        self.assertEqual(
            await browser.script("return getComputedStyle(document.querySelector('table.members tr.member')).display;"),
            "table-row",
        )
        await browser.resize(*PHONE)
        await self.waitFor("the phone layout",
                           lambda: browser.script("return window.innerWidth <= 430;"), True)
        self.assertEqual(await self.sideways(browser), 0)
        self.assertEqual(
            await browser.script("return getComputedStyle(document.querySelector('table.members tr.member')).display;"),
            "block",
        )
        outside = await browser.script(
            "var w = document.documentElement.clientWidth;"
            "return Array.from(document.querySelectorAll('button, input, select, canvas'))"
            ".filter(function (e) { var r = e.getBoundingClientRect();"
            " return r.width && (r.left < 0 || r.right > w + 0.5); })"
            ".map(function (e) { return e.outerHTML.slice(0, 80); });"
        )
        await self.keep(browser, "manager-phone.png")
        self.assertEqual(outside, [])
        for width in (360, 1000, 1241):  # a small phone, a tablet, just wide enough for the table
            await browser.resize(width, 900)
            await self.waitFor(f"{width} px", lambda: browser.script(
                f"return Math.abs(window.innerWidth - {width}) < 20;"), True)
            self.assertEqual(await self.sideways(browser), 0, f"at {width} px")

    async def test_controlsShowAndChangeState(self):
        """
        The pressed admin button is the member's state; clicking another
        changes it; standby is a toggle; the weight is set in place, with
        the keyboard (Enter) as with the mouse.
        """
        browser = await self.openPage()
        self.assertEqual(await self.admin(browser, "app1"), "enable")
        await browser.click('tr[data-member="app1"] button[value="drain"]')
        await self.waitFor("drain pressed", lambda: self.admin(browser, "app1"), "drain")
        self.assertEqual(self.balancer.member("app1").admin, "drain")
        await browser.click('tr[data-member="app1"] button[value="enable"]')
        await self.waitFor("enabled pressed", lambda: self.admin(browser, "app1"), "enable")

        standby = 'tr[data-member="app2"] [data-field="standby"]'
        self.assertEqual(await browser.script(
            f"return document.querySelector('{standby}').getAttribute('aria-pressed');"), "false")
        await browser.click(standby)
        await self.waitFor("standby on", lambda: browser.script(
            f"return document.querySelector('{standby}').getAttribute('aria-pressed');"), "true")
        self.assertTrue(self.balancer.member("app2").standby)

        weight = 'tr[data-member="app1"] input.weight'
        await browser.script(f"document.querySelector('{weight}').value = '';")
        await browser.keys(weight, "7\ue007")
        await self.waitFor("weight 7", lambda: self._weight("app1"), 7)
        self.assertEqual(self.balancer.member("app1").admin, "enabled")  # Enter set only the weight

    async def _weight(self, name):
        return self.balancer.member(name).configuredWeight

    async def test_keyboardDrain(self):
        """
        The admin buttons are reached and pressed with the keyboard alone.
        """
        browser = await self.openPage()
        await browser.keys('tr[data-member="app2"] button[value="drain"]', "\ue007")
        await self.waitFor("drain pressed", lambda: self.admin(browser, "app2"), "drain")
        self.assertEqual(self.balancer.member("app2").admin, "drain")

    async def test_removeAsks(self):
        """
        Remove asks first, saying what is in flight; cancelled, nothing
        happens; confirmed, the member goes.
        """
        browser = await self.openPage(members=("app1", "app2", "app3"))
        await browser.script(
            "window.asked = []; window.answer = false;"
            "window.confirm = function (m) { window.asked.push(m); return window.answer; };"
        )
        await browser.click('tr[data-member="app3"] button[value="remove"]')
        await self.waitFor("the question", lambda: browser.script("return window.asked.length;"), 1)
        (question,) = await browser.script("return window.asked;")
        self.assertEqual(
            question,
            "Remove app3 from test?  It gets no new requests from now, and nothing is in flight.",
        )
        self.assertIsNotNone(self.balancer.member("app3"))
        await browser.script("window.answer = true;")
        await browser.click('tr[data-member="app3"] button[value="remove"]')
        await self.waitFor("app3 gone", lambda: self._gone("app3"), True)
        await self.waitFor("app3's row gone", lambda: browser.script(
            "return document.querySelectorAll('tr[data-member=\"app3\"]').length;"), 0)

    async def _gone(self, name):
        return self.balancer.member(name) is None

    async def test_overviewAndTitle(self):
        """
        The tile shows the balancer's traffic and members; the overall
        state is in the header and the tab's title, and follows changes.
        """
        browser = await self.openPage()
        self.assertEqual(await browser.script("return document.title;"), "\u2714 all serving \u00b7 playbalancer")
        tile = 'article.tile[data-balancer="test"]'
        self.assertEqual(await browser.text(f'{tile} [data-o="members"]'), "2 serving")
        self.assertRegex(await browser.text(f'{tile} [data-o="requests"]'), r"^\d+\.\d/s$")
        inked = await browser.script(
            f"var c = document.querySelector('{tile} canvas');"
            "var d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "var n = 0; for (var i = 3; i < d.length; i += 4) { if (d[i]) { n++; } } return n;"
        )
        self.assertGreater(inked, 20)
        self.balancer.setAdmin(self.balancer.member("app1"), "disabled")
        self.balancer.setAdmin(self.balancer.member("app2"), "disabled")
        await self.waitFor("the title", lambda: browser.script("return document.title;"),
                           "\u2716 no usable member: test \u00b7 playbalancer")
        self.assertEqual(await browser.text("#overall"), "\u2716 no usable member: test")
        self.assertEqual(await browser.text(f'{tile} [data-o="members"]'), "2 disabled")

    async def test_timelineLocalTimeAndFilter(self):
        """
        Every member's changes in one list, newest first, with who made
        them, in local time with the offset; the filter keeps one balancer.
        """
        (a,) = self.startMembers("app1")
        balancer = self.startBalancer([a.url])
        other = Balancer("other", RoundRobinScheduler(), candidateMembers("spare"), self.clock)
        self.startManager(balancers={"test": balancer, "other": other})
        balancer.setAdmin(balancer.member("app1"), "drain", who="alice")
        self.clock.advance(1)
        other.setAdmin(other.member("spare"), "disabled", who="bob")
        browser = await self.startBrowser(True)
        await browser.go(self.managerURL)
        await self.waitFor("live indicator", lambda: self.liveStarted(browser), True)
        items = await browser.script(
            "return Array.from(document.querySelectorAll('ol.timeline li'))"
            ".filter(function (li) { return !li.hidden; }).map(function (li) { return li.textContent; });"
        )
        self.assertEqual(len(items), 2, items)
        self.assertRegex(items[0], r"^\d\d:\d\d:\d\d [+-]\d\d:\d\dother/spare: admin=disabled by bob$")
        self.assertRegex(items[1], r"^\d\d:\d\d:\d\d [+-]\d\d:\d\dtest/app1: admin=drain by alice$")
        await browser.script(
            "var s = document.getElementById('timeline-filter'); s.value = 'test';"
            "s.dispatchEvent(new Event('change'));"
        )
        shown = await browser.script(
            "return Array.from(document.querySelectorAll('ol.timeline li'))"
            ".filter(function (li) { return !li.hidden; }).map(function (li) { return li.dataset.balancer; });"
        )
        self.assertEqual(shown, ["test"])

    async def test_accessibility(self):
        """
        axe-core finds nothing serious or critical, at a desktop's width
        and a phone's, with a member draining and one down.
        """
        if not os.path.exists(AXE):
            self.fail(f"{AXE} is missing: run make test (npm ci --prefix tests/browser)")
        with open(AXE, encoding="utf-8") as f:
            axe = f.read()
        browser = await self.openPage()
        self.balancer.setAdmin(self.balancer.member("app1"), "drain")
        self.balancer.memberFailed(self.balancer.member("app2"), "test failure")
        for size in (DESKTOP, PHONE):
            await browser.resize(*size)
            await self.waitFor("the state shown", lambda: self.state(browser, "app1"),
                               "draining: nothing in flight")
            await browser.script(axe)
            found = await browser.executeAsync(
                "var done = arguments[arguments.length - 1];"
                "axe.run(document, {resultTypes: ['violations']}).then(function (r) {"
                " done(JSON.stringify(r.violations.map(function (v) {"
                "  return {id: v.id, impact: v.impact, help: v.help,"
                "   nodes: v.nodes.map(function (n) { return n.target.join(' '); })}; }))); });"
            )
            violations = json.loads(found)
            serious = [v for v in violations if v["impact"] in ("serious", "critical")]
            self.assertEqual(serious, [], f"at {size[0]} px")

    async def test_pageWeight(self):
        """
        The first load, the page and what it loads, is under 100 KB, and
        the page loads nothing from anywhere else.
        """
        browser = await self.openPage()
        sizes = await browser.script(
            "return performance.getEntriesByType('navigation').concat("
            "performance.getEntriesByType('resource')).map(function (e) {"
            " return [e.name, e.transferSize || e.encodedBodySize]; });"
        )
        origin = self.managerURL.rstrip("/")
        for name, _ in sizes:
            self.assertTrue(name.startswith(origin), name)
        self.assertLess(sum(size for _, size in sizes), 100 * 1024, sizes)
        self.assertEqual(
            sorted(re.sub(r"\?.*", "", name[len(origin):]) for name, _ in sizes
                   if "/api/" not in name and "favicon" not in name),
            ["/", "/static/manager.css", "/static/manager.js"],
        )


class RollingPanelTests(BrowserCase, _RollingCase):
    async def step(self, browser, member):
        return await browser.script(
            "var li = document.querySelector('#rolling li[data-member=\"' + arguments[0] + '\"]');"
            "return li ? li.dataset.step : null;", member
        )

    async def test_panelFollowsARollingRestart(self):
        """
        A rolling restart started from the command line shows on the page:
        the panel appears, each member's step advances (the command is
        shown running), the progress bar fills, and the run ends done.
        """
        balancer = self.setUpCluster()
        await waitUntil(lambda: all(m.checkPasses >= 2 for m in balancer.members), reactor)
        browser = await self.startBrowser(True)
        await browser.resize(*DESKTOP)
        await browser.go(self.managerURL)
        await self.waitFor("live indicator", lambda: self.liveStarted(browser), True)
        self.assertTrue(await browser.script("return document.getElementById('rolling').hidden;"))
        command = 'g="$PLAYBALANCER_MEMBER"; while [ ! -e "$GATES/$g" ]; do sleep 0.05; done'
        gateDir = os.path.abspath(self.mktemp())
        os.makedirs(gateDir)
        os.environ["GATES"] = gateDir
        self.addCleanup(os.environ.pop, "GATES", None)
        restart = defer.ensureDeferred(self.cli("rolling-restart", "test", "--exec", command))
        await self.waitFor("app1 running", lambda: self.step(browser, "app1"), "running", timeout=20)
        self.assertEqual(await self.step(browser, "app2"), "waiting")
        self.assertFalse(await browser.script("return document.getElementById('rolling').hidden;"))
        await self.waitFor("app1 drained in the table", lambda: self.admin(browser, "app1"), "drain")
        await self.keep(browser, "manager-rolling.png")
        open(os.path.join(gateDir, "app1"), "w").close()
        await self.waitFor("app1 enabled", lambda: self.step(browser, "app1"), "enabled", timeout=20)
        await self.waitFor("app2 running", lambda: self.step(browser, "app2"), "running", timeout=20)
        self.assertEqual(await browser.script("return document.querySelector('#rolling progress').value;"), 1)
        await browser.resize(*PHONE)
        await self.waitFor("the phone layout", lambda: browser.script("return window.innerWidth <= 430;"), True)
        self.assertEqual(await self.sideways(browser), 0)
        await self.keep(browser, "manager-rolling-phone.png")
        open(os.path.join(gateDir, "app2"), "w").close()
        code, out, err = await restart
        self.assertEqual(code, 0, err)
        await self.waitFor("the run done", lambda: browser.script(
            "return document.querySelector('#rolling h2 small').textContent.split(' ')[0];"), "done")
        self.assertEqual(await browser.script("return document.querySelector('#rolling progress').value;"), 2)

    async def test_startedFromThePage(self):
        """
        With a command in the config, the panel offers to start a rolling
        restart; it asks first, and once confirmed the run starts, shows
        its steps and ends done, with the offer back.
        """
        balancer = self.setUpCluster()
        done = os.path.abspath(self.mktemp())
        balancer.rollingRestart = RollingRestartConfig(
            command=f'echo "$PLAYBALANCER_MEMBER" >> "{done}"', timeout=20
        )
        self.manager.rollouts = Rollouts(self.manager, reactor)
        await waitUntil(lambda: all(m.checkPasses >= 2 for m in balancer.members), reactor)
        browser = await self.startBrowser(True)
        await browser.resize(*DESKTOP)
        await browser.go(self.managerURL)
        await self.waitFor("live indicator", lambda: self.liveStarted(browser), True)
        start = '#rolling .rolling-run[data-balancer="test"] button'
        self.assertEqual(await browser.text(start), "Start a rolling restart of test")
        await browser.script(
            "window.asked = []; window.answer = false;"
            "window.confirm = function (m) { window.asked.push(m); return window.answer; };"
        )
        await browser.click(start)
        await self.waitFor("the question", lambda: browser.script("return window.asked.length;"), 1)
        self.assertIsNone(self.manager.restarts.runs.get("test"))
        await browser.script("window.answer = true;")
        await browser.click(start)
        await self.waitFor("the run done", lambda: browser.script(
            "return document.querySelector('#rolling h2 small').textContent.split(' ')[0];"), "done",
            timeout=30)
        self.assertEqual(await self.step(browser, "app2"), "enabled")
        self.assertIn("from the page by 127.0.0.1", await browser.text("#rolling h2 small"))
        await self.waitFor("the offer back", lambda: browser.script(
            "return document.querySelectorAll('#rolling button').length;"), 1)
        with open(done) as f:
            self.assertEqual(f.read().split(), ["app1", "app2"])

    keep = PageTests.keep
    sideways = PageTests.sideways
