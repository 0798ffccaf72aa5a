"""``GET /metrics``: Prometheus metrics (the text format), for the operator's scraper only.

With ``METRICS_TOKEN`` set, only ``Authorization: Bearer <METRICS_TOKEN>`` gets
an answer; without it, only loopback clients do. Anyone else gets the same
404 as an unknown path, so the endpoint does not reveal itself.
"""

from .handlers import MetricsHandler

routes = [(r"/metrics", MetricsHandler)]
