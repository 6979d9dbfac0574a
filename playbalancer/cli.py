"""
Moved to L{playbalancer.ctl.cli}; this name stays importable for a release,
and C{python -m playbalancer.cli} still runs the command line.
"""

import sys

from playbalancer.ctl import cli as _moved

if __name__ == "__main__":
    # Run by -m: this module is __main__, which must stay itself.
    _moved.main()
else:
    sys.modules[__name__] = _moved
