"""
The manager's shared secret, read from a file by the balancer and by the
C{playbalancer} command alike.
"""

from __future__ import annotations


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
