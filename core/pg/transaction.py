"""`PgTransaction`: a store transaction on PostgreSQL, and the locks that make it atomic.

Transactions run under READ COMMITTED and take advisory locks, so a
read-modify-write is atomic against every other transaction on the database,
whichever instance runs it (see ``migrations/0001_initial.sql`` for the lock
functions):

* a keyed read or write of (collection, key) first locks that key, exclusive,
  until the transaction ends (this also covers a key nobody has written yet),
  then reads it with a fresh snapshot; documents read that way are cached for
  the rest of the transaction, since nobody else can change them;
* an equality read on an indexed field locks (collection, field, value),
  exclusive; any other filtered or whole-collection read locks the collection,
  exclusive;
* every write locks the collection shared, and the (collection, field, value)
  of each indexed field of the old and the new version, shared.

So no write can slip in between a transaction's read and its write (no lost
update, no phantom on what it read), while writers of different keys never
wait for each other. Deadlocks are detected by PostgreSQL and surface as
`StoreUnavailable` (HTTP 503, retry); nothing was committed then.

A put, an insert under a key or a delete is one statement that takes these
locks itself (``ts_prepare_write``), so outside a transaction it is a single
round trip in autocommit (`SingleWriteCollection`). Reads outside a
transaction take no locks: one statement sees one committed state.

Inside a transaction, writes other than an insert under a new key are queued
and sent together, one statement per collection, at commit or before the
next filtered read (which must see them); the statement takes the same locks
before it writes (locks are still only taken, never given back, before the
commit). Keyed reads see the queued versions.

BEGIN is sent only before the first statement that needs it. Until then keyed
reads lock their keys for the session (``ts_hold_*``), and when all the
transaction writes is one collection, that single write statement takes the
key locks over for its own transaction (``ts_trade_locks``) and is the commit.
The transaction of a token rotation is thus two round trips (the locked read,
the write) instead of four (BEGIN, the read, the write, COMMIT).
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from ..jsoncodec import dumps_str
from ..store import Cond, Doc, StoreError, check_name
from ..store_base import UNREAD, BaseTxCollection
from .connections import is_closed, kill
from .errors import connection_broken, translate, translated
from .tables import Layout, Params, json_array, jsonable, layout

ALLOCATE_ID = (
    "INSERT INTO id_counters AS c (collection, next_id) VALUES ($1, 2) "
    "ON CONFLICT (collection) DO UPDATE SET next_id = c.next_id + 1 RETURNING next_id - 1"
)
ADVANCE_IDS = (
    "INSERT INTO id_counters AS c (collection, next_id) VALUES ($1, $2) "
    "ON CONFLICT (collection) DO UPDATE SET next_id = greatest(c.next_id, EXCLUDED.next_id)"
)
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # U+0000 in JSON text (an escape not itself escaped)


def _lockable(equals: dict[str, Any]) -> dict[str, Any]:
    """The equality values a lock can name (a value JSON cannot hold matches nothing anyway)."""
    return {name: value for name, value in equals.items() if jsonable(value)}


class PgTransaction:
    """One connection, one transaction; what it read by key stays locked, and cached, until the end.

    Until it needs BEGIN, the transaction runs in autocommit: its keyed reads lock their keys for
    the session (``ts_hold_*``) instead, and if all it then writes is one collection, that single
    write statement is its commit. Every other statement (a filtered read, a write sent early, a
    second collection written) sends BEGIN first. The session's locks are released right after the
    commit or the rollback, or the connection is closed, which releases them too.

    A transaction made for one write outside any transaction (``single_write``) hands out
    `SingleWriteCollection`s: their put, delete and insert under a key are each one statement
    that commits on its own.
    """

    def __init__(self, conn: asyncpg.Connection, prefix: str = "", single_write: bool = False) -> None:
        self.conn = conn
        self.prefix = prefix
        self.single_write = single_write
        self.failed: str | None = None
        self.locked: dict[tuple[str, str], Doc | None] = {}
        # Writes not sent yet, by (collection, key): (blind, old, new). ``old`` is the version read
        # under the key's lock (None: none); a blind write's key was never read, so its lock and
        # old version are taken when it is sent; ``new`` None deletes.
        self.pending: dict[tuple[str, str], tuple[bool, Doc | None, Doc | None]] = {}
        self.wrote = False  # some write was sent: the commit is a durable write
        self.begun = False  # BEGIN was sent
        self.holds = False  # session-level key locks may be held (taken before BEGIN)
        self.held: list[tuple[str, str]] = []  # (collection, key) of each such lock

    def collection(self, name: str) -> "PgTxCollection":
        kind = SingleWriteCollection if self.single_write else PgTxCollection
        return kind(self, check_name(self.prefix + name))

    def check_usable(self) -> None:
        """After a database error PostgreSQL refuses every statement until the rollback: say so at once."""
        if self.failed is not None:
            raise StoreError(f"the transaction already failed: {self.failed}")

    async def run(self, awaitable: Any, in_block: bool = True) -> Any:
        """Await one statement (after BEGIN, unless ``in_block`` is false); a database error leaves
        the transaction unusable, so remember it."""
        if self.failed is not None:
            awaitable.close()
            self.check_usable()
        if in_block and not self.begun:
            try:
                await self._send(self.conn.execute("BEGIN"))
            except BaseException:
                awaitable.close()
                raise
            self.begun = True
        return await self._send(awaitable)

    async def _send(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except Exception as exc:
            new = translate(exc)
            self.failed = str(new) or type(new).__name__
            if connection_broken(exc):
                kill(self.conn)
            if new is exc:
                raise
            raise new from exc

    def hold(self, slot: tuple[str, str]) -> None:
        """Note a key lock taken for the session (before BEGIN): released after the commit, or traded to it."""
        self.holds = True
        self.held.append(slot)

    def fail(self, reason: str) -> None:
        """Mark the transaction spoilt, as PostgreSQL would after an error: it can only roll back."""
        self.failed = reason

    async def flush(self, final: bool = False) -> None:
        """Send the pending writes: one statement per collection (before a filtered read, and at commit).

        At commit, before BEGIN, writes to one collection are one statement in autocommit: the commit.
        """
        if not self.pending:
            return
        self.check_usable()
        self.wrote = True
        by_collection: dict[str, list[tuple[str, bool, Doc | None, Doc | None]]] = {}
        for (name, key), (blind, old, new) in self.pending.items():
            by_collection.setdefault(name, []).append((key, blind, old, new))
        self.pending = {}
        in_block = not final or len(by_collection) > 1
        # The commit in one statement takes over the session's key locks: held until it commits.
        trade = [] if in_block or self.begun else self.held
        for name, writes in by_collection.items():
            lay = layout(name)
            rows = [lay.row_values(key, new) for key, _, _, new in writes if new is not None]
            columns = [list(c) for c in zip(*rows)] if rows else [[] for _ in lay.row_casts()]
            columns = [json_array(c) if cast == "jsonb" else c for c, cast in zip(columns, lay.row_casts())]
            await self.run(
                self.conn.fetchval(
                    lay.flush_sql(deletes=any(new is None for _, _, _, new in writes)),
                    [key for key, blind, _, _ in writes if blind],
                    json_array([new for _, blind, _, new in writes if blind]),
                    json_array([old for _, blind, old, _ in writes if not blind]),
                    json_array([new for _, blind, _, new in writes if not blind]),
                    [key for key, _, _, new in writes if new is None],
                    *columns,
                    [coll for coll, _ in trade],
                    [key for _, key in trade],
                ),
                in_block,
            )
            if trade:
                self.holds = False
                self.held = []

    async def commit(self) -> None:
        """The pending writes, COMMIT if BEGIN was sent, then the session's key locks released."""
        await self.flush(final=True)
        if self.begun:
            with translated():
                await self.conn.execute("COMMIT; SELECT pg_advisory_unlock_all()" if self.holds else "COMMIT")
            self.begun = self.holds = False
            self.held = []
        elif self.holds:  # nothing written, or not in the write statement
            self.holds = False
            self.held = []
            try:  # committed already: a connection that cannot release its locks is closed instead
                await self.conn.execute("SELECT pg_advisory_unlock_all()")
            except Exception:
                kill(self.conn)

    async def abort(self) -> None:
        """Roll back and release the session's key locks; close the connection if that fails."""
        if is_closed(self.conn) or not (self.begun or self.holds):
            return
        sql = "; ".join(["ROLLBACK"] * self.begun + ["SELECT pg_advisory_unlock_all()"] * self.holds)
        try:
            await self.conn.execute(sql)
        except BaseException as exc:  # broken, or cancelled half-way: the server releases all on close
            kill(self.conn)
            if not isinstance(exc, Exception):
                raise
        else:
            self.begun = self.holds = False
            self.held = []


