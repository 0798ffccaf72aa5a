"""`JsonStore`: the JSON backend of `core.store.Store`, orchestrating the tables, journals, snapshots and shared files.

Reads are answered from the in-memory tables (after a look at the shared
change counter: catching up with other processes costs nothing when nothing
changed). A transaction takes an in-process lock and the cross-process
``.lock``, catches up with the files, runs, and queues its journal line; one
writer task appends and fsyncs each batch of queued lines, applies them to the
tables, and only then acknowledges them. The lock is kept across transactions
that follow each other closely and let go between batches (after 0.2 s, or at
once when a compaction asks). When the journal outgrows a share of the
snapshot a compaction runs in a child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

from ..store import Doc, Health, StoreError, StoreUnavailable, check_field, check_name
from ..store_base import BaseStore
from . import compaction
from .collection import Collection
from .journal import Journals, replay
from .load import Loaded, load
from .shared import LOCK, ChangeCounter, FileLock
from .tables import EMPTY, NO_CHANGES, Changes, Table, apply
from .transaction import Entry, SyncTransaction, Transaction

log = logging.getLogger("turnstile.store")


class _NeedReload(Exception):
    """The journal this process was following is gone (compacted away by another process)."""


def _close_when_acquired(future: "asyncio.Future[int]") -> None:
    if not future.cancelled() and future.exception() is None:
        os.close(future.result())


class JsonStore(BaseStore):
    """Owns the data directory: loads it once, then serves reads from memory."""

    backend = "json"

    def __init__(
        self,
        data_dir: Path | str,
        *,
        compact_min_bytes: int = 4 << 20,
        compact_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.compact_min_bytes = compact_min_bytes
        self.compact_ratio = compact_ratio
        self._tables: dict[str, Table] = {}
        self._index_fields: dict[str, set[str]] = {}
        self._lock = asyncio.Lock()
        self._file_lock = FileLock(self.data_dir / LOCK)
        self._journals = Journals(self.data_dir)
        self._counter = ChangeCounter(self.data_dir)
        self._io: ThreadPoolExecutor | None = None
        self._compactor: ThreadPoolExecutor | None = None
        self._generation = 1
        self._watched_generation = 0
        self._watched: tuple[str, str] = ("", "")
        self._offset = 0
        self._seen_size = 0
        self._snapshot_bytes = 0
        self._flock_fd: int | None = None
        self._flock_since = 0.0
        self._yield_requested = threading.Event()
        self._pending: list[Entry] = []
        self._unwritten: list[Entry] = []
        self._pending_view: Changes = {}
        self._pending_ids: dict[str, int] = {}
        self._writer: asyncio.Task[None] | None = None
        self._compaction: asyncio.Future[Any] | None = None
        self._opened = False
        self._closed = False
        self._last_error: str | None = None
        #: Called with the seconds a transaction that wrote took until durable (the app's metric).
        self.on_write: Callable[[float], None] | None = None

    # -- lifecycle -----------------------------------------------------------------

    def open(self) -> "JsonStore":
        """Load the snapshot and journals; raise `StoreCorrupt` naming a bad file."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._file_lock.held():
            loaded = self._load_files(repair=True)
            self._counter.open()
            self._counter.bump()  # a repair may have trimmed a journal
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
        self._counter.close()
        for pool in (self._io, self._compactor):
            if pool is not None:
                pool.shutdown(wait=False)

    async def check(self) -> Health:
        """Whether the store can write, from a real durable write (temp file, fsync, unlink) in ``DATA_DIR``.

        The details are sizes and counts only: a health check must not tell the world where the data lives.
        """
        writable = self._opened and not self._closed and self._last_error is None
        error = self._last_error
        if self._closed:  # shutting down: its I/O thread is gone, and no write would be taken anyway
            writable, error = False, error or "closed"
        else:
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

    def _open_collection(self, name: str) -> Collection:
        return Collection(self, name)

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

    async def flush(self) -> None:
        """Wait until every transaction committed so far is durable."""
        futures = [e.future for e in self._pending if e.future is not None]
        if futures:
            await asyncio.gather(*(asyncio.shield(f) for f in futures), return_exceptions=True)

    @contextlib.asynccontextmanager
    async def transaction(self, prefix: str = "") -> AsyncIterator[Transaction]:
        """Serialized read-modify-write, in-process and across processes; durable on exit."""
        entry: Entry | None = None
        started = time.perf_counter()
        async with self._lock:
            try:
                if self._closed:  # a request still running while the server shuts down: retry elsewhere
                    raise StoreUnavailable("the store is closed")
                if self._flock_fd is not None and (
                    self._yield_requested.is_set() or time.monotonic() - self._flock_since > 0.2
                ):
                    # Let a compaction or another process have the lock between batches.
                    await self.flush()
                    self._release_flock()
                await self._ensure_flock()
                tx = Transaction(self, prefix)
                yield tx
                entry = tx.entry()
                if entry is not None:
                    entry.future = asyncio.get_running_loop().create_future()
                    self._enqueue(entry)
            finally:
                if entry is None:
                    self._maybe_release_flock(lock_held=True)
        if entry is not None and entry.future is not None:
            await asyncio.shield(entry.future)
            if self.on_write is not None:
                self.on_write(time.perf_counter() - started)

    @contextlib.contextmanager
    def transaction_sync(self, prefix: str = "") -> Iterator[SyncTransaction]:
        """A blocking transaction for scripts and tests (no event loop running in this thread)."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        if self._lock.locked() or self._pending or self._flock_fd is not None:
            raise StoreError("transaction_sync cannot run while async transactions are in progress")
        fd = self._file_lock.acquire()
        self._flock_fd = fd
        try:
            self._catch_up_locked()
            tx = SyncTransaction(self, prefix)
            yield tx
            entry = tx.entry()
            if entry is not None:
                try:
                    self._offset = self._append(entry.line)
                except BaseException:
                    self._truncate_to(self._offset)
                    raise
                self._seen_size = self._offset
                self._apply(entry.changes, entry.ids)
        finally:
            self._flock_fd = None
            os.close(fd)

    async def compact(self) -> None:
        """Fold the journals into a new snapshot now, in a child process."""
        if self._compaction is None or self._compaction.done():
            self._start_compaction()
        assert self._compaction is not None
        await asyncio.shield(self._compaction)

    # -- what the collections read -------------------------------------------------------

    def table(self, name: str) -> Table:
        """The committed table of ``name``, after catching up with other processes (free when nothing changed)."""
        self._refresh()
        return self._tables.get(name) or EMPTY

    def committed(self, name: str) -> Table:
        """The committed table of ``name`` as it is (a transaction holds the lock: it is caught up)."""
        return self._tables.get(name) or EMPTY

    def in_flight(self, name: str) -> dict[str, Doc | None]:
        """Committed changes to ``name`` still being fsynced, by key (``None``: deleted)."""
        return self._pending_view.get(name) or NO_CHANGES

    def in_flight_next_id(self, name: str) -> int:
        """The id counter of ``name`` as the changes still being fsynced leave it (0: they leave it alone)."""
        return self._pending_ids.get(name, 0)

    # -- the cross-process lock ------------------------------------------------------

    def _io_pool(self) -> ThreadPoolExecutor:
        if self._io is None:
            self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnstile-store")
        return self._io

    async def _ensure_flock(self) -> None:
        """Hold the cross-process lock and be caught up with the files."""
        if self._flock_fd is not None:
            return
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._io_pool(), self._file_lock.acquire)
        try:
            fd = await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(_close_when_acquired)  # the lock arrives later: let it go then
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

    def _enqueue(self, entry: Entry) -> None:
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
                    self._apply(entry.changes, entry.ids)
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
        detail = f"write to {self._journals.path(self._generation)} failed: {exc}"
        log.error("store: %s", detail)
        # check() feeds the public health check: say what went wrong, never where on disk.
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
        """Append journal lines and fsync them (lock held), then tell the other processes; returns the new end offset."""
        end = self._journals.append(self._generation, self._offset, data)
        self._counter.bump()
        return end

    def _truncate_to(self, offset: int) -> None:
        """Drop bytes past ``offset`` (a failed write); never grows the file."""
        with contextlib.suppress(OSError):
            if self._journals.truncate(self._generation, offset):
                self._counter.bump()

    def _apply(self, changes: Changes, ids: dict[str, int]) -> None:
        """Apply changes to the live tables (new tables get the indexes asked for)."""
        apply(self._tables, changes, ids, self._index_fields)

    # -- following the files -------------------------------------------------------------

    def _load_files(self, repair: bool) -> Loaded:
        loaded = load(self.data_dir, repair)
        for name, fields in self._index_fields.items():
            for field in fields:
                if name in loaded.tables:
                    loaded.tables[name].add_index(field)
        return loaded

    def _install(self, loaded: Loaded) -> None:
        self._tables = loaded.tables
        self._generation = loaded.generation
        self._offset = self._seen_size = loaded.offset
        self._snapshot_bytes = loaded.snapshot_bytes

    def _refresh(self) -> None:
        """Cheap check on reads: pick up lines other processes appended since we last looked."""
        # While this process waits for the lock it still catches up: another may have acknowledged writes meanwhile.
        if not self._opened or self._flock_fd is not None or self._pending:
            return
        changes = self._counter.now()
        if changes is not None and changes == self._counter.seen:
            return  # no process has changed the files since this one caught up
        if self._watched_generation != self._generation:
            # Path objects cost more than the two system calls below; build the strings once per generation.
            self._watched = (str(self._journals.path(self._generation)), str(self._journals.path(self._generation + 1)))
            self._watched_generation = self._generation
        current, following = self._watched
        try:
            size = os.stat(current).st_size
        except FileNotFoundError:
            size = -1
        # os.access, not os.path.exists: a missing file (the usual answer) then costs no exception.
        if size == self._seen_size and not os.access(following, os.F_OK):
            self._counter.seen = changes
            return
        try:
            self._catch_up()
        except _NeedReload:
            try:
                with self._file_lock.held(blocking=False):
                    self._install(self._load_files(repair=False))
            except BlockingIOError:
                return  # a writer holds the lock: serve what we have, the next look catches up
        self._counter.seen = changes

    def _catch_up_locked(self) -> None:
        try:
            self._catch_up()
        except _NeedReload:
            log.warning("store: %s was compacted by another process; reloading", self.data_dir)
            self._install(self._load_files(repair=False))
        self._counter.seen = self._counter.now()  # nobody else can change the files while we hold the lock

    def _catch_up(self) -> None:
        """Apply journal lines appended by other processes, following generations forward."""
        while True:
            path = self._journals.path(self._generation)
            frozen = os.path.exists(self._journals.path(self._generation + 1))
            try:
                with open(path, "rb") as handle:
                    handle.seek(self._offset)
                    data = handle.read()
                    size = self._offset + len(data)
            except FileNotFoundError:
                if self._offset == 0 and not frozen and not self._journals.generations():
                    return  # nothing written yet
                raise _NeedReload() from None
            if data:
                self._offset += replay(path, data, self._offset, self._apply)
            self._seen_size = size
            if not frozen:
                return
            self._generation += 1
            self._offset = self._seen_size = 0

    # -- compaction ----------------------------------------------------------------------

    def _start_compaction(self) -> None:
        if self._compactor is None:
            self._compactor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnstile-compact")
        loop = asyncio.get_running_loop()
        self._compaction = loop.run_in_executor(self._compactor, self._compact_in_child)
        self._compaction.add_done_callback(self._compaction_done)

    def _compact_in_child(self) -> int:
        """Compaction runs in a child process, so it never competes with the event loop for the GIL."""
        self._yield_requested.set()  # transactions let go of the lock between batches meanwhile
        try:
            return compaction.run_in_child(self.data_dir)
        finally:
            self._yield_requested.clear()

    def _compaction_done(self, future: "asyncio.Future[Any]") -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error("store: compaction of %s failed: %s", self.data_dir, exc)
        elif future.result():
            self._snapshot_bytes = future.result()
