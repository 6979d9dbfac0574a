"""
The C{playbalancer} control command: the manager API client (L{client}),
the command line (L{cli}) and rolling restarts (L{rolling}).  Nothing on
the data path imports this package.
"""
