"""
Moved to L{playbalancer.testing.faultmember}; this name stays importable for a release.
"""

import sys

from playbalancer.testing import faultmember as _moved

sys.modules[__name__] = _moved
