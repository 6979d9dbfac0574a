"""
The manager page in a real headless Chromium (see L{tests.browserharness}):
drain and disable with and without JavaScript, charts from the server's
history, the confirmation before the last usable member goes.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from playbalancer.manager.history import History

from tests.browserharness import BrowserCase


class BrowserTests(BrowserCase):
    async def test_drainWithJavaScript(self):
        """
        With JavaScript the page shows live state; Drain goes through the
        JSON API without reloading the page, and the page shows the member
        draining.
        """
        browser = await self.startAll(javascript=True)
        await self.waitFor("live indicator", lambda: self.liveStarted(browser), True)
        await self.checkShown(browser)
        await browser.script("window.playbalancerTestMarker = 'not reloaded';")

        await browser.click('tr[data-member="app1"] button[value="drain"]')

        await self.waitFor(
            "app1 state", lambda: self.state(browser, "app1"),
            "draining: nothing in flight",
        )
        await self.waitFor("app1 admin", lambda: self.admin(browser, "app1"), "drain")
        self.assertEqual(self.balancer.member("app1").admin, "drain")
        self.assertEqual(self.balancer.member("app2").admin, "enabled")
        self.assertEqual(await self.state(browser, "app2"), "taking traffic")
        self.assertEqual(
            await browser.script("return window.playbalancerTestMarker;"), "not reloaded",
            "the script should have sent the change without reloading the page",
        )
        self.assertEqual(
            await browser.script("return document.querySelector('tr[data-member=\"app1\"]').className;"),
            "member state-draining",
        )
        await self.screenshot(browser, "manager-drain.png")

    async def test_disableWithoutJavaScript(self):
        """
        Without JavaScript the Disable button posts the plain form to
        C{actions}, which redirects back to the page showing the member
        disabled.
        """
        browser = await self.startAll(javascript=False)
        await self.checkShown(browser)
        self.assertEqual(await browser.text("#live"), "live updates off (no JavaScript)")

        await browser.click('tr[data-member="app1"] button[value="disable"]')

        await self.waitFor(
            "app1 state", lambda: self.state(browser, "app1"),
            "disabled: nothing in flight",
        )
        self.assertEqual(await self.admin(browser, "app1"), "disable")
        self.assertEqual(await browser.url(), self.managerURL)
        self.assertEqual(await browser.text("#live"), "live updates off (no JavaScript)")
        self.assertEqual(self.balancer.member("app1").admin, "disabled")
        self.assertEqual(self.balancer.member("app2").admin, "enabled")
        await self.screenshot(browser, "manager-disable-nojs.png")

    # The manager's server-side history on the page, and the confirmation
    # asked before the last usable member is taken out.

    async def test_chartsFullOnArrival(self):
        """
        Traffic before the page is opened shows in its charts at once: they
        are drawn from C{GET api/history}, not from what the page saw.
        """
        a, b = self.startMembers("app1", "app2")
        balancer = self.startBalancer([a.url, b.url])
        self.startManager()
        clock = Clock()
        clock.advance(1000)
        self.manager.history = History({"test": balancer}, clock)
        self.manager.history.startService()
        self.addCleanup(self.manager.history.stopService)
        client = self.client()
        for burst in range(6):
            for _ in range(2 + 2 * burst):
                await self.fetch(client, "/")
            clock.advance(5)
        browser = await self.startBrowser(True)
        await browser.go(self.managerURL)
        inked = (
            "var c = document.querySelector('tr[data-member=\"' + arguments[0] + '\"] canvas.chart');"
            "var d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "var n = 0; for (var i = 3; i < d.length; i += 4) { if (d[i]) { n++; } } return n;"
        )
        for name in ("app1", "app2"):
            await self.waitFor(
                f"{name}'s chart drawn", lambda: self._inked(browser, inked, name), True
            )
        await self.screenshot(browser, "manager-history.png")

    async def _inked(self, browser, script, name):
        return (await browser.script(script, name)) > 20

    async def test_lastUsableMemberAsks(self):
        """
        Draining the last usable member from the page asks first, with what
        would happen; confirmed, it is done.
        """
        browser = await self.startAll(javascript=True)
        await self.waitFor("live indicator", lambda: self.liveStarted(browser), True)
        self.balancer.setAdmin(self.balancer.member("app2"), "disabled")
        await browser.script(
            "window.asked = []; window.confirm = function (m) { window.asked.push(m); return true; };"
        )
        await browser.click('tr[data-member="app1"] button[value="drain"]')
        await self.waitFor("app1 admin", lambda: self.admin(browser, "app1"), "drain")
        asked = await browser.script("return window.asked;")
        self.assertEqual(len(asked), 1, asked)
        self.assertIn("app1 is the last usable member of test", asked[0])
        self.assertIn("every new request to test gets 503", asked[0])
        self.assertEqual(self.balancer.member("app1").admin, "drain")

    async def test_lastUsableMemberKeptWhenNotConfirmed(self):
        browser = await self.startAll(javascript=True)
        await self.waitFor("live indicator", lambda: self.liveStarted(browser), True)
        self.balancer.setAdmin(self.balancer.member("app2"), "disabled")
        await browser.script(
            "window.asked = []; window.alert = function (m) { window.told = m; };"
            "window.confirm = function (m) { window.asked.push(m); return false; };"
        )
        await browser.click('tr[data-member="app1"] button[value="drain"]')
        await self.waitFor("the question", lambda: browser.script("return window.asked.length;"), 1)
        await self.waitFor(
            "the refusal shown",
            lambda: browser.script("return (window.told || '').indexOf('last usable') >= 0;"),
            True,
        )
        self.assertEqual(self.balancer.member("app1").admin, "enabled")
