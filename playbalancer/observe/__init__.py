"""
What the balancer tells about itself: per-member counters kept on the
request path (L{stats}), Prometheus metrics made from them when scraped
(L{metrics}), and the access log (L{accesslog}).
"""
