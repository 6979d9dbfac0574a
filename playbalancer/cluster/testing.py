"""
Moved to L{playbalancer.testing.etcd}; this name stays importable for a release.
"""

import sys

from playbalancer.testing import etcd as _moved

sys.modules[__name__] = _moved
