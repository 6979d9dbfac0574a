"""
Moved to L{playbalancer.observe.stats}; this name stays importable for a release.
"""

import sys

from playbalancer.observe import stats as _moved

sys.modules[__name__] = _moved
