"""
Moved to L{playbalancer.http.upstream}; this name stays importable for a release.
"""

import sys

from playbalancer.http import upstream as _moved

sys.modules[__name__] = _moved
