"""
Moved to L{playbalancer.http.headers}; this name stays importable for a release.
"""

import sys

from playbalancer.http import headers as _moved

sys.modules[__name__] = _moved
