"""
Moved to L{playbalancer._net.tlslisten}; this name stays importable for a release.
"""

import sys

from playbalancer._net import tlslisten as _moved

sys.modules[__name__] = _moved
