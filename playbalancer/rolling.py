"""
Moved to L{playbalancer.ctl.rolling}; this name stays importable for a release.
"""

import sys

from playbalancer.ctl import rolling as _moved

sys.modules[__name__] = _moved
