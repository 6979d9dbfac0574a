"""
Moved to L{playbalancer._net.readsize}; this name stays importable for a release.
"""

import sys

from playbalancer._net import readsize as _moved

sys.modules[__name__] = _moved
