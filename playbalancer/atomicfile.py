"""
Replacing a file so that a crash or a power cut leaves the old one or the
new one, never half of one: the state file and the cluster cache.
"""

from __future__ import annotations

import os
import tempfile


def replaceFile(path, data, prefix=".playbalancer-", mode=None):
    """
    Replace the file at C{path} with C{data} (bytes): write a temporary
    file of a unique name in the same directory (mode 0600, or C{mode}),
    sync it, rename it over C{path} (a symbolic link there is replaced, not
    followed), then sync the directory so the rename lasts.

    @raise OSError: when any step fails; the temporary file is removed.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _syncDirectory(directory)


def _syncDirectory(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
