"""
The one place the release number lives (setup.cfg reads it from here).
"""

__version__ = "0.1.0"


def versionLine(program):
    """
    What C{--version} prints for C{program}: its release, and the Twisted
    and Python it runs on.
    """
    import platform

    import twisted

    return (
        f"{program} {__version__} (Twisted {twisted.__version__}, "
        f"{platform.python_implementation()} {platform.python_version()})"
    )
