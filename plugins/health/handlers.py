"""200 with the store's health while it can write; 503 when it cannot (or cannot be reached)."""

from __future__ import annotations

import os

from core.plugin import BaseHandler, Health, StoreError, public


@public
class HealthHandler(BaseHandler):
    async def get(self) -> None:
        """``{"status", "worker": {index, pid}, "store": {backend, writable, error, <backend>: {...}}}``.

        The store keys are the same on every backend; ``worker`` names the
        process that answered (index 0 under ``WORKERS=1``).
        """
        store = self.services.store
        try:
            health = await store.check()
        except StoreError as exc:  # a backend that cannot even answer is unhealthy, not an error of ours
            health = Health(backend=store.backend, writable=False, error=str(exc) or type(exc).__name__)
        healthy = health.writable
        self.set_header("Cache-Control", "no-store")
        worker = {"index": self.services.settings.worker_index, "pid": os.getpid()}
        self.send_json(
            {"status": "ok" if healthy else "unavailable", "worker": worker, "store": health.public()}, 200 if healthy else 503
        )
