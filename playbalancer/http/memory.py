"""
Moved to L{playbalancer.testing.exchange}; this name stays importable for a release.
"""

import sys

from playbalancer.testing import exchange as _moved

sys.modules[__name__] = _moved
