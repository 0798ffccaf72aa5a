"""A live collection: reads answered from the committed tables at once, writes as one-write transactions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..store import Cond, Doc
from .codec import copy
from .tables import EMPTY, Table, TableReader
from .transaction import NO_FILTER

if TYPE_CHECKING:
    from .store import JsonStore


class Collection(TableReader):
    """A live collection: reads from memory (the ``async`` methods return at once), durable writes."""

    def __init__(self, store: "JsonStore", name: str) -> None:
        self._store = store
        self.name = name

    def _base(self) -> Table:
        self._store._refresh()  # catch up with other processes first (free when nothing changed)
        return self._store._tables.get(self.name) or EMPTY

    def _lookup(self, key: str) -> Doc | None:
        return self._base().docs.get(key)  # no overlay to consult: straight to the table

    async def get(self, key: Any) -> Doc | None:
        doc = self._base().docs.get(str(key))
        return copy(doc) if doc is not None else None

    async def exists(self, key: Any) -> bool:
        return str(key) in self._base().docs

    async def all(self) -> list[Doc]:
        # A live collection has no overlay of staged changes: copy the table directly.
        return copy(list(self._base().docs.values()))

    async def items(self) -> list[tuple[str, Doc]]:
        return self._pairs()

    async def find(self, *conds: Cond, **equals: Any) -> list[Doc]:
        """Documents matching every ``field=value`` and every `Cond`.

        O(1) plus the matches when one of the equality fields is indexed (`JsonStore.ensure_index`).
        """
        return self._find(conds, equals)

    async def count(self, *conds: Cond, **equals: Any) -> int:
        if not conds and not equals:
            return len(self._base().docs)
        return self._count(conds, equals)

    async def insert(self, doc: Doc, key: Any = None) -> Doc:
        async with self._store.transaction() as tx:
            return tx.sync_collection(self.name).insert(doc, key)

    async def put(self, key: Any, doc: Doc) -> Doc:
        async with self._store.transaction() as tx:
            return tx.sync_collection(self.name).put(key, doc)

    async def update(self, key: Any, changes: Doc) -> Doc | None:
        async with self._store.transaction() as tx:
            return tx.sync_collection(self.name).update(key, changes)

    async def delete(self, key: Any) -> bool:
        async with self._store.transaction() as tx:
            return tx.sync_collection(self.name).delete(key)

    async def delete_where(self, *conds: Cond, **equals: Any) -> int:
        if not conds and not equals:  # refuse before taking the lock
            raise ValueError(NO_FILTER)
        async with self._store.transaction() as tx:
            return tx.sync_collection(self.name).delete_where(*conds, **equals)
