"""A live collection: reads answered from the committed tables at once, each write a transaction of its own."""

from __future__ import annotations

from ..store import Doc
from ..store_base import BaseCollection
from .tables import Table, TableReader, TableSource


class Collection(TableReader, BaseCollection):
    """A live collection: reads from memory (the ``async`` methods return at once), durable writes."""

    store: TableSource  # type: ignore[assignment]

    def _base(self) -> Table:
        return self.store.table(self.name)

    async def _lookup(self, key: str) -> tuple[Doc | None, bool]:
        return self.store.table(self.name).docs.get(key), True  # no overlay to consult: straight to the table

    async def _exists(self, key: str) -> bool:
        return key in self.store.table(self.name).docs
