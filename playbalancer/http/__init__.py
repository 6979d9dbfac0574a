"""
The HTTP data path: the strict HTTP/1.1 parsers (L{wire}, L{chunked}) and
header rules (L{headers}); the HTTP/1.1 client face (L{front}, reading with
L{headreader} and L{bodyreader}, writing with L{responsewriter}); one
request's life (L{exchange}), one try on one member (L{attempt}) and the
rules for trying again (L{retry}); and the member connections and their
pools (L{upstream}).  The twisted.web face is L{playbalancer.resource}.
"""
