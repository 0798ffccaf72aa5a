"""200 with the store's health while it can write; 503 when it cannot (or cannot be reached)."""

from __future__ import annotations

from core.base import BaseHandler
from core.store import Health, StoreError


class HealthHandler(BaseHandler):
    public = True

    async def get(self) -> None:
        """``{"status", "store": {backend, writable, error, <backend>: {...}}}``: the same keys on every backend."""
        store = self.services.store
        try:
            health = await store.check()
        except StoreError as exc:  # a backend that cannot even answer is unhealthy, not an error of ours
            health = Health(backend=store.backend, writable=False, error=str(exc) or type(exc).__name__)
        healthy = health.writable
        self.set_header("Cache-Control", "no-store")
        self.send_json({"status": "ok" if healthy else "unavailable", "store": health.public()}, 200 if healthy else 503)
