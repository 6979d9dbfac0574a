"""
Keep Twisted's dropin cache honest.

Twisted re-reads a plugin module only when its modification time is newer
than C{dropin.cache}.  A dropin replaced by a file with an older time
(C{tar -x}, C{cp -p}, C{rsync -t}, some package installs) keeps its stale
cache entry, which can hide a plugin.  The change time (ctime) of a file
cannot be set back, so a cache older than any module's mtime or ctime is
removed, and Twisted writes a fresh one at the next lookup.
"""

from __future__ import annotations

import os
from importlib.machinery import all_suffixes


def dropStaleCaches(package=None):
    """
    Remove every C{dropin.cache} of C{package} (default: C{twisted.plugins})
    older than a module beside it.  Best effort: an unwritable directory is
    left as it is.
    """
    if package is None:
        import twisted.plugins as package
    suffixes = tuple(all_suffixes())
    for directory in getattr(package, "__path__", []):
        cache = os.path.join(directory, "dropin.cache")
        try:
            cachedAt = os.stat(cache).st_mtime
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if not name.endswith(suffixes):
                continue
            try:
                info = os.stat(os.path.join(directory, name))
            except OSError:
                continue
            if max(info.st_mtime, info.st_ctime) >= cachedAt:
                try:
                    os.remove(cache)
                except OSError:
                    pass
                break
