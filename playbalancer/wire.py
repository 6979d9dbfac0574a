"""
Moved to L{playbalancer.http.wire}; this name stays importable for a release.
"""

import sys

from playbalancer.http import wire as _moved

sys.modules[__name__] = _moved