class PgTxCollection(BaseTxCollection):
    """A collection seen through one transaction: the primitives of `core.store_base.BaseTxCollection`."""

    def __init__(self, tx: PgTransaction, name: str) -> None:
        self.tx = tx
        self.name = name
        self.layout: Layout = layout(name)

    # -- locks and locked reads -------------------------------------------------------------

    async def _lookup(self, key: str) -> tuple[Doc | None, bool]:
        """The document under ``key``, locked until the transaction ends (cached: shared)."""
        self.tx.check_usable()
        slot = (self.name, key)
        if slot in self.tx.locked:
            return self.tx.locked[slot], True
        if self.tx.begun:
            rows = await self.tx.run(self.tx.conn.fetch(self.layout.get_function, key))
        else:  # no BEGIN yet: the key's lock is held for the session until the end
            self.tx.hold(slot)
            rows = await self.tx.run(self.tx.conn.fetch(self.layout.hold_function, key), in_block=False)
        doc = self.layout.to_doc(rows[0]) if rows else None
        self.tx.locked[slot] = doc
        return doc, True

    async def _lock_for_read(self, equals: dict[str, Any]) -> None:
        lockable = _lockable(equals)
        if lockable:
            await self.tx.run(self.tx.conn.fetchval("SELECT ts_find_lock($1, $2::jsonb)", self.name, lockable))
        else:
            await self.tx.run(self.tx.conn.execute("SELECT pg_advisory_xact_lock(ts_collection_lock($1))", self.name))

    async def _rows(self, conds: tuple[Cond, ...], equals: dict[str, Any], what: str = "*") -> list[asyncpg.Record]:
        await self.tx.flush()  # the filter runs in the database: it must see this transaction's writes
        await self._lock_for_read(equals)
        params = Params()
        where = self.layout.filter_sql(conds, equals, params)
        return await self.tx.run(self.tx.conn.fetch(self.layout.select_sql(where, what, what == "*"), *params.values))

    async def _select(self, conds: tuple[Cond, ...], equals: dict[str, Any]) -> tuple[list[Doc], bool]:
        return [self.layout.to_doc(r) for r in await self._rows(conds, equals)], False

    async def _items(self) -> tuple[list[tuple[str, Doc]], bool]:
        lay = self.layout
        return [(lay.key_of(r), lay.to_doc(r)) for r in await self._rows((), {})], False

    async def _count(self, conds: tuple[Cond, ...], equals: dict[str, Any]) -> int:
        rows = await self._rows(conds, equals, "count(*)")
        return int(rows[0][0])

    # -- writes -----------------------------------------------------------------------------

    async def _write(self, key: str, new: Doc | None, old: Doc | None) -> None:
        """Queue a write of ``key`` (sent with the others at commit, or before a filtered read).

        ``old`` is the version read under the key's lock; a blind write (`UNREAD`, a put of a key
        not read) takes the key's lock and its old version when it is sent. Several writes of one
        key become one, from the first old version to the last new one.
        """
        self.tx.check_usable()
        slot = (self.name, key)
        blind = old is UNREAD
        if blind and slot in self.tx.locked:
            old, blind = self.tx.locked[slot], False
        if new is not None:
            self.layout.row_values(key, new)  # a document the collection refuses fails here, at the call
            if "\x00" in key or _NUL_ESCAPE.search(dumps_str(new)):
                # What PostgreSQL would refuse when the write is sent; as then, the transaction is spoilt.
                self.tx.fail("PostgreSQL cannot store the character U+0000")
                raise ValueError(f"{self.name}: PostgreSQL cannot store the character U+0000 (key {key!r})")
        queued = self.tx.pending.get(slot)
        if queued is not None:
            if queued[2] is None and new is not None:  # re-created after a delete: a new row, as on its own
                await self.tx.flush()
                old, blind = None, False
            else:
                blind, old = queued[0], queued[1]
        self.tx.pending[slot] = (blind, None if blind else old, new)
        self.tx.locked[slot] = new

    async def _allocate_id(self) -> int:
        return int(await self.tx.run(self.tx.conn.fetchval(ALLOCATE_ID, self.name)))

    async def _raise_next_id(self, at_least: int) -> None:
        await self.tx.run(self.tx.conn.execute(ADVANCE_IDS, self.name, at_least))

    async def _insert_new(self, key: str, doc: Doc) -> bool:
        """A key this transaction has not read: one statement locks it and inserts unless it is taken."""
        if (self.name, key) in self.tx.locked:
            return await super()._insert_new(key, doc)
        self.tx.check_usable()
        values = self.layout.row_values(key, doc)
        self.tx.wrote = True
        rows = await self.tx.run(self.tx.conn.fetch(self.layout.insert_one_sql(), [doc], *values), not self.tx.single_write)
        if not rows:
            return False
        self.tx.locked[(self.name, key)] = doc
        return True

    async def _delete_matching(self, conds: tuple[Cond, ...], equals: dict[str, Any]) -> int:
        """Delete every match, each key locked first as a keyed delete would."""
        await self.tx.flush()
        lay, conn, run = self.layout, self.tx.conn, self.tx.run
        params = Params()
        where = lay.filter_sql(conds, equals, params)
        # Lock the likely victims' keys before the filter's lock, so a transaction that holds one
        # of them (and will write it) finishes first instead of deadlocking against us.
        guess = await run(conn.fetch(lay.select_sql(where, lay.key_column, False), *params.values))
        locked = {lay.key_of(r) for r in guess}
        if locked:
            await run(conn.execute("SELECT ts_lock_keys($1, $2::text[])", self.name, sorted(locked)))
        await self._lock_for_read(equals)
        rows = await run(conn.fetch(lay.select_sql(where), *params.values))
        keys = [lay.key_of(r) for r in rows]
        late = sorted(set(keys) - locked)
        if late:
            await run(conn.execute("SELECT ts_lock_keys($1, $2::text[])", self.name, late))
        if not keys:
            return 0
        self.tx.wrote = True
        await run(conn.execute(lay.delete_sql(), [lay.to_doc(r) for r in rows], [], keys))
        for key in keys:
            self.tx.locked[(self.name, key)] = None
        return len(keys)


class SingleWriteCollection(PgTxCollection):
    """The collection of a transaction that makes one write, outside any transaction.

    A put and a delete are then one statement each in autocommit (it locks the key and writes
    the index locks itself), and so is an insert under a key (`PgTxCollection._insert_new`):
    one round trip, committed when it returns. Other writes run as in any transaction.
    """

    async def _write(self, key: str, new: Doc | None, old: Doc | None) -> None:
        if old is not UNREAD or new is None:
            return await super()._write(key, new, old)
        self.tx.wrote = True
        await self.tx.run(self.tx.conn.fetch(self.layout.put_one_sql(), [new], *self.layout.row_values(key, new)), False)

    async def _delete(self, key: str) -> bool:
        self.tx.wrote = True
        return bool(await self.tx.run(self.tx.conn.fetch(self.layout.delete_one_sql(), key), False))
