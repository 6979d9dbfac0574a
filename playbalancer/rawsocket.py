"""
Moved to L{playbalancer._net.rawsocket}; this name stays importable for a release.
"""

import sys

from playbalancer._net import rawsocket as _moved

sys.modules[__name__] = _moved
