"""
Socket-level shortcuts that reach into Twisted's transports: plain-socket
detection (L{rawsocket}), writes sent at once (L{sendnow}), adaptive read
sizes (L{readsize}) and ALPN on TLS listeners (L{tlslisten}).  The private
Twisted attributes they use are named in L{internals}.
"""
