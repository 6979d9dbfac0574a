"""
Moved to L{playbalancer.ctl.client}; this name stays importable for a release.
"""

import sys

from playbalancer.ctl import client as _moved

sys.modules[__name__] = _moved
