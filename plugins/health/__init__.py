"""``GET /healthz``: public liveness and store health for load balancers and orchestrators."""

from .handlers import HealthHandler

routes = [(r"/healthz", HealthHandler)]
