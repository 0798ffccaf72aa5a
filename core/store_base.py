"""What every store backend shares: the `core.store` methods, written once over a few primitives.

A backend subclasses three classes and supplies only what is its own (the
primitives, underscored; docs/backends.md walks through them):

* `BaseStore`, the store: ``_open_collection(name)``, ``transaction(prefix)``,
  and the backend's own ``ensure_index``, ``collections``, ``id_counter``,
  ``check``, ``flush`` and ``close``;
* `BaseCollection`, a collection outside any transaction: the read primitives
  of `Reads`. Its writes each run as a transaction of their own (`_alone`);
* `BaseTxCollection`, a collection inside a transaction: the read primitives,
  and ``_write`` (stage one keyed write), ``_allocate_id``, ``_raise_next_id``
  and ``_delete_matching``.

The base owns the rules, so they hold the same on every backend: names and
filters are checked (`core.store.check_name`, `core.store.check_filter`), a
document must be a dict, every document handed out is a private copy, an
insert without a key takes the next id and an insert under a numeric key moves
the id counter past it, ``delete_where`` needs a filter, and a write outside a
transaction is a transaction of its own.

A primitive answers with stored documents and says whether they are shared
(held by the backend or by other callers): the base copies exactly those, in
one JSON round trip per answer.
"""

from __future__ import annotations

from typing import Any, AsyncContextManager

from .jsoncodec import copy
from .store import Cond, Doc, KeyExists, Namespace, Store, Transaction, check_filter, check_name

MAX_ID = 2**53
"""Ids stay JSON-safe integers (exact in a double)."""

NO_FILTER = "delete_where needs a filter; delete documents one by one to empty a collection"


class _Unread:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNREAD"


UNREAD: Any = _Unread()
"""``old`` of a write whose key was not read first (a put): the backend finds the old version itself."""


def prepare(doc: Any) -> Doc:
    """The private copy of a document to store; a ``TypeError`` for anything but a dict (or not JSON)."""
    if not isinstance(doc, dict):
        raise TypeError(f"a document must be a dict, not {type(doc).__name__}")
    return copy(doc)


def moves_ids(key: str) -> bool:
    """Whether inserting under ``key`` moves the id counter past it: a numeric key that could be an id.

    A key too big to be an id (a 32-digit username, say) moves nothing: the
    counter must stay a JSON-safe integer.
    """
    return key.isascii() and key.isdigit() and int(key) < MAX_ID


def check_id_counter(at_least: Any) -> int:
    """A value the id counter may be moved to: an integer from 1 to 2**53."""
    if isinstance(at_least, bool) or not isinstance(at_least, int):
        raise TypeError(f"an id counter is an integer, not {type(at_least).__name__}")
    if not 1 <= at_least < MAX_ID:
        raise ValueError(f"an id counter must be between 1 and 2**53, not {at_least}")
    return at_least


def require_filter(conds: tuple[Any, ...], equals: dict[str, Any]) -> None:
    """Refuse a ``delete_where`` without a filter (no accidental wipe), and what is not a filter."""
    if not conds and not equals:
        raise ValueError(NO_FILTER)
    check_filter(conds, equals)


class Reads:
    """The read methods of `core.store.Collection` over a backend's read primitives."""

    name: str

    # -- primitives ------------------------------------------------------------------------

    async def _lookup(self, key: str) -> tuple[Doc | None, bool]:
        """The stored document under ``key`` (None: none), and whether it is shared."""
        raise NotImplementedError

    async def _select(self, conds: tuple[Cond, ...], equals: dict[str, Any]) -> tuple[list[Doc], bool]:
        """The stored documents matching a checked filter (none: every document), and whether they are shared."""
        raise NotImplementedError

    async def _items(self) -> tuple[list[tuple[str, Doc]], bool]:
        """Every stored ``(key, document)`` pair, and whether the documents are shared."""
        raise NotImplementedError

    async def _count(self, conds: tuple[Cond, ...], equals: dict[str, Any]) -> int:
        """How many documents match a checked filter (none: every document)."""
        raise NotImplementedError

    async def _exists(self, key: str) -> bool:
        return (await self._lookup(key))[0] is not None

    # -- the interface ---------------------------------------------------------------------

    async def get(self, key: Any) -> Doc | None:
        doc, shared = await self._lookup(str(key))
        return copy(doc) if shared and doc is not None else doc

    async def exists(self, key: Any) -> bool:
        return await self._exists(str(key))

    async def all(self) -> list[Doc]:
        docs, shared = await self._select((), {})
        return copy(docs) if shared else docs

    async def items(self) -> list[tuple[str, Doc]]:
        pairs, shared = await self._items()
        if not shared:
            return pairs
        return list(zip([k for k, _ in pairs], copy([d for _, d in pairs])))

    async def find(self, *conds: Cond, **equals: Any) -> list[Doc]:
        """Documents matching every ``field=value`` and every `Cond`."""
        check_filter(conds, equals)
        docs, shared = await self._select(conds, equals)
        return copy(docs) if shared else docs

    async def count(self, *conds: Cond, **equals: Any) -> int:
        check_filter(conds, equals)
        return await self._count(conds, equals)


