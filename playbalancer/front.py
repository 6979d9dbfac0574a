"""
Moved to L{playbalancer.http.front}; this name stays importable for a release.
"""

import sys

from playbalancer.http import front as _moved

sys.modules[__name__] = _moved
