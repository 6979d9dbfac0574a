"""
Moved to L{playbalancer.observe.metrics}; this name stays importable for a release.
"""

import sys

from playbalancer.observe import metrics as _moved

sys.modules[__name__] = _moved
