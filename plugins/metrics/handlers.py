"""The metrics endpoint: public with respect to JWTs, with an access check of its own."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from tornado import httputil
from tornado.web import HTTPError

from core.plugin import METRICS_CONTENT_TYPE, BaseHandler, public


def peer_address(request: httputil.HTTPServerRequest) -> str:
    """The socket peer's IP: never a forwarding header, even if ``xheaders`` were turned on."""
    address = getattr(getattr(request.connection, "context", None), "address", None)
    if isinstance(address, tuple) and address:
        return str(address[0])
    return request.remote_ip or ""


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def may_read_metrics(request: httputil.HTTPServerRequest, token: str) -> bool:
    """``token`` set: the request must carry it as a bearer token. Unset: loopback clients only."""
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    return is_loopback(peer_address(request))


@public
class MetricsHandler(BaseHandler):
    openapi: dict[str, dict[str, Any]] = {
        "get": {
            "summary": "Prometheus metrics, text format (METRICS_TOKEN as a bearer token, or loopback clients when unset).",
            "responses": {
                "200": {"description": "The metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}},
                "404": {"description": "Not allowed (answered like an unknown path)."},
            },
        }
    }

    def get(self) -> None:
        if not may_read_metrics(self.request, self.services.settings.metrics_token):
            raise HTTPError(404)
        self.set_header("Content-Type", METRICS_CONTENT_TYPE)
        self.finish(self.services.metrics.render())
