"""What the JSON store tests share: reading a data directory back the way a fresh instance would."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.jsondb import JsonStore


def stored(data_dir: Path) -> dict[str, dict]:
    """What a fresh instance reads from ``t.docs``, key by key (call it where no event loop runs)."""

    async def read() -> dict[str, dict]:
        store = JsonStore(data_dir).open()
        try:
            return dict(await store.collection("t.docs").items())
        finally:
            await store.close()

    return asyncio.run(read())
