"""
Moved to L{playbalancer._net.tlslisten}; the old name still imports it.
"""

from playbalancer._net.tlslisten import (
    HTTP_PROTOCOLS,
    NoCommonProtocol,
    negotiateProtocols,
    protocolsOf,
    selector,
)

__all__ = ["HTTP_PROTOCOLS", "NoCommonProtocol", "protocolsOf", "selector", "negotiateProtocols"]
