"""
The browser harness itself, without a browser: what L{BrowserCase.waitFor}
retries.
"""

from __future__ import annotations

from tests.browserharness import BrowserCase, WebDriverSession


class PageBeingReplaced(WebDriverSession):
    """
    A session whose page has none of the elements for the first C{gaps}
    lookups (as while a form's POST is answered and the page reloads),
    then one.
    """

    def __init__(self, gaps):
        WebDriverSession.__init__(self, None, "http://127.0.0.1:1")
        self.gaps = gaps

    async def find(self, css):
        if self.gaps:
            self.gaps -= 1
            return []
        return ["element-1"]

    async def command(self, method, path, body=None, timeout=20):
        return "disabled"


class WaitForTests(BrowserCase):
    async def test_elementMissingWhilePageReloads(self):
        """
        An element missing for a moment, as while the page is replaced, is
        read again rather than failing the wait.
        """
        session = PageBeingReplaced(gaps=2)
        await self.waitFor("state", lambda: session.text("#state"), "disabled")
        self.assertEqual(session.gaps, 0)

    async def test_elementMissingToTheEnd(self):
        """
        An element that never appears fails the wait, naming the count.
        """
        session = PageBeingReplaced(gaps=10 ** 6)
        with self.assertRaises(self.failureException) as raised:
            await self.waitFor("state", lambda: session.text("#state"), "disabled", timeout=0.3)
        self.assertIn("0 elements match '#state', not 1", str(raised.exception))
