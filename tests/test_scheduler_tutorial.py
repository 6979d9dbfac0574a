"""
The scheduler tutorial of the README ("Writing a scheduler") works as it
says: its module, dropin and test case are written out and run in a child
process, which finds the plugin, passes the conformance tests and prints
the simulation output the README shows (but for the wall-clock time per
pick).
"""

from __future__ import annotations

import os
import re

from twisted.trial.unittest import TestCase

from tests.pluginharness import LIST_SCHEDULERS, REPO, childEnv, describe, runChild


def tutorialBlocks():
    """
    The literal blocks of the README's "Writing a scheduler" section, in
    order, dedented.
    """
    with open(os.path.join(REPO, "README.rst"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("\nWriting a scheduler\n~~~")
    # The section ends at the next heading (a line underlined).
    following = re.search(r"\n\n[^\n]+\n(-{3,}|~{3,})\n", text[start + 1 :])
    section = text[start : start + 1 + following.start()] if following else text[start:]
    blocks = []
    lines = section.split("\n")
    for index, line in enumerate(lines):
        if line.endswith("::") and index + 1 < len(lines):
            block = []
            for later in lines[index + 1 :]:
                if later and not later.startswith("    "):
                    break
                block.append(later[4:])
            blocks.append("\n".join(block).strip("\n") + "\n")
    return blocks


class TutorialTests(TestCase):
    def test_tutorial(self):
        module, testCase, script, output = tutorialBlocks()
        self.assertIn("sticky = StickyFactory()", module)
        work = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(work, "twisted", "plugins"))
        for name, text in [
            ("sticky_scheduler.py", module),
            ("test_sticky_scheduler.py", testCase),
            ("simulate_sticky.py", script),
            (os.path.join("twisted", "plugins", "sticky_plugin.py"), "from sticky_scheduler import sticky\n"),
        ]:
            with open(os.path.join(work, name), "w") as f:
                f.write(text)
        env = childEnv(work)

        found = runChild(["-c", LIST_SCHEDULERS], env, work)
        self.assertEqual(found.returncode, 0, describe(found))
        self.assertIn('"sticky"', found.stdout)

        tested = runChild(
            ["-m", "twisted.trial", "--temp-directory", os.path.join(work, "_trial_temp"), "test_sticky_scheduler"],
            env,
            work,
        )
        self.assertEqual(tested.returncode, 0, describe(tested))
        self.assertIn("PASSED (successes=10)", tested.stdout)

        simulated = runChild(["simulate_sticky.py"], env, work)
        self.assertEqual(simulated.returncode, 0, describe(simulated))

        def steady(text):
            return [line.rstrip() for line in text.strip().splitlines() if not line.startswith("time per pick")]

        self.assertEqual(steady(simulated.stdout), steady(output))
