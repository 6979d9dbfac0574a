"""
Reloads that must be refused, or applied whole: access logs that cannot be
opened, a changed PROXY-protocol setting, a changed resolver.
"""

from __future__ import annotations

import os


from tests.test_reload import FRONT, SECOND, ConfigServiceCase, configText


class ReloadAccessLogTests(ConfigServiceCase):
    """
    An access log that cannot be opened is found before the reload changes
    anything: refused, naming the key.
    """

    def badLog(self):
        return os.path.join(os.path.abspath(self.mktemp()), "no-such-dir", "access.log")

    async def test_keptListenerBadAccessLogChangesNothing(self):
        """
        README: "a file that does not check out ... changes nothing".  A
        reload that adds member C{b} and points the kept listener's
        C{access_log} into a missing directory is refused (the log even says
        "nothing changed") but C{b} has been added to the running balancer
        and the config version is not bumped.
        """
        a, b = self.startMembers("a", "b")
        await self.startWith(configText([("a", a.url)]))
        text = configText([("a", a.url), ("b", b.url)]).replace(
            'balancer = "web"', f'balancer = "web"\naccess_log = "{self.badLog()}"', 1
        )
        result = self.reload(text)
        self.flushLoggedErrors(FileNotFoundError)
        self.assertFalse(result.ok)
        members = [m.name for m in self.service.balancers["web"].members]
        self.assertEqual(members, ["a"], "a refused reload changed the members")

    async def test_newListenerBadAccessLogIsRefused(self):
        """
        A new listener whose access log cannot be opened: the reload must be
        refused with a result (one line naming the key), not raise out of
        L{Reloader.reload} (from SIGHUP: an unhandled error in the reactor;
        from POST /api/reload: a 500 without JSON).
        """
        a = self.startMembers("a")[0]
        await self.startWith(configText([("a", a.url)]))
        text = configText([("a", a.url)], listeners=(FRONT, SECOND))
        head, sep, tail = text.rpartition('balancer = "web"\n\n[balancer')
        text = head + f'balancer = "web"\naccess_log = "{self.badLog()}"\n\n[balancer' + tail
        self.write(text)
        try:
            d = self.service.reloader.reload("test")
        except Exception as e:  # pragma: no cover - the defect
            self.fail(f"reload() raised {e!r} instead of refusing the config")
        result = self.successResultOf(d)
        self.assertFalse(result.ok)
        self.assertIn("access_log", result.error)


class ReloadProxyProtocolTests(ConfigServiceCase):
    """
    C{accept_proxy_protocol} on an HTTP listener wraps its listening port:
    a reload that changes it is refused (it needs a restart), never reported
    as applied.
    """

    async def test_acceptProxyProtocolTurnedOn(self):
        a = self.startMembers("a")[0]
        await self.startWith(configText([("a", a.url)]))
        text = configText([("a", a.url)]).replace(
            'balancer = "web"', 'balancer = "web"\naccept_proxy_protocol = true', 1
        )
        result = self.reload(text)
        self.assertFalse(result.ok)
        self.assertTrue(result.error.startswith("listen[0].accept_proxy_protocol: "), result.error)
        response, _ = await self.get("/")
        self.assertEqual(response.code, 200)


class ReloadResolverTests(ConfigServiceCase):
    """
    C{[resolver]} (the DNS servers of host-name C{allow} rules): a reload
    that changes it says so and the new servers are used.
    """

    async def test_resolverServersChange(self):
        a = self.startMembers("a")[0]
        await self.startWith(configText([("a", a.url)]) + '\n[resolver]\nservers = ["127.0.0.1:5301"]\n')
        self.assertEqual(self.service.runtime.resolver().servers, [("127.0.0.1", 5301)])
        result = self.reload(configText([("a", a.url)]) + '\n[resolver]\nservers = ["127.0.0.1:5302"]\n')
        self.assertTrue(result.ok, result.error)
        self.assertEqual(result.changes, "resolver")
        self.assertEqual(
            self.service.runtime.resolver().servers,
            [("127.0.0.1", 5302)],
            f"reload said {result.changes!r}; the old DNS servers stay in use",
        )
