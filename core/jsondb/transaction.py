"""A transaction: staged writes, the collection views that read through them, and the journal line they become.

`JsonStore.transaction` hands out a `Transaction`, whose collections
(`TxCollection`) read the committed tables, then the writes still being
fsynced, then the transaction's own; the rules of every write are in
`core.store_base`. `JsonStore.transaction_sync` hands out a
`SyncTransaction`, whose collections run the same methods to their end at
once (`BlockingCollection`): nothing in a JSON-store transaction ever waits.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Callable, Coroutine, TypeVar

from ..jsoncodec import dumps
from ..store import Cond, Doc, check_name
from ..store_base import BaseTxCollection
from .tables import NO_CHANGES, Changes, Table, TableReader, TableSource

T = TypeVar("T")


class TxCollection(TableReader, BaseTxCollection):
    """A collection inside a transaction: reads see the transaction's staged writes and those still being fsynced."""

    def __init__(self, tx: "Transaction", name: str) -> None:
        self.tx = tx
        self.name = name

    def _base(self) -> Table:
        return self.tx.store.committed(self.name)

    def _overlay(self) -> dict[str, Doc | None]:
        pending = self.tx.store.in_flight(self.name)
        staged = self.tx.staged.get(self.name)
        if pending and staged:
            return {**pending, **staged}
        return staged or pending or NO_CHANGES

    def _next_id(self) -> int:
        return max(self.tx.ids.get(self.name, 0), self.tx.store.in_flight_next_id(self.name), self._base().next_id)

    # -- write primitives (`core.store_base.BaseTxCollection`) ----------------------------------

    async def _write(self, key: str, new: Doc | None, old: Doc | None) -> None:
        self.tx.staged.setdefault(self.name, {})[key] = new

    async def _allocate_id(self) -> int:
        new_id = self._next_id()
        self.tx.ids[self.name] = new_id + 1
        return new_id

    async def _raise_next_id(self, at_least: int) -> None:
        if at_least > self._next_id():
            self.tx.ids[self.name] = at_least

    async def _delete_matching(self, conds: tuple[Cond, ...], equals: dict[str, Any]) -> int:
        doomed = [key for key, _ in self._matching(conds, equals)]
        staged = self.tx.staged.setdefault(self.name, {})
        for key in doomed:
            staged[key] = None
        return len(doomed)


def run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never waits (a JSON-store transaction's), without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a JSON-store transaction method waited; it cannot run without an event loop")


class BlockingCollection:
    """A transaction's collection for `JsonStore.transaction_sync`: the same methods, blocking instead of awaited."""

    __slots__ = ("_coll", "name")

    def __init__(self, coll: TxCollection) -> None:
        self._coll = coll
        self.name = coll.name

    def __getattr__(self, method: str) -> Callable[..., Any]:
        call = getattr(self._coll, method)
        if method.startswith("_") or not inspect.iscoroutinefunction(call):
            raise AttributeError(method)
        return lambda *args, **kwargs: run_now(call(*args, **kwargs))


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

    def __init__(self, store: TableSource, prefix: str = "") -> None:
        self.store = store
        self.prefix = prefix
        self.staged: Changes = {}
        self.ids: dict[str, int] = {}

    def collection(self, name: str) -> TxCollection:
        return TxCollection(self, check_name(self.prefix + name))

    def entry(self) -> Entry | None:
        """The journal line of what was staged; ``None`` when nothing was."""
        staged = {name: ops for name, ops in self.staged.items() if ops}
        if not staged and not self.ids:
            return None
        ops = [{"c": name, "k": key, "v": doc} for name, changes in staged.items() for key, doc in changes.items()]
        record: dict[str, Any] = {"at": round(time.time(), 3), "ops": ops}
        if self.ids:
            record["ids"] = self.ids
        return Entry(staged, dict(self.ids), dumps(record) + b"\n")


class SyncTransaction(Transaction):
    """The transaction `JsonStore.transaction_sync` yields: its collections block instead of awaiting."""

    def collection(self, name: str) -> BlockingCollection:  # type: ignore[override]
        return BlockingCollection(super().collection(name))
