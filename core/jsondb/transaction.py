"""A transaction: staged writes, the collection views that read through them, and the journal line they become.

`JsonStore.transaction` hands out a `Transaction` whose collections are
awaited (`TxCollection`); `JsonStore.transaction_sync` a `SyncTransaction`
whose collections block (`SyncTxCollection`). Both read the committed tables,
then the writes still being fsynced, then the transaction's own.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from ..store import Cond, Doc, KeyExists, check_name
from .codec import copy, dumps
from .tables import EMPTY, Changes, Table, TableReader

if TYPE_CHECKING:
    from .store import JsonStore

NO_FILTER = "delete_where needs a filter; delete documents one by one to empty a collection"
MAX_ID = 2**53
"""Ids stay JSON-safe integers (exact in a double)."""


class SyncTxCollection(TableReader):
    """A collection inside a transaction, with blocking methods: reads see staged and in-flight writes."""

    def __init__(self, tx: "Transaction", name: str) -> None:
        self._tx = tx
        self.name = name

    def _base(self) -> Table:
        return self._tx._store._tables.get(self.name) or EMPTY

    def _overlay(self) -> dict[str, Doc | None]:
        pending = self._tx._store._pending_view.get(self.name)
        staged = self._tx._staged.get(self.name)
        if pending and staged:
            return {**pending, **staged}
        return staged or pending or {}

    def _stage(self, key: str, doc: Doc | None) -> None:
        self._tx._staged.setdefault(self.name, {})[key] = doc

    def _next_id(self) -> int:
        return max(
            self._tx._ids.get(self.name, 0),
            self._tx._store._pending_ids.get(self.name, 0),
            self._base().next_id,
        )

    @staticmethod
    def _prepare(doc: Doc) -> Doc:
        if not isinstance(doc, dict):
            raise TypeError(f"a document must be a dict, not {type(doc).__name__}")
        return copy(doc)

    def get(self, key: Any) -> Doc | None:
        return self._get(key)

    def exists(self, key: Any) -> bool:
        return self._exists(key)

    def all(self) -> list[Doc]:
        return self._all()

    def items(self) -> list[tuple[str, Doc]]:
        return self._pairs()

    def find(self, *conds: Cond, **equals: Any) -> list[Doc]:
        return self._find(conds, equals)

    def count(self, *conds: Cond, **equals: Any) -> int:
        return self._count(conds, equals)

    def insert(self, doc: Doc, key: Any = None) -> Doc:
        """Add ``doc``. Without ``key`` a fresh integer ``id`` is assigned; ids never repeat."""
        doc = self._prepare(doc)
        if key is None:
            new_id = self._next_id()
            while self._lookup(str(new_id)) is not None:
                new_id += 1
            doc = {"id": new_id, **doc}
            key = str(new_id)
            self._tx._ids[self.name] = new_id + 1
        else:
            key = str(key)
            if self._lookup(key) is not None:
                raise KeyExists(f"{self.name}: key {key!r} exists")
            # A numeric key moves the id counter past it, unless it is too big to be an id
            # (a 32-digit username, say): the counter must stay a JSON-safe integer.
            if key.isascii() and key.isdigit() and int(key) < MAX_ID:
                self._tx._ids[self.name] = max(self._next_id(), int(key) + 1)
        self._stage(key, doc)
        return copy(doc)

    def put(self, key: Any, doc: Doc) -> Doc:
        """Create or replace the document under ``key``."""
        doc = self._prepare(doc)
        self._stage(str(key), doc)
        return copy(doc)

    def update(self, key: Any, changes: Doc) -> Doc | None:
        """Merge ``changes`` into the document; ``None`` if there is none."""
        current = self._lookup(str(key))
        if current is None:
            return None
        updated = {**current, **self._prepare(changes)}
        self._stage(str(key), updated)
        return copy(updated)

    def delete(self, key: Any) -> bool:
        if self._lookup(str(key)) is None:
            return False
        self._stage(str(key), None)
        return True

    def delete_where(self, *conds: Cond, **equals: Any) -> int:
        """Delete every matching document; returns how many. A filter is required."""
        if not conds and not equals:
            raise ValueError(NO_FILTER)
        doomed = [key for key, _ in self._select(conds, equals)]
        for key in doomed:
            self._stage(key, None)
        return len(doomed)

    def advance_ids(self, at_least: int) -> None:
        """Move the next automatic id to at least ``at_least``; never back."""
        if isinstance(at_least, bool) or not isinstance(at_least, int):
            raise TypeError(f"an id counter is an integer, not {type(at_least).__name__}")
        if not 1 <= at_least < MAX_ID:
            raise ValueError(f"an id counter must be between 1 and 2**53, not {at_least}")
        if at_least > self._next_id():
            self._tx._ids[self.name] = at_least


class TxCollection:
    """A collection inside an ``async`` transaction: the `core.store.Collection` methods, awaited."""

    __slots__ = ("name", "_view")

    def __init__(self, view: SyncTxCollection) -> None:
        self.name = view.name
        self._view = view

    async def get(self, key: Any) -> Doc | None:
        return self._view._get(key)

    async def exists(self, key: Any) -> bool:
        return self._view._exists(key)

    async def all(self) -> list[Doc]:
        return self._view._all()

    async def items(self) -> list[tuple[str, Doc]]:
        return self._view._pairs()

    async def find(self, *conds: Cond, **equals: Any) -> list[Doc]:
        return self._view._find(conds, equals)

    async def count(self, *conds: Cond, **equals: Any) -> int:
        return self._view._count(conds, equals)

    async def insert(self, doc: Doc, key: Any = None) -> Doc:
        return self._view.insert(doc, key)

    async def put(self, key: Any, doc: Doc) -> Doc:
        return self._view.put(key, doc)

    async def update(self, key: Any, changes: Doc) -> Doc | None:
        return self._view.update(key, changes)

    async def delete(self, key: Any) -> bool:
        return self._view.delete(key)

    async def delete_where(self, *conds: Cond, **equals: Any) -> int:
        return self._view.delete_where(*conds, **equals)


class Entry:
    """One committed transaction on its way to disk."""

    __slots__ = ("changes", "ids", "line", "future")

    def __init__(self, changes: Changes, ids: dict[str, int], line: bytes) -> None:
        self.changes = changes
        self.ids = ids
        self.line = line
        self.future: asyncio.Future[None] | None = None


class Transaction:
    """Staged changes; applied by `JsonStore.transaction` on success."""

    def __init__(self, store: "JsonStore", prefix: str = "") -> None:
        self._store = store
        self._prefix = prefix
        self._staged: Changes = {}
        self._ids: dict[str, int] = {}

    def collection(self, name: str) -> TxCollection:
        return TxCollection(self.sync_collection(name))

    def sync_collection(self, name: str) -> SyncTxCollection:
        """The blocking view of a collection (what the store's own one-write transactions use)."""
        return SyncTxCollection(self, check_name(self._prefix + name))

    def entry(self) -> Entry | None:
        """The journal line of what was staged; ``None`` when nothing was."""
        staged = {name: ops for name, ops in self._staged.items() if ops}
        if not staged and not self._ids:
            return None
        ops = [{"c": name, "k": key, "v": doc} for name, changes in staged.items() for key, doc in changes.items()]
        record: dict[str, Any] = {"at": round(time.time(), 3), "ops": ops}
        if self._ids:
            record["ids"] = self._ids
        return Entry(staged, dict(self._ids), dumps(record) + b"\n")


class SyncTransaction(Transaction):
    """The transaction `JsonStore.transaction_sync` yields: its collections block instead of awaiting."""

    def collection(self, name: str) -> SyncTxCollection:  # type: ignore[override]
        return self.sync_collection(name)
