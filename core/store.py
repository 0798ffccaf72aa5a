"""The store interface: the one way the core, the CLI and plugins reach persisted data.

This module names no backend. Two implement it, on the shared base in
`core.store_base`, and nothing outside them imports a backend class:

* `core.jsondb`: the embedded JSON store in ``DATA_DIR`` (the default);
* `core.pg`: PostgreSQL, selected by ``DATABASE_URL``.

`core.backends.open_store` picks one from the settings (docs/backends.md says
how to add a third). The model is tinydb's: a `Store` holds named collections
of JSON documents, each under a string key.

* Every read is awaited, inside a transaction or not: ``await
  coll.get(key)``, ``await coll.find(username="alice")``.
* Filters are data, never Python callables, so that each backend runs them
  where the data is: ``field=value`` keywords test equality (a missing field
  equals ``None``), and `where` builds the few comparisons callers need,
  ``where("expires") < now``. A comparison holds only when the field has a
  value of the same kind (number with number, string with string), as in SQL.
  `matches` is that meaning, which every backend keeps (`check_filter`
  refuses anything else). ``ensure_index(field)`` makes equality on
  ``field`` cheap.
* ``async with store.transaction() as tx:`` is the one read-modify-write
  path. Reads through ``tx.collection(name)`` see the transaction's own
  writes; the writes become durable and visible together when the block
  exits, or not at all if it raises. A transaction is atomic against every
  other transaction, in this process and in every other process or instance
  sharing the data. Keep bodies short and free of slow work (no bcrypt).
* A write outside a transaction (``await coll.insert(doc)``) is a transaction
  of its own. It returns only once the change is durable.
* ``insert(doc)`` without a key assigns ``doc["id"]``, an integer that never
  repeats in that collection, even after deletes, restarts and a copy to
  another backend.

Documents handed out are private copies: changing one changes nothing stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, AsyncContextManager, Iterable, Protocol, runtime_checkable

Doc = dict[str, Any]
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
FIELD_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OPERATORS = ("<", "<=", ">", ">=", "!=")


class StoreError(Exception):
    """Base class for store failures."""


class StoreCorrupt(StoreError):
    """Stored data cannot be read; the message names where and what."""


class KeyExists(StoreError):
    """``insert`` with a key that is already taken."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached right now; the request may be retried (HTTP 503 with ``Retry-After``).

    Nothing was acknowledged: a transaction that raises this did not commit,
    or its outcome was never reported as a success.
    """

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def check_name(name: str) -> str:
    """A collection name: dotted lowercase words (``auth.users``)."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"invalid collection name {name!r}: use dotted lowercase words")
    return name


def check_field(name: str) -> str:
    """A field name usable in a filter or an index: letters, digits and ``_``."""
    if not isinstance(name, str) or not FIELD_PATTERN.match(name):
        raise ValueError(f"invalid field name {name!r}: use letters, digits and _")
    return name


# -- filters: data, not functions ------------------------------------------------------


@dataclass(frozen=True)
class Cond:
    """One comparison of a document field with a value: ``Cond("expires", "<", 1700000000)``."""

    field: str
    op: str
    value: int | float | str

    def __post_init__(self) -> None:
        check_field(self.field)
        if self.op not in OPERATORS:
            raise ValueError(f"unknown operator {self.op!r}; use one of {', '.join(OPERATORS)}")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float, str)):
            raise TypeError(f"a comparison needs a number or a string, not {type(self.value).__name__}")

    def test(self, doc: Doc) -> bool:
        """Whether ``doc`` satisfies this comparison (a value of another kind never does)."""
        have = doc.get(self.field)
        if isinstance(have, bool) or have is None:
            return False
        if isinstance(self.value, str) != isinstance(have, str) or not isinstance(have, (int, float, str)):
            return False
        if self.op == "<":
            return have < self.value
        if self.op == "<=":
            return have <= self.value
        if self.op == ">":
            return have > self.value
        if self.op == ">=":
            return have >= self.value
        return have != self.value


class where:  # noqa: N801 - reads as a keyword: where("expires") < now
    """Builds a `Cond`: ``where("expires") < now``."""

    __slots__ = ("field",)

    def __init__(self, field: str) -> None:
        self.field = check_field(field)

    def __lt__(self, value: Any) -> Cond:
        return Cond(self.field, "<", value)

    def __le__(self, value: Any) -> Cond:
        return Cond(self.field, "<=", value)

    def __gt__(self, value: Any) -> Cond:
        return Cond(self.field, ">", value)

    def __ge__(self, value: Any) -> Cond:
        return Cond(self.field, ">=", value)

    def __ne__(self, value: Any) -> Cond:  # type: ignore[override]
        return Cond(self.field, "!=", value)


