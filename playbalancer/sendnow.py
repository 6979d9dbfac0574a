"""
Moved to L{playbalancer._net.sendnow}; this name stays importable for a release.
"""

import sys

from playbalancer._net import sendnow as _moved

sys.modules[__name__] = _moved
