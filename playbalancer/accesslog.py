"""
Moved to L{playbalancer.observe.accesslog}; this name stays importable for a release.
"""

import sys

from playbalancer.observe import accesslog as _moved

sys.modules[__name__] = _moved
