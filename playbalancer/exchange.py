"""
Moved to L{playbalancer.http.exchange}; this name stays importable for a release.
"""

import sys

from playbalancer.http import exchange as _moved

sys.modules[__name__] = _moved
