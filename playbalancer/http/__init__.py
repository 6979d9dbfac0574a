"""
The HTTP data path: the strict HTTP/1.1 parser (L{wire}, L{chunked}), the
header rules (L{headers}), the client faces (L{front} for HTTP/1.1
connections), one request's life (L{exchange}), one try on one member
(L{attempt}) and the rules for trying again (L{retry}), and the member
connections and pools (L{upstream}).
"""