class BaseCollection(Reads):
    """A collection outside any transaction: reads at once, and each write a transaction of its own."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name

    async def insert(self, doc: Doc, key: Any = None) -> Doc:
        return await self._alone("insert", doc, key)

    async def put(self, key: Any, doc: Doc) -> Doc:
        return await self._alone("put", key, doc)

    async def update(self, key: Any, changes: Doc) -> Doc | None:
        return await self._alone("update", key, changes)

    async def delete(self, key: Any) -> bool:
        return await self._alone("delete", key)

    async def delete_where(self, *conds: Cond, **equals: Any) -> int:
        require_filter(conds, equals)  # refused before any lock is taken
        return await self._alone("delete_where", *conds, **equals)

    def _one_write(self) -> AsyncContextManager[Transaction]:
        """The transaction one write outside a transaction runs in.

        A backend that can make some writes in one statement that is its own
        transaction hands out a transaction that does so (PostgreSQL's put,
        delete and insert under a key); by default it is an ordinary one.
        """
        return self.store.transaction()

    async def _alone(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """A write outside a transaction is a transaction of its own: durable when this returns."""
        async with self._one_write() as tx:
            return await getattr(tx.collection(self.name), method)(*args, **kwargs)


class BaseTxCollection(Reads):
    """A collection inside a transaction: the write rules over a backend's write primitives."""

    # -- primitives ------------------------------------------------------------------------

    async def _write(self, key: str, new: Doc | None, old: Doc | None) -> None:
        """Stage one write of ``key`` (``new`` None deletes) for the commit.

        ``old`` is the version this transaction read (None: there was none), or
        `UNREAD` when the key was not read first.
        """
        raise NotImplementedError

    async def _allocate_id(self) -> int:
        """The next automatic id of this collection, taken (the counter moves past it)."""
        raise NotImplementedError

    async def _raise_next_id(self, at_least: int) -> None:
        """Move the next automatic id to at least ``at_least`` (never back)."""
        raise NotImplementedError

    async def _delete_matching(self, conds: tuple[Cond, ...], equals: dict[str, Any]) -> int:
        """Delete every document matching a checked, non-empty filter; how many."""
        raise NotImplementedError

    async def _insert_new(self, key: str, doc: Doc) -> bool:
        """Write ``doc`` under ``key`` unless the key is taken; whether it was written."""
        if await self._exists(key):
            return False
        await self._write(key, doc, None)
        return True

    async def _delete(self, key: str) -> bool:
        """Delete the document under ``key``; whether there was one."""
        old, _ = await self._lookup(key)
        if old is None:
            return False
        await self._write(key, None, old)
        return True

    # -- the interface ---------------------------------------------------------------------

    async def insert(self, doc: Doc, key: Any = None) -> Doc:
        """Add ``doc``. Without ``key`` a fresh integer ``id`` is assigned; ids never repeat."""
        doc = prepare(doc)
        if key is None:
            new_id = await self._allocate_id()
            while await self._exists(str(new_id)):  # taken by an insert under that numeric key
                new_id = await self._allocate_id()
            doc = {"id": new_id, **doc}
            await self._write(str(new_id), doc, None)
        else:
            key = str(key)
            if moves_ids(key):
                if await self._exists(key):
                    raise KeyExists(f"{self.name}: key {key!r} exists")
                await self._raise_next_id(int(key) + 1)
                await self._write(key, doc, None)
            elif not await self._insert_new(key, doc):
                raise KeyExists(f"{self.name}: key {key!r} exists")
        return copy(doc)

    async def put(self, key: Any, doc: Doc) -> Doc:
        """Create or replace the document under ``key``."""
        doc = prepare(doc)
        await self._write(str(key), doc, UNREAD)
        return copy(doc)

    async def update(self, key: Any, changes: Doc) -> Doc | None:
        """Merge ``changes`` into the document; ``None`` if there is none."""
        key, changes = str(key), prepare(changes)
        old, _ = await self._lookup(key)
        if old is None:
            return None
        new = {**old, **changes}
        await self._write(key, new, old)
        return copy(new)

    async def delete(self, key: Any) -> bool:
        return await self._delete(str(key))

    async def delete_where(self, *conds: Cond, **equals: Any) -> int:
        """Delete every matching document; returns how many. A filter is required."""
        require_filter(conds, equals)
        return await self._delete_matching(conds, equals)

    async def advance_ids(self, at_least: int) -> None:
        """Move the next automatic id to at least ``at_least``; never back."""
        await self._raise_next_id(check_id_counter(at_least))


class BaseStore:
    """The parts of `core.store.Store` every backend shares: collection handles, namespaces, id counters."""

    backend: str

    def __init__(self) -> None:
        self._handles: dict[str, BaseCollection] = {}

    def _open_collection(self, name: str) -> BaseCollection:
        """The backend's collection outside any transaction, for a checked name."""
        raise NotImplementedError

    def transaction(self, prefix: str = "") -> AsyncContextManager[Transaction]:
        raise NotImplementedError

    def collection(self, name: str) -> BaseCollection:
        handle = self._handles.get(name)
        if handle is None:  # handlers ask on every request: check the name once, not each time
            handle = self._handles[name] = self._open_collection(check_name(name))
        return handle

    def namespace(self, prefix: str) -> Namespace:
        """A plugin's view (`core.store.Namespace`): collection names prefixed with ``prefix.``."""
        return Namespace(self, prefix)  # type: ignore[arg-type]

    async def advance_id_counter(self, collection: str, at_least: int) -> None:
        """Move the next automatic id to at least ``at_least``, as a transaction of its own (ids never go back)."""
        check_name(collection)
        if check_id_counter(at_least) > 1:  # every counter starts at 1: nothing to move
            async with self.transaction() as tx:
                await tx.collection(collection).advance_ids(at_least)  # type: ignore[attr-defined]
