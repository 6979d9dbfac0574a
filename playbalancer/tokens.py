"""
The manager's shared secret, read from a file by the balancer and by the
C{playbalancer} command alike.
"""

from __future__ import annotations


def exposure(path):
    """
    What is wrong with who may read the token file at C{path}, or L{None}:
    a secret that group or others may read is not one.
    """
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # reading it says why
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} may be read by group or others (mode {stat.S_IMODE(mode):o}): chmod 600 it"
    return None


def readTokenFile(path):
    """
    The token in the file at C{path}, stripped; never empty.

    @raise ValueError: saying why it cannot be used.
    """
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}")
    if not token:
        raise ValueError(f"{path} is empty")
    return token
