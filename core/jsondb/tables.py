"""The in-memory tables: documents by key, the id counter, secondary indexes, and the reads over them.

Nothing here touches a file. `TableReader` answers every read of a collection
from a committed `Table` plus an overlay of changes not yet in it (a
transaction's staged writes, or writes still being fsynced); filters mean
what `core.store.matches` says.
"""

from __future__ import annotations

from typing import Any, AsyncContextManager, Iterable, Iterator, Protocol

from ..store import Cond, Doc, matches

Changes = dict[str, dict[str, "Doc | None"]]
"""Per collection, per key: the new document, or ``None`` for a delete."""


def index_key(value: Any) -> Any:
    """A hashable index key that is equal for two JSON values exactly when ``==`` holds.

    Scalars are their own keys (``1``, ``1.0`` and ``True`` are equal and hash
    alike, as ``==`` says); lists and objects become tagged tuples and frozensets
    of their members' keys, so ``[1]`` and ``[1.0]`` also meet.
    """
    if isinstance(value, list):
        return ("\0list", tuple(map(index_key, value)))
    if isinstance(value, dict):
        return ("\0dict", frozenset((k, index_key(v)) for k, v in value.items()))
    return value


class Table:
    """Committed in-memory state of one collection, with its secondary indexes."""

    __slots__ = ("docs", "next_id", "indexes")

    def __init__(self, index_fields: Iterable[str] = ()) -> None:
        self.docs: dict[str, Doc] = {}
        self.next_id = 1
        self.indexes: dict[str, dict[Any, set[str]]] = {f: {} for f in index_fields}

    def set(self, key: str, doc: Doc | None) -> None:
        """Store ``doc`` under ``key`` (``None`` deletes), keeping the indexes in step."""
        if self.indexes:
            old = self.docs.get(key)
            for field, index in self.indexes.items():
                if old is not None:
                    bucket = index.get(index_key(old.get(field)))
                    if bucket is not None:
                        bucket.discard(key)
                        if not bucket:
                            del index[index_key(old.get(field))]
                if doc is not None:
                    index.setdefault(index_key(doc.get(field)), set()).add(key)
        if doc is None:
            self.docs.pop(key, None)
        else:
            self.docs[key] = doc

    def add_index(self, field: str) -> None:
        if field in self.indexes:
            return
        index: dict[Any, set[str]] = {}
        for key, doc in self.docs.items():
            index.setdefault(index_key(doc.get(field)), set()).add(key)
        self.indexes[field] = index

    def holds_data(self) -> bool:
        """Documents, or an id counter that has moved: what a list of collections shows."""
        return bool(self.docs) or self.next_id > 1


EMPTY = Table()
"""What a collection that does not exist yet reads as (never written to)."""

NO_CHANGES: dict[str, "Doc | None"] = {}
"""The overlay of a view without changes of its own (never written to)."""


def apply(tables: dict[str, Table], changes: Changes, ids: dict[str, int], index_fields: dict[str, set[str]]) -> None:
    """Apply one transaction's changes and id counters; a new table gets the indexes ``index_fields`` names."""
    for name, docs in changes.items():
        table = tables.get(name)
        if table is None:
            table = tables[name] = Table(index_fields.get(name, ()))
        for key, doc in docs.items():
            table.set(key, doc)
    for name, next_id in ids.items():
        table = tables.get(name)
        if table is None:
            table = tables[name] = Table(index_fields.get(name, ()))
        table.next_id = max(table.next_id, next_id)


class TableSource(Protocol):
    """What the collection views read from (`JsonStore`): committed tables, and changes still being fsynced."""

    def table(self, name: str) -> Table:
        """The committed table, after catching up with other processes."""
        ...

    def committed(self, name: str) -> Table:
        """The committed table as it is (inside a transaction: caught up already)."""
        ...

    def in_flight(self, name: str) -> dict[str, Doc | None]:
        """Committed changes still being fsynced, by key (``None``: deleted)."""
        ...

    def in_flight_next_id(self, name: str) -> int:
        """The id counter as the changes still being fsynced leave it (0: they leave it alone)."""
        ...

    def transaction(self, prefix: str = "") -> AsyncContextManager[Any]: ...


class TableReader:
    """The read primitives (`core.store_base.Reads`) over a committed table plus an overlay of newer changes.

    All from memory: the coroutines never wait. The documents are the stored
    ones (shared): the base hands out copies.
    """

    name: str

    def _base(self) -> Table:
        raise NotImplementedError

    def _overlay(self) -> dict[str, Doc | None]:
        """Changes not yet in the committed table (newest wins); ``None`` marks a delete."""
        return NO_CHANGES

    def _doc(self, key: str) -> Doc | None:
        overlay = self._overlay()
        if key in overlay:
            return overlay[key]
        return self._base().docs.get(key)

    def _pairs(self) -> Iterator[tuple[str, Doc]]:
        base, overlay = self._base(), self._overlay()
        if not overlay:
            yield from base.docs.items()
            return
        for key, doc in base.docs.items():
            if key not in overlay:
                yield key, doc
        for key, staged in overlay.items():
            if staged is not None:
                yield key, staged

    def _matching(self, conds: tuple[Cond, ...], equals: dict[str, Any]) -> list[tuple[str, Doc]]:
        """Matching ``(key, stored document)`` pairs; an indexed equality field avoids the scan."""
        base = self._base()
        field = next((f for f in equals if f in base.indexes), None)
        if field is None:
            return [(k, d) for k, d in self._pairs() if matches(d, conds, equals)]
        try:
            indexed = base.indexes[field].get(index_key(equals[field]), ())
        except TypeError:  # an unhashable value (a set, say) equals no JSON value
            return []
        overlay = self._overlay()
        keys = list(indexed) + [k for k in overlay if k not in indexed]
        out = []
        for key in keys:
            doc = overlay[key] if key in overlay else base.docs.get(key)
            if doc is not None and matches(doc, conds, equals):
                out.append((key, doc))
        return out

    async def _lookup(self, key: str) -> tuple[Doc | None, bool]:
        return self._doc(key), True

    async def _select(self, conds: tuple[Cond, ...], equals: dict[str, Any]) -> tuple[list[Doc], bool]:
        if not conds and not equals:
            overlay = self._overlay()
            if not overlay:  # a live collection: the table as it is
                return list(self._base().docs.values()), True
            return [doc for _, doc in self._pairs()], True
        return [doc for _, doc in self._matching(conds, equals)], True

    async def _items(self) -> tuple[list[tuple[str, Doc]], bool]:
        return list(self._pairs()), True

    async def _count(self, conds: tuple[Cond, ...], equals: dict[str, Any]) -> int:
        if conds or equals:
            return len(self._matching(conds, equals))
        overlay = self._overlay()
        docs = self._base().docs
        return len(docs) + sum((doc is not None) - (key in docs) for key, doc in overlay.items())
