"""
Moved to L{playbalancer.http.chunked}; this name stays importable for a release.
"""

import sys

from playbalancer.http import chunked as _moved

sys.modules[__name__] = _moved