def matches(doc: Doc, conds: Iterable[Cond], equals: dict[str, Any]) -> bool:
    """The meaning of a filter: every ``field=value`` and every `Cond` holds (a missing field equals ``None``).

    Backends that test documents in Python call this, once per document of a
    scan; SQL backends compile filters to statements with the same meaning.
    """
    for name, value in equals.items():
        if doc.get(name) != value:
            return False
    for cond in conds:
        if not cond.test(doc):
            return False
    return True


_CHECKED_FIELDS: set[str] = set()


def check_filter(conds: tuple[Any, ...], equals: dict[str, Any]) -> None:
    """Refuse what is not a filter (a Python callable, say) before it silently matches nothing."""
    for cond in conds:
        if not isinstance(cond, Cond):
            raise TypeError(f"a filter is a Cond (where('field') < value) or field=value, not {type(cond).__name__}")
    for name in equals:
        if name not in _CHECKED_FIELDS:  # checked once per name: finds run on every request
            _CHECKED_FIELDS.add(check_field(name))


# -- the interface ---------------------------------------------------------------------


@runtime_checkable
class Collection(Protocol):
    """A named set of documents. The same methods serve inside and outside a transaction."""

    name: str

    async def get(self, key: Any) -> Doc | None: ...

    async def exists(self, key: Any) -> bool: ...

    async def all(self) -> list[Doc]: ...

    async def items(self) -> list[tuple[str, Doc]]:
        """Every ``(key, document)`` pair (for copies and exports)."""
        ...

    async def find(self, *conds: Cond, **equals: Any) -> list[Doc]:
        """Documents matching every ``field=value`` and every `Cond`."""
        ...

    async def count(self, *conds: Cond, **equals: Any) -> int: ...

    async def insert(self, doc: Doc, key: Any = None) -> Doc:
        """Add ``doc``; without ``key`` a fresh integer ``id`` is assigned. `KeyExists` if taken."""
        ...

    async def put(self, key: Any, doc: Doc) -> Doc:
        """Create or replace the document under ``key``."""
        ...

    async def update(self, key: Any, changes: Doc) -> Doc | None:
        """Merge ``changes`` into the document; ``None`` if there is none."""
        ...

    async def delete(self, key: Any) -> bool: ...

    async def delete_where(self, *conds: Cond, **equals: Any) -> int:
        """Delete every matching document; how many. A filter is required (no accidental wipe)."""
        ...


class Transaction(Protocol):
    """Collections seen through one transaction."""

    def collection(self, name: str) -> Collection: ...


@dataclass
class Health:
    """What `/healthz` reports, in terms every backend shares; ``details`` is backend-specific."""

    backend: str
    writable: bool
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {"backend": self.backend, "writable": self.writable, "error": self.error, self.backend: self.details}


@runtime_checkable
class Store(Protocol):
    """The owner of all persisted data."""

    backend: str

    def collection(self, name: str) -> Collection: ...

    def transaction(self, prefix: str = "") -> AsyncContextManager[Transaction]: ...

    async def ensure_index(self, collection: str, field: str) -> None:
        """Make ``find(field=value)`` cheap on ``collection``; idempotent."""
        ...

    async def collections(self) -> list[str]:
        """Names of the collections that hold documents or have used ids."""
        ...

    async def id_counter(self, collection: str) -> int:
        """The next automatic id of ``collection`` (1 if none was ever assigned)."""
        ...

    async def advance_id_counter(self, collection: str, at_least: int) -> None:
        """Move the next automatic id to at least ``at_least`` (ids never go back)."""
        ...

    async def check(self) -> Health:
        """A real round trip to the data (a durable write probe where the backend has one)."""
        ...

    async def flush(self) -> None:
        """Wait until every write started so far is durable."""
        ...

    async def close(self) -> None: ...


class Namespace:
    """A plugin's view of the store: collection ``notes`` of plugin ``notes`` is ``notes.notes``."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = check_name(prefix) + "."

    def collection(self, name: str) -> Collection:
        return self.store.collection(self.prefix + name)

    def transaction(self) -> AsyncContextManager[Transaction]:
        return self.store.transaction(prefix=self.prefix)

    async def ensure_index(self, collection: str, field: str) -> None:
        await self.store.ensure_index(self.prefix + collection, field)


__all__ = [
    "Collection",
    "Cond",
    "Doc",
    "Health",
    "KeyExists",
    "Namespace",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreUnavailable",
    "Transaction",
    "check_field",
    "check_filter",
    "check_name",
    "matches",
    "where",
]
