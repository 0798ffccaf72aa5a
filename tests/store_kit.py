"""What the JSON store tests share: stores that are always closed, and reading a data directory back.

The tests of the store interface itself use the ``open_store`` fixture instead, which opens the
backend under test; these helpers are for tests of the JSON store's own files.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import AsyncIterator, Iterator

from core.jsondb import JsonStore


@contextlib.asynccontextmanager
async def closing(store: JsonStore) -> AsyncIterator[JsonStore]:
    """``async with closing(JsonStore(path).open()) as store:``: closed however the block ends."""
    try:
        yield store
    finally:
        await store.close()


@contextlib.contextmanager
def closing_sync(store: JsonStore) -> Iterator[JsonStore]:
    """The same for a test without an event loop (one that uses ``transaction_sync``)."""
    try:
        yield store
    finally:
        asyncio.run(store.close())


def stored(data_dir: Path) -> dict[str, dict]:
    """What a fresh instance reads from ``t.docs``, key by key (call it where no event loop runs)."""

    async def read() -> dict[str, dict]:
        async with closing(JsonStore(data_dir).open()) as store:
            return dict(await store.collection("t.docs").items())

    return asyncio.run(read())
