"""
A progress bar under the lines a command prints, on a terminal only: the
bar is the last line, redrawn in place after each new line; anywhere else
(a pipe, a file, a test's buffer) there is no bar, only the lines.
"""

from __future__ import annotations

__all__ = ["ProgressBar"]

#: Return to the line's start and clear it.
_CLEAR = "\r\x1b[K"


def _isTerminal(out):
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


class ProgressBar:
    """
    C{[########------------] 2/5 members} below the lines written through
    L{line}, when C{out} is a terminal.
    """

    def __init__(self, out, total, width=20, what="members"):
        self.out = out
        self.total = total
        self.done = 0
        self.width = width
        self.what = what
        self.terminal = _isTerminal(out)
        self._shown = False

    def text(self):
        filled = round(self.width * self.done / self.total) if self.total else self.width
        return f"[{'#' * filled}{'-' * (self.width - filled)}] {self.done}/{self.total} {self.what}"

    def hide(self):
        """
        Take the bar off its line (before output the bar does not know of).
        """
        if self._shown:
            self.out.write(_CLEAR)
            self.out.flush()
            self._shown = False

    def line(self, text):
        """
        Write one line, and the bar again below it.
        """
        self.hide()
        self.out.write(text + "\n")
        self._draw()

    def advance(self):
        self.done = min(self.total, self.done + 1)
        self.hide()
        self._draw()

    def _draw(self):
        if self.terminal:
            self.out.write(self.text())
            self._shown = True
        self.out.flush()
