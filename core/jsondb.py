"""The embedded JSON store (``backend = "json"``): all persisted data in one ``DATA_DIR``.

`JsonStore` implements the `core.store.Store` interface; callers reach it
through that interface only. Reads are served from memory (the ``async``
methods return at once) and writes return only once the change is durable on
disk (journal line fsynced). JSON-only extras:

* ``await store.compact()``: fold the journal into a new snapshot now (it also
  happens on its own once the journal outgrows a share of the snapshot).
* ``with store.transaction_sync() as tx:``: the same transaction for scripts and
  tests without an event loop (blocking; never call it on a running loop). Its
  collections have plain, blocking methods.
* ``python -m core.jsondb check|compact DATA_DIR``: verify the files, or
  compact them now (the store runs its compactions through this command, in a
  child process).

On disk (all human-readable JSON Lines, described in README "Data files"):

* ``snapshot.jsonl``: a header line, one line per record, an end line.
* ``journal.<generation>.jsonl``: one line per committed transaction, appended
  and fsynced before the write is acknowledged. Concurrent transactions are
  grouped into a single write + fsync by one writer thread.
* ``snapshot.prev.jsonl``: the snapshot before the last compaction; together
  with the journals kept since, it rebuilds the same data.
* ``.lock``: ``fcntl.flock`` lock held for each read-modify-write, across
  processes. The kernel drops it when a process dies, so a ``kill -9`` never
  wedges the next start. ``.compact.lock`` keeps compactions exclusive.
* ``.changes``: an 8-byte change counter that every process maps into memory
  (like SQLite's ``-shm`` file). Whoever changes the journals or snapshot
  bumps it, under the lock, before acknowledging; its value means nothing
  across restarts.

Several processes may share one ``DATA_DIR``: under the lock each process first
reads the journal lines others appended (and notices a compaction done by
another process). A read compares the shared change counter with the value
it last caught up to: equal means no process changed anything, and the read
costs no system call; otherwise it looks at the journal files and catches up.
A process that cannot map the counter bumps it through the file and always
looks at the journals. The processes must share one machine (a network file
system shares neither the lock nor the mapping reliably), and none of these
files may be deleted while a process has the store open.
A torn last journal line (a write that was never acknowledged) is ignored and
trimmed; anything else unreadable raises `StoreCorrupt` naming the file, line
and problem, and nothing is ever overwritten to "repair" it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import json
import logging
import mmap
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Iterator

from .store import (
    NAME_PATTERN,
    Cond,
    Doc,
    Health,
    KeyExists,
    Namespace,
    StoreCorrupt,
    StoreError,
    check_field,
    check_name,
)

try:  # orjson parses ~5x and encodes ~18x faster than json (see bench/db_scaling.py)
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)

    _loads: Callable[[bytes | str], Any] = orjson.loads
except ImportError:  # pragma: no cover - exercised only without orjson installed

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()

    _loads = json.loads

_NAME = NAME_PATTERN
_FORMAT = 2
SNAPSHOT = "snapshot.jsonl"
CHANGES = ".changes"
PREV_SNAPSHOT = "snapshot.prev.jsonl"
_JOURNAL = re.compile(r"^journal\.(\d{8,})\.jsonl$")
log = logging.getLogger("turnstile.store")


class _NeedReload(Exception):
    """The journal this process was following is gone (compacted away by another process)."""


def _copy(doc: Any) -> Any:
    """A private copy of a JSON value (a JSON round trip: faster than deepcopy, and validates)."""
    return _loads(_dumps(doc))


def _ikey(value: Any) -> Any:
    """A hashable index key that is equal for two JSON values exactly when ``==`` holds.

    Scalars are their own keys (``1``, ``1.0`` and ``True`` are equal and hash
    alike, as ``==`` says); lists and objects become tagged tuples and frozensets
    of their members' keys, so ``[1]`` and ``[1.0]`` also meet.
    """
    if isinstance(value, list):
        return ("\0list", tuple(map(_ikey, value)))
    if isinstance(value, dict):
        return ("\0dict", frozenset((k, _ikey(v)) for k, v in value.items()))
    return value


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Table:
    """Committed in-memory state of one collection, with its secondary indexes."""

    __slots__ = ("docs", "next_id", "indexes")

    def __init__(self, index_fields: Iterable[str] = ()) -> None:
        self.docs: dict[str, Doc] = {}
        self.next_id = 1
        self.indexes: dict[str, dict[Any, set[str]]] = {f: {} for f in index_fields}

    def set(self, key: str, doc: Doc | None) -> None:
        if self.indexes:
            old = self.docs.get(key)
            for field, index in self.indexes.items():
                if old is not None:
                    bucket = index.get(_ikey(old.get(field)))
                    if bucket is not None:
                        bucket.discard(key)
                        if not bucket:
                            del index[_ikey(old.get(field))]
                if doc is not None:
                    index.setdefault(_ikey(doc.get(field)), set()).add(key)
        if doc is None:
            self.docs.pop(key, None)
        else:
            self.docs[key] = doc

    def add_index(self, field: str) -> None:
        if field in self.indexes:
            return
        index: dict[Any, set[str]] = {}
        for key, doc in self.docs.items():
            index.setdefault(_ikey(doc.get(field)), set()).add(key)
        self.indexes[field] = index

    def holds_data(self) -> bool:
        """Documents, or an id counter that has moved: what `JsonStore.collections` lists."""
        return bool(self.docs) or self.next_id > 1


_EMPTY = _Table()
_CHECKED_FIELDS: set[str] = set()


def _check_filter(conds: tuple[Cond, ...], equals: dict[str, Any]) -> None:
    """Refuse what is not a filter (a Python callable, say) before it silently matches nothing."""
    for cond in conds:
        if not isinstance(cond, Cond):
            raise TypeError(f"a filter is a Cond (where('field') < value) or field=value, not {type(cond).__name__}")
    for field in equals:
        if field not in _CHECKED_FIELDS:
            _CHECKED_FIELDS.add(check_field(field))


def _matches(doc: Doc, conds: tuple[Cond, ...], equals: dict[str, Any]) -> bool:
    """`core.store.matches`, inlined: it runs once per document of a scan."""
    for field, value in equals.items():
        if doc.get(field) != value:
            return False
    for cond in conds:
        if not cond.test(doc):
            return False
    return True


class _Reader:
    """Blocking reads shared by live collections and transaction views (all served from memory)."""

    name: str

    def _base(self) -> _Table:
        raise NotImplementedError

    def _overlay(self) -> dict[str, Doc | None]:
        """Changes not yet in the committed table (newest wins); ``None`` marks a delete."""
        return {}

    def _lookup(self, key: str) -> Doc | None:
        overlay = self._overlay()
        if key in overlay:
            return overlay[key]
        return self._base().docs.get(key)

    def _items(self) -> Iterator[tuple[str, Doc]]:
        overlay = self._overlay()
        for key, doc in self._base().docs.items():
            if key not in overlay:
                yield key, doc
        for key, doc in overlay.items():
            if doc is not None:
                yield key, doc

    def _select(self, conds: tuple[Cond, ...], equals: dict[str, Any]) -> list[tuple[str, Doc]]:
        """Matching ``(key, stored document)`` pairs; an indexed equality field avoids the scan."""
        _check_filter(conds, equals)
        base = self._base()
        field = next((f for f in equals if f in base.indexes), None)
        if field is None:
            return [(k, d) for k, d in self._items() if _matches(d, conds, equals)]
        try:
            indexed = base.indexes[field].get(_ikey(equals[field]), ())
        except TypeError:  # an unhashable value (a set, say) equals no JSON value
            return []
        overlay = self._overlay()
        keys = list(indexed) + [k for k in overlay if k not in indexed]
        out = []
        for key in keys:
            doc = overlay[key] if key in overlay else base.docs.get(key)
            if doc is not None and _matches(doc, conds, equals):
                out.append((key, doc))
        return out

    def _get(self, key: Any) -> Doc | None:
        doc = self._lookup(str(key))
        return _copy(doc) if doc is not None else None

    def _exists(self, key: Any) -> bool:
        return self._lookup(str(key)) is not None

    def _all(self) -> list[Doc]:
        # One copy of the whole list: a round trip per document costs a call each.
        return _copy([doc for _, doc in self._items()])

    def _pairs(self) -> list[tuple[str, Doc]]:
        pairs = list(self._items())
        return list(zip([k for k, _ in pairs], _copy([d for _, d in pairs])))

    def _find(self, conds: tuple[Cond, ...], equals: dict[str, Any]) -> list[Doc]:
        return _copy([doc for _, doc in self._select(conds, equals)])

    def _count(self, conds: tuple[Cond, ...], equals: dict[str, Any]) -> int:
        if conds or equals:
            return len(self._select(conds, equals))
        overlay = self._overlay()
        docs = self._base().docs
        return len(docs) + sum((doc is not None) - (key in docs) for key, doc in overlay.items())


class SyncTxCollection(_Reader):
    """A collection inside a transaction, with blocking methods: reads see staged and in-flight writes.

    `transaction_sync` hands these out; `TxCollection` wraps one for ``async`` callers.
    """

    def __init__(self, tx: "Transaction", name: str) -> None:
        self._tx = tx
        self.name = name

    def _base(self) -> _Table:
        return self._tx._store._tables.get(self.name) or _EMPTY

    def _overlay(self) -> dict[str, Doc | None]:
        pending = self._tx._store._pending_view.get(self.name)
        staged = self._tx._staged.get(self.name)
        if pending and staged:
            return {**pending, **staged}
        return staged or pending or {}

    def _stage(self, key: str, doc: Doc | None) -> None:
        self._tx._staged.setdefault(self.name, {})[key] = doc

    def _next_id(self) -> int:
        store = self._tx._store
        return max(
            self._tx._ids.get(self.name, 0),
            store._pending_ids.get(self.name, 0),
            self._base().next_id,
        )

    @staticmethod
    def _prepare(doc: Doc) -> Doc:
        if not isinstance(doc, dict):
            raise TypeError(f"a document must be a dict, not {type(doc).__name__}")
        return _copy(doc)

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
            if key.isascii() and key.isdigit() and int(key) < 2**53:
                self._tx._ids[self.name] = max(self._next_id(), int(key) + 1)
        self._stage(key, doc)
        return _copy(doc)

    def put(self, key: Any, doc: Doc) -> Doc:
        """Create or replace the document under ``key``."""
        doc = self._prepare(doc)
        self._stage(str(key), doc)
        return _copy(doc)

    def update(self, key: Any, changes: Doc) -> Doc | None:
        """Merge ``changes`` into the document; ``None`` if there is none."""
        current = self._lookup(str(key))
        if current is None:
            return None
        updated = {**current, **self._prepare(changes)}
        self._stage(str(key), updated)
        return _copy(updated)

    def delete(self, key: Any) -> bool:
        if self._lookup(str(key)) is None:
            return False
        self._stage(str(key), None)
        return True

    def delete_where(self, *conds: Cond, **equals: Any) -> int:
        """Delete every matching document; returns how many. A filter is required."""
        if not conds and not equals:
            raise ValueError("delete_where needs a filter; delete documents one by one to empty a collection")
        doomed = [key for key, _ in self._select(conds, equals)]
        for key in doomed:
            self._stage(key, None)
        return len(doomed)

    def advance_ids(self, at_least: int) -> None:
        """Move the next automatic id to at least ``at_least``; never back."""
        if isinstance(at_least, bool) or not isinstance(at_least, int):
            raise TypeError(f"an id counter is an integer, not {type(at_least).__name__}")
        if not 1 <= at_least < 2**53:
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


class Transaction:
    """Staged changes; applied by `JsonStore.transaction` on success."""

    def __init__(self, store: "JsonStore", prefix: str = "") -> None:
        self._store = store
        self._prefix = prefix
        self._staged: dict[str, dict[str, Doc | None]] = {}
        self._ids: dict[str, int] = {}

    def collection(self, name: str) -> TxCollection:
        return TxCollection(self.sync_collection(name))

    def sync_collection(self, name: str) -> SyncTxCollection:
        return SyncTxCollection(self, check_name(self._prefix + name))

    def _entry(self) -> "_Entry | None":
        staged = {name: ops for name, ops in self._staged.items() if ops}
        if not staged and not self._ids:
            return None
        ops = [{"c": name, "k": key, "v": doc} for name, changes in staged.items() for key, doc in changes.items()]
        record: dict[str, Any] = {"at": round(time.time(), 3), "ops": ops}
        if self._ids:
            record["ids"] = self._ids
        return _Entry(staged, dict(self._ids), _dumps(record) + b"\n")


class SyncTransaction(Transaction):
    """The transaction `JsonStore.transaction_sync` yields: its collections block instead of awaiting."""

    def collection(self, name: str) -> SyncTxCollection:  # type: ignore[override]
        return self.sync_collection(name)


class _Entry:
    """One committed transaction on its way to disk."""

    __slots__ = ("changes", "ids", "line", "future")

    def __init__(self, changes: dict[str, dict[str, Doc | None]], ids: dict[str, int], line: bytes) -> None:
        self.changes = changes
        self.ids = ids
        self.line = line
        self.future: asyncio.Future[None] | None = None


class Collection(_Reader):
    """A live collection: reads from memory (they return at once), durable writes."""

    def __init__(self, store: "JsonStore", name: str) -> None:
        self._store = store
        self.name = name

    def _base(self) -> _Table:
        self._store._refresh()
        return self._store._tables.get(self.name) or _EMPTY

    async def get(self, key: Any) -> Doc | None:
        return self._get(key)

    async def exists(self, key: Any) -> bool:
        return self._exists(key)

    async def all(self) -> list[Doc]:
        # A live collection has no overlay of staged changes: copy the table directly.
        return _copy(list(self._base().docs.values()))

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
            raise ValueError("delete_where needs a filter; delete documents one by one to empty a collection")
        async with self._store.transaction() as tx:
            return tx.sync_collection(self.name).delete_where(*conds, **equals)


class _Loaded:
    """What reading the files produced."""

    def __init__(self) -> None:
        self.tables: dict[str, _Table] = {}
        self.generation = 1
        self.offset = 0
        self.snapshot_bytes = 0


class JsonStore:
    """Owns the data directory: loads it once, then serves reads from memory."""

    backend = "json"

    def __init__(
        self,
        data_dir: Path | str,
        executor: Executor | None = None,
        *,
        compact_min_bytes: int = 4 << 20,
        compact_ratio: float = 0.5,
    ) -> None:
        self.data_dir = Path(data_dir)
        self._executor = executor  # accepted for API stability; the store uses its own I/O threads
        self.compact_min_bytes = compact_min_bytes
        self.compact_ratio = compact_ratio
        self._tables: dict[str, _Table] = {}
        self._index_fields: dict[str, set[str]] = {}
        self._lock = asyncio.Lock()
        self._lock_file = self.data_dir / ".lock"
        self._io: ThreadPoolExecutor | None = None
        self._compactor: ThreadPoolExecutor | None = None
        self._generation = 1
        self._watched_generation = 0
        self._handles: dict[str, Collection] = {}
        self._watched: tuple[str, str] = ("", "")
        self._offset = 0
        self._seen_size = 0
        self._snapshot_bytes = 0
        self._flock_fd: int | None = None
        self._flock_since = 0.0
        self._yield_requested = threading.Event()
        self._pending: list[_Entry] = []
        self._unwritten: list[_Entry] = []
        self._pending_view: dict[str, dict[str, Doc | None]] = {}
        self._pending_ids: dict[str, int] = {}
        self._writer: asyncio.Task[None] | None = None
        self._compaction: asyncio.Future[Any] | None = None
        self._opened = False
        self._closed = False
        self._changes: mmap.mmap | None = None  # the shared change counter, once mapped
        self._seen_changes: int | None = None  # its value when this process last caught up
        self._last_error: str | None = None

    # -- lifecycle -----------------------------------------------------------------

    def open(self) -> "JsonStore":
        """Load the snapshot and journals; raise `StoreCorrupt` naming a bad file."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._file_lock():
            loaded = self._load_files(repair=True)
            self._changes = self._map_changes()
            self._bump_changes()  # a repair may have trimmed a journal
        self._install(loaded)
        self._opened = True
        # The loaded documents live as long as the process: keep the cyclic GC from rescanning them
        # (a full collection over 100k documents would stall the event loop for tens of ms).
        gc.freeze()
        return self

    async def close(self) -> None:
        """Wait for writes and a running compaction; everything acknowledged is already on disk."""
        async with self._lock:
            await self.flush()
        if self._compaction is not None:
            with contextlib.suppress(Exception):
                await self._compaction
        self._release_flock()
        self._closed = True
        if self._changes is not None:
            self._changes.close()
            self._changes = None
        for pool in (self._io, self._compactor):
            if pool is not None:
                pool.shutdown(wait=False)

    async def check(self) -> Health:
        """Whether the store can write, from a real durable write (temp file, fsync, unlink) in ``DATA_DIR``.

        The details are sizes and counts only: a health check must not tell the world where the data lives.
        """
        writable = self._opened and not self._closed and self._last_error is None
        error = self._last_error
        try:
            await asyncio.get_running_loop().run_in_executor(self._io_pool(), self._probe_write)
        except OSError as exc:
            writable, error = False, error or exc.strerror or type(exc).__name__
        details = {
            "generation": self._generation,
            "journal_bytes": self._offset,
            "snapshot_bytes": self._snapshot_bytes,
            "pending_writes": len(self._pending),
            "compacting": self._compaction is not None and not self._compaction.done(),
        }
        return Health(backend=self.backend, writable=writable, error=error, details=details)

    def _probe_write(self) -> None:
        probe = self.data_dir / f".probe-{os.getpid()}-{os.urandom(6).hex()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)

    # -- public API ------------------------------------------------------------------

    def collection(self, name: str) -> Collection:
        handle = self._handles.get(name)
        if handle is None:  # handlers ask on every request: check the name once, not each time
            handle = self._handles[name] = Collection(self, check_name(name))
        return handle

    def namespace(self, prefix: str) -> Namespace:
        """A plugin's view (`core.store.Namespace`): collection names prefixed with ``prefix.``."""
        return Namespace(self, prefix)

    async def ensure_index(self, collection: str, field: str) -> None:
        """Index ``field`` so ``find(field=value)`` is O(1) plus the matches; kept across reloads."""
        check_name(collection)
        check_field(field)
        self._index_fields.setdefault(collection, set()).add(field)
        table = self._tables.get(collection)
        if table is not None:
            table.add_index(field)

    async def collections(self) -> list[str]:
        self._refresh()
        return sorted(name for name, table in self._tables.items() if table.holds_data())

    async def id_counter(self, collection: str) -> int:
        check_name(collection)
        self._refresh()
        table = self._tables.get(collection)
        return table.next_id if table is not None else 1

    async def advance_id_counter(self, collection: str, at_least: int) -> None:
        """A transaction of its own: durable once this returns, and a no-op if the counter is already there."""
        async with self.transaction() as tx:
            tx.sync_collection(collection).advance_ids(at_least)

    async def flush(self) -> None:
        """Wait until every transaction committed so far is durable."""
        futures = [e.future for e in self._pending if e.future is not None]
        if futures:
            await asyncio.gather(*(asyncio.shield(f) for f in futures), return_exceptions=True)

    @contextlib.asynccontextmanager
    async def transaction(self, prefix: str = "") -> AsyncIterator[Transaction]:
        """Serialized read-modify-write, in-process and across processes; durable on exit."""
        entry: _Entry | None = None
        async with self._lock:
            try:
                if self._flock_fd is not None and (
                    self._yield_requested.is_set() or time.monotonic() - self._flock_since > 0.2
                ):
                    # Let a compaction or another process have the lock between batches.
                    await self.flush()
                    self._release_flock()
                await self._ensure_flock()
                tx = Transaction(self, prefix)
                yield tx
                entry = tx._entry()
                if entry is not None:
                    entry.future = asyncio.get_running_loop().create_future()
                    self._enqueue(entry)
            finally:
                if entry is None:
                    self._maybe_release_flock(lock_held=True)
        if entry is not None and entry.future is not None:
            await asyncio.shield(entry.future)

    @contextlib.contextmanager
    def transaction_sync(self, prefix: str = "") -> Iterator[SyncTransaction]:
        """A blocking transaction for scripts and CLIs (no event loop running in this thread)."""
        if self._lock.locked() or self._pending or self._flock_fd is not None:
            raise StoreError("transaction_sync cannot run while async transactions are in progress")
        fd = self._acquire_flock()
        self._flock_fd = fd
        try:
            self._catch_up_locked()
            tx = SyncTransaction(self, prefix)
            yield tx
            entry = tx._entry()
            if entry is not None:
                try:
                    self._offset = self._append(entry.line)
                except BaseException:
                    self._truncate_to(self._offset)
                    raise
                self._seen_size = self._offset
                self._apply_changes(entry.changes, entry.ids)
        finally:
            self._flock_fd = None
            os.close(fd)

    async def compact(self) -> None:
        """Fold the journals into a new snapshot now, in a background thread."""
        if self._compaction is None or self._compaction.done():
            self._start_compaction()
        assert self._compaction is not None
        await asyncio.shield(self._compaction)

    # -- locking ---------------------------------------------------------------------

    def _acquire_flock(self, blocking: bool = True) -> int:
        fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def _file_lock(self, blocking: bool = True) -> Iterator[None]:
        fd = self._acquire_flock(blocking)
        try:
            yield
        finally:
            os.close(fd)

    def _io_pool(self) -> ThreadPoolExecutor:
        if self._io is None:
            self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnstile-store")
        return self._io

    async def _ensure_flock(self) -> None:
        """Hold the cross-process lock and be caught up with the files."""
        if self._flock_fd is not None:
            return
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._io_pool(), self._acquire_flock)
        try:
            fd = await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(lambda f: f.cancelled() or f.exception() or os.close(f.result()))
            raise
        self._flock_fd = fd
        self._flock_since = time.monotonic()
        try:
            self._catch_up_locked()
        except BaseException:
            self._release_flock()
            raise

    def _release_flock(self) -> None:
        if self._flock_fd is not None:
            fd, self._flock_fd = self._flock_fd, None
            os.close(fd)

    def _maybe_release_flock(self, lock_held: bool = False) -> None:
        if self._flock_fd is None or self._pending:
            return
        if self._lock.locked() and not lock_held:
            return
        self._release_flock()

    # -- the writer --------------------------------------------------------------------

    def _enqueue(self, entry: _Entry) -> None:
        self._pending.append(entry)
        self._unwritten.append(entry)
        for name, changes in entry.changes.items():
            self._pending_view.setdefault(name, {}).update(changes)
        for name, next_id in entry.ids.items():
            self._pending_ids[name] = max(self._pending_ids.get(name, 0), next_id)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        """Single writer: every batch of queued transactions costs one write and one fsync."""
        loop = asyncio.get_running_loop()
        try:
            while self._unwritten:
                batch, self._unwritten = self._unwritten, []
                data = b"".join(e.line for e in batch)
                try:
                    self._offset = await loop.run_in_executor(self._io_pool(), self._append, data)
                except Exception as exc:
                    # Trim the partial write first, then fail every pending transaction, including
                    # any committed during the trim: once this loop ends nothing would write them.
                    try:
                        await loop.run_in_executor(self._io_pool(), self._truncate_to, self._offset)
                    finally:
                        self._fail_pending(exc)
                    break
                self._seen_size = self._offset
                for entry in batch:
                    self._apply_changes(entry.changes, entry.ids)
                done = set(map(id, batch))
                self._pending = [e for e in self._pending if id(e) not in done]
                self._rebuild_pending_view()
                self._last_error = None
                for entry in batch:
                    if entry.future is not None and not entry.future.done():
                        entry.future.set_result(None)
        finally:
            self._writer = None
            self._maybe_release_flock()
        if self._offset > max(self.compact_min_bytes, self._snapshot_bytes * self.compact_ratio):
            if self._compaction is None or self._compaction.done():
                self._start_compaction()

    def _fail_pending(self, exc: Exception) -> None:
        detail = f"write to {self._journal_path(self._generation)} failed: {exc}"
        log.error("store: %s", detail)
        # state() feeds the public health check: say what went wrong, never where on disk.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        self._last_error = f"journal write failed: {reason}"
        failed, self._pending, self._unwritten = self._pending, [], []
        self._rebuild_pending_view()
        for entry in failed:
            if entry.future is not None and not entry.future.done():
                entry.future.set_exception(StoreError(detail))

    def _rebuild_pending_view(self) -> None:
        self._pending_view, self._pending_ids = {}, {}
        for entry in self._pending:
            for name, changes in entry.changes.items():
                self._pending_view.setdefault(name, {}).update(changes)
            for name, next_id in entry.ids.items():
                self._pending_ids[name] = max(self._pending_ids.get(name, 0), next_id)

    def _append(self, data: bytes) -> int:
        """Append journal lines and fsync them (lock held); returns the new end offset."""
        path = self._journal_path(self._generation)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size > self._offset:
                # Bytes past the last complete line: a write torn by a crash, never acknowledged.
                log.warning("store: dropping %d torn bytes at the end of %s", size - self._offset, path)
                os.ftruncate(fd, self._offset)
            elif size < self._offset:
                raise StoreCorrupt(f"{path}: shrank from {self._offset} to {size} bytes while in use")
            # os.write may write only part (a file size limit, a full disk): keep writing until
            # all of it is down, so a real failure raises instead of acknowledging a torn line.
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.data_dir)
        self._bump_changes()
        return self._offset + len(data)

    def _truncate_to(self, offset: int) -> None:
        """Drop bytes past ``offset`` (a failed write); never grows the file."""
        with contextlib.suppress(OSError):
            fd = os.open(self._journal_path(self._generation), os.O_WRONLY | os.O_CLOEXEC)
            try:
                if os.fstat(fd).st_size > offset:
                    os.ftruncate(fd, offset)
                    self._bump_changes()
            finally:
                os.close(fd)

    def _apply_changes(self, changes: dict[str, dict[str, Doc | None]], ids: dict[str, int], tables: dict[str, _Table] | None = None) -> None:
        tables = self._tables if tables is None else tables
        fields = self._index_fields if tables is self._tables else {}
        for name, docs in changes.items():
            table = tables.get(name)
            if table is None:
                table = tables[name] = _Table(fields.get(name, ()))
            for key, doc in docs.items():
                table.set(key, doc)
        for name, next_id in ids.items():
            table = tables.get(name)
            if table is None:
                table = tables[name] = _Table(fields.get(name, ()))
            table.next_id = max(table.next_id, next_id)

    # -- files -------------------------------------------------------------------------

    def _journal_path(self, generation: int) -> Path:
        return self.data_dir / f"journal.{generation:08d}.jsonl"

    def _journal_generations(self) -> list[int]:
        return sorted(int(m.group(1)) for m in map(_JOURNAL.match, os.listdir(self.data_dir)) if m)

    def _install(self, loaded: _Loaded) -> None:
        self._tables = loaded.tables
        self._generation = loaded.generation
        self._offset = self._seen_size = loaded.offset
        self._snapshot_bytes = loaded.snapshot_bytes

    def _refresh(self) -> None:
        """Cheap check on reads: pick up lines other processes appended since we last looked."""
        # While this process waits for the lock it still catches up: another may have acknowledged writes meanwhile.
        if not self._opened or self._flock_fd is not None or self._pending:
            return
        changes = self._changes_now()
        if changes is not None and changes == self._seen_changes:
            return  # no process has changed the files since this one caught up
        if self._watched_generation != self._generation:
            # Path objects cost more than the two system calls below; build the strings once per generation.
            self._watched = (str(self._journal_path(self._generation)), str(self._journal_path(self._generation + 1)))
            self._watched_generation = self._generation
        current, following = self._watched
        try:
            size = os.stat(current).st_size
        except FileNotFoundError:
            size = -1
        # os.access, not os.path.exists: a missing file (the usual answer) then costs no exception.
        if size == self._seen_size and not os.access(following, os.F_OK):
            self._seen_changes = changes
            return
        try:
            self._catch_up()
        except _NeedReload:
            try:
                with self._file_lock(blocking=False):
                    self._install(self._load_files(repair=False))
            except BlockingIOError:
                return  # a writer holds the lock: serve what we have, the next look catches up
        self._seen_changes = changes

    def _catch_up_locked(self) -> None:
        try:
            self._catch_up()
        except _NeedReload:
            log.warning("store: %s was compacted by another process; reloading", self.data_dir)
            self._install(self._load_files(repair=False))
        self._seen_changes = self._changes_now()  # nobody else can change the files while we hold the lock

    # -- the shared change counter -------------------------------------------------------

    def _map_changes(self) -> mmap.mmap | None:
        """Map ``.changes`` (created if missing; lock held). None where that fails: reads then always look at the files."""
        try:
            fd = os.open(self.data_dir / CHANGES, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
            return mmap.mmap(fd, 8)
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)

    def _changes_now(self) -> int | None:
        return int.from_bytes(self._changes[:8], "little") if self._changes is not None else None

    def _bump_changes(self) -> None:
        """Tell every process sharing the directory that the files changed (lock held, so no bump is lost).

        Called after the change is on disk and before it is acknowledged, so a
        read that starts after the acknowledgement sees a new value. The caller
        is caught up with the files, so its own view counts as seen.
        """
        if self._changes is None:
            self._changes = self._map_changes()
        if self._changes is not None:
            value = int.from_bytes(self._changes[:8], "little") + 1
            self._changes[:8] = value.to_bytes(8, "little")
            self._seen_changes = value
            return
        # No mapping here: bump through the file, whose page the other processes have mapped.
        fd = os.open(self.data_dir / CHANGES, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            value = int.from_bytes(os.pread(fd, 8, 0).ljust(8, b"\0"), "little") + 1
            os.pwrite(fd, value.to_bytes(8, "little"), 0)
        finally:
            os.close(fd)

    def _catch_up(self) -> None:
        """Apply journal lines appended by other processes, following generations forward."""
        while True:
            path = self._journal_path(self._generation)
            frozen = os.path.exists(self._journal_path(self._generation + 1))
            try:
                with open(path, "rb") as handle:
                    handle.seek(self._offset)
                    data = handle.read()
                    size = self._offset + len(data)
            except FileNotFoundError:
                if self._offset == 0 and not frozen and not self._journal_generations():
                    return  # nothing written yet
                raise _NeedReload() from None
            if data:
                self._offset += self._replay(path, data, self._offset, self._tables)
            self._seen_size = size
            if not frozen:
                return
            self._generation += 1
            self._offset = self._seen_size = 0

    def _replay(self, path: Path, data: bytes, start: int, tables: dict[str, _Table]) -> int:
        """Apply complete journal lines in ``data``; returns the bytes consumed (a torn tail is left)."""
        end = data.rfind(b"\n") + 1
        if end == 0:
            return 0
        for number, line in enumerate(data[:end].splitlines(), 1):
            if not line.strip():
                continue
            changes, ids = self._parse_journal_line(path, line, start, number)
            self._apply_changes(changes, ids, tables)
        return end

    @staticmethod
    def _parse_journal_line(path: Path, line: bytes, start: int, number: int) -> tuple[dict[str, dict[str, Doc | None]], dict[str, int]]:
        where = f"{path} (line {number} after byte {start})" if start else f"{path} line {number}"
        try:
            record = _loads(line)
        except ValueError as exc:
            raise StoreCorrupt(f"{where}: not valid JSON ({exc})") from None
        if not isinstance(record, dict) or not isinstance(record.get("ops"), list):
            raise StoreCorrupt(f"{where}: expected an object with an 'ops' list")
        changes: dict[str, dict[str, Doc | None]] = {}
        for op in record["ops"]:
            if (
                not isinstance(op, dict)
                or not isinstance(op.get("c"), str)
                or not _NAME.match(op["c"])
                or not isinstance(op.get("k"), str)
                or not (op.get("v") is None or isinstance(op.get("v"), dict))
            ):
                raise StoreCorrupt(f"{where}: bad operation {op!r}; expected {{'c': collection, 'k': key, 'v': object or null}}")
            changes.setdefault(op["c"], {})[op["k"]] = op["v"]
        ids = record.get("ids", {})
        if not isinstance(ids, dict) or not all(isinstance(n, int) and _NAME.match(c) for c, n in ids.items()):
            raise StoreCorrupt(f"{where}: 'ids' must map collection names to integers")
        return changes, ids

    def _load_files(self, repair: bool) -> _Loaded:
        """Read snapshot + journals. With ``repair`` (lock held at open) trim a torn tail and tidy up."""
        enabled = gc.isenabled()
        gc.disable()  # loading creates only acyclic dicts: collecting meanwhile costs ~30% of load time
        try:
            return self._load_files_unguarded(repair)
        finally:
            if enabled:
                gc.enable()

    def _load_files_unguarded(self, repair: bool) -> _Loaded:
        loaded = _Loaded()
        snapshot = self.data_dir / SNAPSHOT
        generations = self._journal_generations()
        if snapshot.exists():
            loaded.generation, loaded.snapshot_bytes = self._read_snapshot(snapshot, loaded.tables)
        elif generations and generations[0] > 1:
            # Journal 1 gone means a snapshot existed. With journal 1 present the whole history is
            # there: the first compaction has frozen it but not yet written its snapshot.
            raise StoreCorrupt(
                f"{snapshot}: missing, but {self._journal_path(generations[-1]).name} exists; "
                f"restore it (see README 'Data files': copy {PREV_SNAPSHOT} to {SNAPSHOT})"
            )
        elif repair:
            self._migrate_legacy(loaded.tables)
        wanted = [g for g in generations if g >= loaded.generation]
        expected = list(range(loaded.generation, loaded.generation + len(wanted)))
        if wanted and wanted != expected:
            missing = sorted(set(range(loaded.generation, wanted[-1] + 1)) - set(wanted))
            raise StoreCorrupt(f"{self._journal_path(missing[0])}: missing; later journals exist, so changes would be lost")
        loaded.offset = 0
        for generation in wanted:
            path = self._journal_path(generation)
            data = path.read_bytes()
            consumed = self._replay(path, data, 0, loaded.tables)
            loaded.generation, loaded.offset = generation, consumed
            if consumed < len(data) and generation == wanted[-1] and repair:
                log.warning("store: %s ends with %d torn bytes (a write never acknowledged); trimming", path, len(data) - consumed)
                os.truncate(path, consumed)
        if repair:
            if not wanted:
                self._journal_path(loaded.generation).touch(mode=0o600)
                _fsync_dir(self.data_dir)
            self._remove_leftovers()
        for name, fields in self._index_fields.items():
            for field in fields:
                if name in loaded.tables:
                    loaded.tables[name].add_index(field)
        return loaded

    def _remove_leftovers(self) -> None:
        """Delete temporary files of a compaction that died, unless one is running now."""
        fd = os.open(self.data_dir / ".compact.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            for name in os.listdir(self.data_dir):
                if name.endswith(".tmp"):
                    os.unlink(self.data_dir / name)
        except BlockingIOError:
            pass
        finally:
            os.close(fd)

    def _read_snapshot(self, path: Path, tables: dict[str, _Table]) -> tuple[int, int]:
        """Load a snapshot into ``tables``; returns (generation, size in bytes)."""
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            raise StoreCorrupt(f"{path}: truncated (does not end with a complete line)")
        lines = data.splitlines()
        header = self._snapshot_line(path, lines, 0)
        if header.get("format") != _FORMAT or not isinstance(header.get("generation"), int) or not isinstance(header.get("collections"), dict):
            raise StoreCorrupt(f"{path} line 1: expected a header with format {_FORMAT}, 'generation' and 'collections'")
        for name, meta in header["collections"].items():
            if not _NAME.match(name) or not isinstance(meta, dict) or not isinstance(meta.get("next_id"), int):
                raise StoreCorrupt(f"{path} line 1: bad collection entry {name!r}: {meta!r}")
            table = tables[name] = _Table()
            table.next_id = meta["next_id"]
        end = self._snapshot_line(path, lines, len(lines) - 1) if len(lines) > 1 else {}
        if end.get("end") is not True or end.get("records") != len(lines) - 2:
            raise StoreCorrupt(f"{path}: truncated or edited (the last line must be {{\"end\": true, \"records\": {len(lines) - 2}}})")
        for number in range(1, len(lines) - 1):
            record = self._snapshot_line(path, lines, number)
            name, key, doc = record.get("c"), record.get("k"), record.get("v")
            if not isinstance(key, str) or not isinstance(doc, dict) or name not in tables:
                raise StoreCorrupt(f"{path} line {number + 1}: expected {{'c': a collection from the header, 'k': key, 'v': object}}")
            tables[name].docs[key] = doc
        return header["generation"], len(data)

    @staticmethod
    def _snapshot_line(path: Path, lines: list[bytes], index: int) -> dict[str, Any]:
        try:
            value = _loads(lines[index])
        except ValueError as exc:
            raise StoreCorrupt(f"{path} line {index + 1}: not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise StoreCorrupt(f"{path} line {index + 1}: expected a JSON object")
        return value

    def _migrate_legacy(self, tables: dict[str, _Table]) -> None:
        """Import ``<collection>.json`` files written by the first store format, once."""
        legacy = sorted(p for p in self.data_dir.glob("*.json") if _NAME.match(p.stem))
        if not legacy:
            return
        for path in legacy:
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise StoreCorrupt(f"{path}: not valid JSON ({exc})") from None
            if not isinstance(raw, dict) or not isinstance(raw.get("records"), dict) or not isinstance(raw.get("next_id", 1), int):
                raise StoreCorrupt(f"{path}: expected an object with a 'records' object")
            table = tables[path.stem] = _Table()
            table.docs, table.next_id = raw["records"], raw.get("next_id", 1)
        self._write_snapshot(tables, 1)
        for path in legacy:
            os.replace(path, path.with_name(path.name + ".migrated"))
        log.warning("store: imported %d legacy collection files into %s", len(legacy), SNAPSHOT)

    def _write_snapshot(self, tables: dict[str, _Table], generation: int) -> None:
        tmp = self.data_dir / (SNAPSHOT + ".tmp")
        header = {"format": _FORMAT, "generation": generation, "written": round(time.time(), 3),
                  "collections": {name: {"next_id": t.next_id} for name, t in sorted(tables.items())}}
        lines = ({"c": name, "k": key, "v": doc} for name, t in sorted(tables.items()) for key, doc in t.docs.items())
        self._write_lines(tmp, header, (_dumps(rec) + b"\n" for rec in lines))
        os.replace(tmp, self.data_dir / SNAPSHOT)
        _fsync_dir(self.data_dir)

    @staticmethod
    def _write_lines(path: Path, header: dict[str, Any], lines: Iterable[bytes]) -> int:
        count = 0
        with open(path, "wb") as handle:
            handle.write(_dumps(header) + b"\n")
            for line in lines:
                handle.write(line)
                count += 1
            handle.write(_dumps({"end": True, "records": count}) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        return count

    # -- compaction ----------------------------------------------------------------------

    def _start_compaction(self) -> None:
        if self._compactor is None:
            self._compactor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnstile-compact")
        loop = asyncio.get_running_loop()
        self._compaction = loop.run_in_executor(self._compactor, self._compact_in_child)
        self._compaction.add_done_callback(self._compaction_done)

    def _compact_in_child(self) -> int:
        """Compaction runs in a child process, so it never competes with the event loop for the GIL."""
        self._yield_requested.set()
        try:
            result = subprocess.run(
                [sys.executable, "-m", "core.jsondb", "compact", str(self.data_dir.resolve())],
                cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, check=False,
            )
        finally:
            self._yield_requested.clear()
        if result.returncode != 0:
            raise StoreError((result.stderr.strip().splitlines() or ["compaction failed"])[-1])
        return int(result.stdout.strip() or 0)

    def _compaction_done(self, future: "asyncio.Future[Any]") -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error("store: compaction of %s failed: %s", self.data_dir, exc)
        elif future.result():
            self._snapshot_bytes = future.result()

    def _compact_files(self) -> int:
        """Runs in a child process, from the files only: rotate the journal, merge, swap the snapshot."""
        compact_fd = os.open(self.data_dir / ".compact.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(compact_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another process is compacting
            snapshot = self.data_dir / SNAPSHOT
            # 1. Freeze the current journal: writers move on to a new generation.
            with self._file_lock():
                base = self._read_header(snapshot) if snapshot.exists() else None
                base_gen = base["generation"] if base else 1
                newest = max(self._journal_generations(), default=base_gen)
                frozen = [g for g in self._journal_generations() if base_gen <= g <= newest]
                new_gen = newest + 1
                self._journal_path(new_gen).touch(mode=0o600)
                _fsync_dir(self.data_dir)
                self._bump_changes()
            # 2. Merge the old snapshot with the frozen journals into a new one (no lock held).
            changes: dict[tuple[str, str], Doc | None] = {}
            ids: dict[str, int] = {name: meta["next_id"] for name, meta in (base or {}).get("collections", {}).items()}
            for generation in frozen:
                path = self._journal_path(generation)
                data = path.read_bytes()
                data = data[: data.rfind(b"\n") + 1]
                for number, line in enumerate(data.splitlines(), 1):
                    if line.strip():
                        docs, line_ids = self._parse_journal_line(path, line, 0, number)
                        for name, keyed in docs.items():
                            ids.setdefault(name, 1)
                            for key, doc in keyed.items():
                                changes.pop((name, key), None)  # keep journal order for new keys
                                changes[(name, key)] = doc
                        for name, next_id in line_ids.items():
                            ids[name] = max(ids.get(name, 1), next_id)
            tmp = self.data_dir / (SNAPSHOT + ".tmp")
            header = {"format": _FORMAT, "generation": new_gen, "written": round(time.time(), 3),
                      "collections": {name: {"next_id": n} for name, n in sorted(ids.items())}}
            self._write_lines(tmp, header, self._merged_lines(snapshot if base else None, changes))
            # 3. Swap under the lock; keep the previous snapshot (and the journals since) for recovery.
            with self._file_lock():
                current = self._read_header(snapshot) if snapshot.exists() else None
                if (current["generation"] if current else 1) != base_gen:
                    os.unlink(tmp)
                    return 0
                if base is not None:
                    prev_tmp = self.data_dir / (PREV_SNAPSHOT + ".tmp")
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(prev_tmp)
                    os.link(snapshot, prev_tmp)
                    os.replace(prev_tmp, self.data_dir / PREV_SNAPSHOT)
                os.replace(tmp, snapshot)
                _fsync_dir(self.data_dir)
                keep_from = base_gen
                for generation in self._journal_generations():
                    if generation < keep_from:
                        os.unlink(self._journal_path(generation))
                self._bump_changes()
            return snapshot.stat().st_size
        finally:
            os.close(compact_fd)

    @staticmethod
    def _read_header(path: Path) -> dict[str, Any]:
        with open(path, "rb") as handle:
            first = handle.readline()
        try:
            header = _loads(first)
        except ValueError as exc:
            raise StoreCorrupt(f"{path} line 1: not valid JSON ({exc})") from None
        if not isinstance(header, dict) or not isinstance(header.get("generation"), int):
            raise StoreCorrupt(f"{path} line 1: expected a header with a 'generation'")
        return header

    @staticmethod
    def _merged_lines(snapshot: Path | None, changes: dict[tuple[str, str], Doc | None]) -> Iterator[bytes]:
        """Old snapshot records (unchanged lines copied as they are), then records new in the journals."""
        if snapshot is not None:
            with open(snapshot, "rb") as handle:
                handle.readline()
                for line in handle:
                    record = _loads(line)
                    if "end" in record:
                        break
                    ref = (record["c"], record["k"])
                    if ref in changes:
                        doc = changes.pop(ref)
                        if doc is not None:
                            yield _dumps({"c": ref[0], "k": ref[1], "v": doc}) + b"\n"
                    else:
                        yield line
        for (name, key), doc in changes.items():
            if doc is not None:
                yield _dumps({"c": name, "k": key, "v": doc}) + b"\n"


__all__ = [
    "Collection",
    "JsonStore",
    "KeyExists",
    "StoreCorrupt",
    "StoreError",
    "SyncTransaction",
    "SyncTxCollection",
    "Transaction",
    "TxCollection",
]


def main(argv: list[str]) -> int:
    """``python -m core.jsondb check|compact DATA_DIR``: verify the files, or compact them now."""
    if len(argv) != 2 or argv[0] not in ("check", "compact"):
        print("usage: python -m core.jsondb check|compact DATA_DIR", file=sys.stderr)
        return 2
    command, data_dir = argv
    store = JsonStore(data_dir)
    try:
        if not store.data_dir.is_dir():
            raise StoreError(f"{data_dir}: no such directory")
        if command == "compact":
            # Background work: on a busy machine the server's event loop gets the CPU first.
            os.nice(10)
            print(store._compact_files())
            return 0
        with store._file_lock():
            loaded = store._load_files(repair=False)
    except StoreError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 1
    for name, table in sorted(loaded.tables.items()):
        print(f"{name}: {len(table.docs)} records, next id {table.next_id}")
    print(f"ok: snapshot generation {loaded.generation}, {loaded.offset} journal bytes after it")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
