"""The embedded JSON store: the single owner of all persisted data.

Plugins see a narrow, backend-neutral API:

* ``store.collection("auth.users")`` returns a `Collection` with sync reads
  (``get``, ``find``, ``all``, ``count``) served from memory, and async writes
  (``insert``, ``put``, ``update``, ``delete``) that return only once the
  change is durable on disk.
* ``async with store.transaction() as tx:`` is the one read-modify-write path.
  Inside it, ``tx.collection(name)`` reads the latest state and stages writes;
  they become visible and durable together when the block exits, or not at
  all if it raises.
* ``store.namespace("auth")`` scopes collection names to one plugin.

Every write takes an in-process lock and a cross-process ``fcntl`` lock on a
separate ``.lock`` file (never the data files), so two processes on one
``DATA_DIR`` cannot lose each other's updates. Files are replaced atomically
(temp file, fsync, ``os.replace``, directory fsync), so a crash never leaves a
half-written file behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import fcntl
import json
import os
import re
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

Doc = dict[str, Any]
_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
_FORMAT = 1


class StoreError(Exception):
    """Base class for store failures."""


class StoreCorrupt(StoreError):
    """A data file cannot be read; the message names the file and the problem."""


class KeyExists(StoreError):
    """``insert`` with a key that is already taken."""


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"invalid collection name {name!r}: use dotted lowercase words")
    return name


class _Table:
    """In-memory state of one collection."""

    __slots__ = ("docs", "next_id")

    def __init__(self, docs: dict[str, Doc] | None = None, next_id: int = 1) -> None:
        self.docs: dict[str, Doc] = docs or {}
        self.next_id = next_id

    def clone(self) -> "_Table":
        return _Table(dict(self.docs), self.next_id)


class _Reader:
    """Read methods shared by live collections and transaction views."""

    name: str

    def _table(self) -> _Table:
        raise NotImplementedError

    def get(self, key: Any) -> Doc | None:
        doc = self._table().docs.get(str(key))
        return copy.deepcopy(doc) if doc is not None else None

    def all(self) -> list[Doc]:
        return [copy.deepcopy(doc) for doc in self._table().docs.values()]

    def find(self, predicate: Callable[[Doc], bool] | None = None, **equals: Any) -> list[Doc]:
        """Documents matching every ``field=value`` and the optional predicate."""
        out = []
        for doc in self._table().docs.values():
            if all(doc.get(k) == v for k, v in equals.items()) and (predicate is None or predicate(doc)):
                out.append(copy.deepcopy(doc))
        return out

    def count(self) -> int:
        return len(self._table().docs)

    def __contains__(self, key: Any) -> bool:
        return str(key) in self._table().docs


class TxCollection(_Reader):
    """A collection as seen inside a transaction: reads see staged writes."""

    def __init__(self, tx: "Transaction", name: str) -> None:
        self._tx = tx
        self.name = name

    def _table(self) -> _Table:
        return self._tx._table(self.name, write=False)

    def insert(self, doc: Doc, key: Any = None) -> Doc:
        """Add ``doc``. Without ``key`` a fresh integer ``id`` is assigned; ids never repeat."""
        table = self._tx._table(self.name, write=True)
        doc = copy.deepcopy(doc)
        if key is None:
            key = table.next_id
            doc = {"id": key, **doc}
        key = str(key)
        if key in table.docs:
            raise KeyExists(f"{self.name}: key {key!r} exists")
        if key.isdigit():
            table.next_id = max(table.next_id, int(key) + 1)
        table.docs[key] = doc
        return copy.deepcopy(doc)

    def put(self, key: Any, doc: Doc) -> Doc:
        table = self._tx._table(self.name, write=True)
        table.docs[str(key)] = copy.deepcopy(doc)
        return copy.deepcopy(doc)

    def update(self, key: Any, changes: Doc) -> Doc | None:
        table = self._tx._table(self.name, write=True)
        current = table.docs.get(str(key))
        if current is None:
            return None
        updated = {**current, **copy.deepcopy(changes)}
        table.docs[str(key)] = updated
        return copy.deepcopy(updated)

    def delete(self, key: Any) -> bool:
        table = self._tx._table(self.name, write=True)
        return table.docs.pop(str(key), None) is not None

    def delete_where(self, predicate: Callable[[Doc], bool]) -> int:
        table = self._tx._table(self.name, write=True)
        doomed = [k for k, d in table.docs.items() if predicate(d)]
        for key in doomed:
            del table.docs[key]
        return len(doomed)


class Transaction:
    """Staged changes; applied by `Store.transaction` on success."""

    def __init__(self, store: "Store", prefix: str = "") -> None:
        self._store = store
        self._prefix = prefix
        self._staged: dict[str, _Table] = {}

    def _table(self, name: str, write: bool) -> _Table:
        if name in self._staged:
            return self._staged[name]
        live = self._store._tables.get(name) or _Table()
        if not write:
            return live
        self._staged[name] = live.clone()
        return self._staged[name]

    def collection(self, name: str) -> TxCollection:
        return TxCollection(self, _check_name(self._prefix + name))


class Collection(_Reader):
    """A live collection: sync reads from memory, durable async writes."""

    def __init__(self, store: "Store", name: str) -> None:
        self._store = store
        self.name = name

    def _table(self) -> _Table:
        return self._store._tables.get(self.name) or _Table()

    async def insert(self, doc: Doc, key: Any = None) -> Doc:
        async with self._store.transaction() as tx:
            return tx.collection(self.name).insert(doc, key)

    async def put(self, key: Any, doc: Doc) -> Doc:
        async with self._store.transaction() as tx:
            return tx.collection(self.name).put(key, doc)

    async def update(self, key: Any, changes: Doc) -> Doc | None:
        async with self._store.transaction() as tx:
            return tx.collection(self.name).update(key, changes)

    async def delete(self, key: Any) -> bool:
        async with self._store.transaction() as tx:
            return tx.collection(self.name).delete(key)

    async def delete_where(self, predicate: Callable[[Doc], bool]) -> int:
        async with self._store.transaction() as tx:
            return tx.collection(self.name).delete_where(predicate)


class Namespace:
    """A plugin's view of the store: collection names are prefixed with the plugin's name."""

    def __init__(self, store: "Store", prefix: str) -> None:
        self._store = store
        self.prefix = _check_name(prefix) + "."

    def collection(self, name: str) -> Collection:
        return self._store.collection(self.prefix + name)

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Transaction]:
        return self._store.transaction(prefix=self.prefix)


class Store:
    """Owns the data directory: loads it once, then serves reads from memory."""

    def __init__(self, data_dir: Path | str, executor: Executor | None = None) -> None:
        self.data_dir = Path(data_dir)
        self._executor = executor
        self._tables: dict[str, _Table] = {}
        self._stamps: dict[str, tuple[int, int, int]] = {}
        self._lock = asyncio.Lock()
        self._lock_file = self.data_dir / ".lock"

    # -- lifecycle -----------------------------------------------------------------

    def open(self) -> "Store":
        """Load every collection file; raise `StoreCorrupt` naming a bad file."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file.touch(exist_ok=True)
        with self._file_lock():
            self._reload_changed()
        return self

    async def close(self) -> None:
        """Wait for writes in progress; everything acknowledged is already on disk."""
        async with self._lock:
            pass

    # -- public API ------------------------------------------------------------------

    def collection(self, name: str) -> Collection:
        return Collection(self, _check_name(name))

    def namespace(self, prefix: str) -> Namespace:
        return Namespace(self, prefix)

    def collections(self) -> list[str]:
        return sorted(self._tables)

    @contextlib.asynccontextmanager
    async def transaction(self, prefix: str = "") -> AsyncIterator[Transaction]:
        """Serialized read-modify-write, in-process and across processes."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            lock_fd = await loop.run_in_executor(self._executor, self._acquire_and_reload)
            try:
                tx = Transaction(self, prefix)
                yield tx
                if tx._staged:
                    await loop.run_in_executor(self._executor, self._persist, tx._staged)
                    self._tables.update(tx._staged)
            finally:
                os.close(lock_fd)

    # -- files -------------------------------------------------------------------------

    def path_for(self, name: str) -> Path:
        return self.data_dir / f"{name}.json"

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _acquire_and_reload(self) -> int:
        fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._reload_changed()
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _reload_changed(self) -> None:
        """Pick up files written by another process since we last looked."""
        for path in sorted(self.data_dir.glob("*.json")):
            name = path.name[: -len(".json")]
            if not _NAME.match(name):
                continue
            st = path.stat()
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if self._stamps.get(name) == stamp:
                continue
            self._tables[name] = self._load(path)
            self._stamps[name] = stamp

    @staticmethod
    def _load(path: Path) -> _Table:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreCorrupt(f"{path}: not valid JSON ({exc}); restore it from a backup or remove it") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("records"), dict):
            raise StoreCorrupt(f"{path}: expected an object with a 'records' object")
        next_id = raw.get("next_id", 1)
        if not isinstance(next_id, int):
            raise StoreCorrupt(f"{path}: 'next_id' must be an integer")
        return _Table(raw["records"], next_id)

    def _persist(self, staged: dict[str, _Table]) -> None:
        for name, table in staged.items():
            path = self.path_for(name)
            body = json.dumps(
                {"format": _FORMAT, "next_id": table.next_id, "records": table.docs},
                indent=1,
                ensure_ascii=False,
            )
            tmp = path.with_suffix(".json.tmp")
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            st = path.stat()
            self._stamps[name] = (st.st_ino, st.st_size, st.st_mtime_ns)
        dir_fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
