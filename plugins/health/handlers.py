"""200 with the store's state while it can write; 503 when it cannot."""

from __future__ import annotations

from core.base import BaseHandler


class HealthHandler(BaseHandler):
    public = True

    async def get(self) -> None:
        store = await self.services.store.check()
        store.pop("data_dir", None)  # no file-system paths on a public endpoint
        healthy = bool(store["writable"])
        self.set_header("Cache-Control", "no-store")
        self.send_json({"status": "ok" if healthy else "unavailable", "store": store}, 200 if healthy else 503)
