"""`PgStore`: the store interface on PostgreSQL (asyncpg, a pool per instance).

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
round trip in autocommit. Reads outside a transaction take no locks: one
statement sees one committed state.

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

Reads outside a transaction that are identical and asked for in the same turn
of the event loop go out as one statement (`PgStore._read`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any, AsyncIterator, Callable

import asyncpg

from ..store import Cond, Doc, Health, KeyExists, StoreError, StoreUnavailable, check_field, check_name
from . import jsoncodec
from .errors import connection_broken, translate, translated
from .migrate import migrate
from .startup import CONNECT_TIMEOUT, Target, first_connection, parse_url
from .tables import Layout, Params, json_array, layout

ACQUIRE_TIMEOUT = 10.0  # a request waits this long for a free connection, then gets a 503
COMMAND_TIMEOUT = 30.0  # no statement (lock waits included) runs longer
CHECK_TIMEOUT = 2.0  # /healthz answers within this even when the database is gone
CLOSE_TIMEOUT = 10.0
KEEP_IDLE = 30.0  # a connection unused this long goes back to the pool, whose lifetime limit then applies
DDL_LOCK = 7_305_514_002_931_110_002  # serializes CREATE INDEX between instances
ALLOCATE_ID = (
    "INSERT INTO id_counters AS c (collection, next_id) VALUES ($1, 2) "
    "ON CONFLICT (collection) DO UPDATE SET next_id = c.next_id + 1 RETURNING next_id - 1"
)
ADVANCE_IDS = (
    "INSERT INTO id_counters AS c (collection, next_id) VALUES ($1, $2) "
    "ON CONFLICT (collection) DO UPDATE SET next_id = greatest(c.next_id, EXCLUDED.next_id)"
)
MAX_ID = 2**53
_RETRY = object()  # a shared read's first caller was cancelled: read again
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # U+0000 in JSON text (an escape not itself escaped)
SERVER_SETTINGS = {
    "application_name": "turnstile",
    "lock_timeout": "10s",  # a lock wait this long is a 503 (retry), not a hung request
    "idle_in_transaction_session_timeout": "60s",  # a frozen instance cannot hold locks forever
    "jit": "off",  # compiling a big scan costs more than it saves for these short queries
}


def _kill(conn: asyncpg.Connection) -> None:
    """Terminate a connection; asyncpg may already have detached it from the pool after a loss."""
    try:
        conn.terminate()
    except asyncpg.InterfaceError:
        pass


def _closed(conn: asyncpg.Connection) -> bool:
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:  # detached from the pool: it was closed
        return True


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """Before a connection goes back to the pool: end a transaction left open (after a cancellation).

    asyncpg's default reset sends RESET ALL, UNLISTEN and friends on every release, a round trip
    each time; the store never changes session state, and its advisory locks are transaction-scoped.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def _setup_connection(conn: asyncpg.Connection) -> None:
    """Documents cross the wire as JSON text, encoded like the JSON store encodes them."""
    await conn.set_type_codec("jsonb", encoder=jsoncodec.dumps, decoder=jsoncodec.loads, schema="pg_catalog")


def _prepare(doc: Any) -> Doc:
    if not isinstance(doc, dict):
        raise TypeError(f"a document must be a dict, not {type(doc).__name__}")
    return jsoncodec.copy(doc)


def _moves_ids(key: str) -> bool:
    """A numeric key moves the id counter past it on insert, as on the JSON store (if it could be an id)."""
    return key.isascii() and key.isdigit() and int(key) < MAX_ID


def _check_filter(conds: tuple[Any, ...], equals: dict[str, Any]) -> None:
    for cond in conds:
        if not isinstance(cond, Cond):
            raise TypeError(f"a filter is a Cond (where('field') < value) or field=value, not {type(cond).__name__}")
    for name in equals:
        check_field(name)


def _lockable(equals: dict[str, Any]) -> dict[str, Any]:
    """The equality values a lock can name (a value JSON cannot hold matches nothing anyway)."""
    out = {}
    for name, value in equals.items():
        if isinstance(value, tuple):
            continue
        try:
            jsoncodec.dumps(value)
        except TypeError:
            continue
        out[name] = value
    return out


class PgStore:
    """The store on PostgreSQL; `connect` migrates the schema and opens the pool."""

    backend = "postgres"

    def __init__(self, pool: asyncpg.Pool, target: Target, pool_size: int, schema_version: int) -> None:
        self._pool = pool
        self._target = target
        self.pool_size = pool_size
        self.schema_version = schema_version
        self._indexed: set[tuple[str, str]] = set()
        self._server_version = ""
        self._closed = False
        self._kept: list[tuple[asyncpg.Connection, float]] = []  # idle connections kept out of the pool, newest last
        self._waiting = 0  # requests waiting in the pool for a connection
        self._batches: dict[tuple[Any, ...], list[asyncio.Future[Any]]] = {}  # reads being gathered (`_read`)
        #: Called with the seconds a write (a transaction that wrote) took until committed (the app's metric).
        self.on_write: Callable[[float], None] | None = None

    @classmethod
    async def connect(cls, url: str, pool_size: int = 10) -> "PgStore":
        """Check the URL, reach the server, migrate the schema, open the pool; one-line `StoreError`s."""
        target = parse_url(url)
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise StoreError(f"DATABASE_POOL_SIZE must be a positive integer, not {pool_size!r}")
        conn = await first_connection(target)
        try:
            version = await migrate(conn)
            server_version = str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()
        try:
            pool = await asyncpg.create_pool(
                target.dsn,
                min_size=0,  # no floor to restore in the background (asyncpg logs a traceback per failed try)
                max_size=pool_size,
                init=_setup_connection,
                reset=_reset_connection,
                timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT,
                max_inactive_connection_lifetime=300,
                server_settings=SERVER_SETTINGS,
            )
        except Exception as exc:
            raise StoreError(f"cannot open the connection pool ({target.describe()}): {translate(exc)}") from None
        store = cls(pool, target, pool_size, version)
        store._server_version = server_version
        return store

    # -- connections ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection, `StoreUnavailable` when none can be had in time.

        A connection that served a request without error is kept for the next one instead of going
        back through the pool: asyncpg's acquire and release (timeout, shield, a task) cost about as
        much CPU as the query itself. The pool still bounds the number of connections, opens new ones
        and takes back every connection that failed or that a waiting request needs.
        """
        if self._closed:
            raise StoreUnavailable("the store is closed (the server is stopping)")
        conn = await self._take_kept()
        if conn is None:
            conn = await self._acquire()
        try:
            yield conn
        except BaseException as exc:
            if connection_broken(exc) or connection_broken(exc.__cause__ or exc):
                _kill(conn)  # never hand a confused connection to the next request
            await self._release(conn)
            raise
        if self._waiting or self._closed or _closed(conn) or conn.is_in_transaction():
            await self._release(conn)
        else:
            self._kept.append((conn, time.monotonic()))
            if self._kept[0][1] < time.monotonic() - KEEP_IDLE:  # the oldest has not been needed for a while
                await self._release(self._kept.pop(0)[0])

    async def _take_kept(self) -> asyncpg.Connection | None:
        while self._kept:
            conn = self._kept.pop()[0]
            if not _closed(conn):
                return conn
            await self._release(conn)  # the pool replaces it
        return None

    async def _acquire(self) -> asyncpg.Connection:
        self._waiting += 1
        try:
            return await self._pool.acquire(timeout=ACQUIRE_TIMEOUT)
        except asyncio.TimeoutError:
            raise StoreUnavailable(
                f"no PostgreSQL connection within {ACQUIRE_TIMEOUT:g}s "
                f"(all {self.pool_size} of DATABASE_POOL_SIZE busy, or the server does not answer)"
            ) from None
        except Exception as exc:
            raise translate(exc) from exc
        finally:
            self._waiting -= 1

    async def _release(self, conn: asyncpg.Connection) -> None:
        try:
            await self._pool.release(conn)
        except Exception:  # asyncpg terminated it; the pool opens another on the next acquire
            pass

    async def _read(self, sql: str, *args: Any, one: bool = False) -> tuple[Any, bool]:
        """One read statement outside a transaction: (its rows or value, whether other callers share them).

        Identical reads asked for during one turn of the event loop go to the database as one
        statement, sent on the next turn: after every one of them was asked for, so each still sees
        every write acknowledged before it was asked for. Under load, concurrent requests for the same
        data (a hot list, one user's record) then cost one round trip instead of one each. Shared rows
        hold shared decoded documents: the caller copies what it hands out (`_docs`).
        """
        key = (sql, one, args, tuple(map(type, args)))  # 1, 1.0 and True are equal keys, but not equal parameters
        try:
            waiters = self._batches.get(key)
        except TypeError:  # a parameter that cannot be hashed (a list): read on its own
            return await self._read_now(sql, args, one), False
        if waiters is not None:  # joined: the first caller reads for us
            waiter = asyncio.get_running_loop().create_future()
            waiters.append(waiter)
            result = await waiter
            if result is _RETRY:  # the first caller was cancelled: read again
                return await self._read(sql, *args, one=one)
            return result, True
        waiters = self._batches[key] = []
        try:
            try:
                await asyncio.sleep(0)  # the rest of this turn of the loop may join
            finally:
                del self._batches[key]
            result = await self._read_now(sql, args, one)
        except asyncio.CancelledError:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(_RETRY)
            raise
        except BaseException as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            raise
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(result)
        return result, bool(waiters)

    async def _read_now(self, sql: str, args: tuple[Any, ...], one: bool) -> Any:
        """One statement outside a transaction; tried again once if a pooled connection turns out dead.

        A failure to connect is not retried: the database is down, and the caller should hear so now.
        """
        for attempt in (1, 2):
            async with self._connection() as conn:
                try:
                    if one:
                        return await conn.fetchval(sql, *args)
                    return await conn.fetch(sql, *args)
                except Exception as exc:
                    if attempt == 2 or not connection_broken(exc):
                        new = translate(exc)
                        if new is exc:
                            raise
                        raise new from exc
                    _kill(conn)
        raise AssertionError("unreachable")

    async def _write_once(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """One write statement in autocommit: its own transaction, durable when this returns. Never retried."""
        started = time.perf_counter()
        async with self._connection() as conn:
            with translated():
                rows = await conn.fetch(sql, *args)
        if self.on_write is not None:
            self.on_write(time.perf_counter() - started)
        return rows

    # -- the interface --------------------------------------------------------------------

    def collection(self, name: str) -> "PgCollection":
        return PgCollection(self, check_name(name))

    @contextlib.asynccontextmanager
    async def transaction(self, prefix: str = "") -> AsyncIterator["PgTransaction"]:
        """One database transaction; committed when the block exits, rolled back if it raises.

        BEGIN goes out only before the first statement that needs it (`PgTransaction._run`): a body
        that reads keys and then writes one collection (a token rotation, a login) is its locked
        reads and one write statement, which commits on its own; two round trips fewer.
        """
        started = time.perf_counter()
        async with self._connection() as conn:
            tx = PgTransaction(self, conn, prefix)
            try:
                yield tx
                if tx.failed is not None:
                    raise StoreError(f"the transaction was rolled back after an earlier error: {tx.failed}")
                await tx._commit()
            except BaseException:
                await tx._abort()
                raise
        if tx.wrote and self.on_write is not None:
            self.on_write(time.perf_counter() - started)

    async def ensure_index(self, collection: str, field: str) -> None:
        """An index for ``find(field=value)``, and the field's locks for writers of every instance."""
        check_name(collection)
        check_field(field)
        if (collection, field) in self._indexed:
            return
        lay = layout(collection)
        ddl = lay.index_ddl(field)
        async with self._connection() as conn:
            with translated():
                known = await conn.fetchval(
                    "SELECT true FROM indexed_fields WHERE collection = $1 AND field = $2", collection, field
                )
                if not known:
                    if ddl:
                        await conn.execute("SELECT pg_advisory_lock($1)", DDL_LOCK)
                        try:
                            await conn.execute(ddl)
                        finally:
                            await conn.execute("SELECT pg_advisory_unlock($1)", DDL_LOCK)
                    # Registered under the collection lock held exclusive: every write in progress
                    # finishes first, and every later one takes this field's locks too.
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock(ts_collection_lock($1))", collection)
                        await conn.execute(
                            "INSERT INTO indexed_fields (collection, field) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                            collection,
                            field,
                        )
        self._indexed.add((collection, field))

    async def collections(self) -> list[str]:
        rows, _ = await self._read(
            "SELECT DISTINCT collection FROM documents"
            " UNION SELECT collection FROM id_counters WHERE next_id > 1"
            " UNION SELECT 'auth.users' WHERE EXISTS (SELECT 1 FROM users)"
            " UNION SELECT 'auth.sessions' WHERE EXISTS (SELECT 1 FROM sessions)"
        )
        return sorted(r[0] for r in rows)

    async def id_counter(self, collection: str) -> int:
        check_name(collection)
        value, _ = await self._read("SELECT next_id FROM id_counters WHERE collection = $1", collection, one=True)
        return int(value) if value is not None else 1

    async def advance_id_counter(self, collection: str, at_least: int) -> None:
        check_name(collection)
        if isinstance(at_least, bool) or not isinstance(at_least, int):
            raise TypeError(f"an id counter is an integer, not {type(at_least).__name__}")
        if not 1 <= at_least < MAX_ID:
            raise ValueError(f"an id counter must be between 1 and 2**53, not {at_least}")
        if at_least > 1:
            async with self.transaction() as tx:
                await tx._run(tx.conn.execute(ADVANCE_IDS, collection, at_least))

    async def check(self) -> Health:
        """A durable write to ``health_probe`` within `CHECK_TIMEOUT`; no URL or password in the answer."""
        details: dict[str, Any] = {
            "pool_size": self.pool_size,
            "idle": self._pool.get_idle_size() + len(self._kept),
            "open": self._pool.get_size(),
            "schema_version": self.schema_version,
            "server_version": self._server_version,
        }
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                async with self._connection() as conn:
                    with translated():
                        await conn.execute(
                            "INSERT INTO health_probe (id, at) VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET at = now()"
                        )
        except TimeoutError:
            return Health(self.backend, False, f"PostgreSQL did not answer within {CHECK_TIMEOUT:g}s", details)
        except Exception as exc:
            return Health(self.backend, False, str(translate(exc)), details)
        return Health(self.backend, True, None, details)

    async def flush(self) -> None:
        """Nothing to wait for: a write is acknowledged only after PostgreSQL committed it."""

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        while self._kept:
            await self._release(self._kept.pop()[0])
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT)
        except Exception:
            self._pool.terminate()


class PgCollection:
    """A collection outside any transaction: each read one statement, each write a transaction of its own."""

    def __init__(self, store: PgStore, name: str) -> None:
        self.store = store
        self.name = name
        self.layout: Layout = layout(name)

    def _docs(self, rows: list[asyncpg.Record], shared: bool) -> list[Doc]:
        """The documents of ``rows``; private copies when the rows are shared with other callers."""
        to_doc = self.layout.to_doc
        if shared:
            return [jsoncodec.copy(to_doc(r)) for r in rows]
        return [to_doc(r) for r in rows]

    async def get(self, key: Any) -> Doc | None:
        lay = self.layout
        rows, shared = await self.store._read(lay.select_sql(f"{lay.key_column} = $1", order=False), str(key))
        return self._docs(rows, shared)[0] if rows else None

    async def exists(self, key: Any) -> bool:
        lay = self.layout
        found, _ = await self.store._read(lay.select_sql(f"{lay.key_column} = $1", "true", False), str(key), one=True)
        return bool(found)

    async def all(self) -> list[Doc]:
        return self._docs(*await self.store._read(self.layout.select_sql()))

    async def items(self) -> list[tuple[str, Doc]]:
        rows, shared = await self.store._read(self.layout.select_sql())
        return list(zip([self.layout.key_of(r) for r in rows], self._docs(rows, shared)))

    async def find(self, *conds: Cond, **equals: Any) -> list[Doc]:
        _check_filter(conds, equals)
        params = Params()
        where = self.layout.filter_sql(conds, equals, params)
        return self._docs(*await self.store._read(self.layout.select_sql(where), *params.values))

    async def count(self, *conds: Cond, **equals: Any) -> int:
        _check_filter(conds, equals)
        params = Params()
        where = self.layout.filter_sql(conds, equals, params)
        value, _ = await self.store._read(self.layout.select_sql(where, "count(*)", False), *params.values, one=True)
        return int(value)

    async def insert(self, doc: Doc, key: Any = None) -> Doc:
        if key is None or _moves_ids(str(key)):  # the id counter moves too: a transaction
            async with self.store.transaction() as tx:
                return await tx._collection(self.name).insert(doc, key)
        doc, key = _prepare(doc), str(key)
        rows = await self.store._write_once(self.layout.insert_one_sql(), [doc], *self.layout.row_values(key, doc))
        if not rows:
            raise KeyExists(f"{self.name}: key {key!r} exists")
        return jsoncodec.copy(doc)

    async def put(self, key: Any, doc: Doc) -> Doc:
        doc, key = _prepare(doc), str(key)
        await self.store._write_once(self.layout.put_one_sql(), [doc], *self.layout.row_values(key, doc))
        return jsoncodec.copy(doc)

    async def update(self, key: Any, changes: Doc) -> Doc | None:
        async with self.store.transaction() as tx:
            return await tx._collection(self.name).update(key, changes)

    async def delete(self, key: Any) -> bool:
        return bool(await self.store._write_once(self.layout.delete_one_sql(), str(key)))

    async def delete_where(self, *conds: Cond, **equals: Any) -> int:
        if not conds and not equals:
            raise ValueError("delete_where needs a filter; delete documents one by one to empty a collection")
        _check_filter(conds, equals)
        async with self.store.transaction() as tx:
            return await tx._collection(self.name).delete_where(*conds, **equals)


class PgTransaction:
    """One connection, one transaction; what it read by key stays locked, and cached, until the end.

    Until it needs BEGIN, the transaction runs in autocommit: its keyed reads lock their keys for
    the session (``ts_hold_*``) instead, and if all it then writes is one collection, that single
    write statement is its commit. Every other statement (a filtered read, a write sent early, a
    second collection written) sends BEGIN first. The session's locks are released right after the
    commit or the rollback, or the connection is closed, which releases them too.
    """

    def __init__(self, store: PgStore, conn: asyncpg.Connection, prefix: str) -> None:
        self.store = store
        self.conn = conn
        self.prefix = prefix
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
        return self._collection(check_name(self.prefix + name))

    def _collection(self, name: str) -> "PgTxCollection":
        return PgTxCollection(self, name)

    def check_usable(self) -> None:
        """After a database error PostgreSQL refuses every statement until the rollback: say so at once."""
        if self.failed is not None:
            raise StoreError(f"the transaction already failed: {self.failed}")

    async def _run(self, awaitable: Any, in_block: bool = True) -> Any:
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
                _kill(self.conn)
            if new is exc:
                raise
            raise new from exc

    async def _flush(self, final: bool = False) -> None:
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
            await self._run(
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

    async def _commit(self) -> None:
        """The pending writes, COMMIT if BEGIN was sent, then the session's key locks released."""
        await self._flush(final=True)
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
                _kill(self.conn)

    async def _abort(self) -> None:
        """Roll back and release the session's key locks; close the connection if that fails."""
        if _closed(self.conn) or not (self.begun or self.holds):
            return
        sql = "; ".join(["ROLLBACK"] * self.begun + ["SELECT pg_advisory_unlock_all()"] * self.holds)
        try:
            await self.conn.execute(sql)
        except BaseException as exc:  # broken, or cancelled half-way: the server releases all on close
            _kill(self.conn)
            if not isinstance(exc, Exception):
                raise
        else:
            self.begun = self.holds = False
            self.held = []


class PgTxCollection:
    """A collection seen through one transaction."""

    def __init__(self, tx: PgTransaction, name: str) -> None:
        self.tx = tx
        self.name = name
        self.layout: Layout = layout(name)

    # -- locks and locked reads -------------------------------------------------------------

    async def _current(self, key: str) -> Doc | None:
        """The document under ``key``, locked until the transaction ends (not a copy)."""
        self.tx.check_usable()
        slot = (self.name, key)
        if slot in self.tx.locked:
            return self.tx.locked[slot]
        if self.tx.begun:
            rows = await self.tx._run(self.tx.conn.fetch(self.layout.get_function, key))
        else:  # no BEGIN yet: the key's lock is held for the session until the end
            self.tx.holds = True
            self.tx.held.append(slot)
            rows = await self.tx._run(self.tx.conn.fetch(self.layout.hold_function, key), in_block=False)
        doc = self.layout.to_doc(rows[0]) if rows else None
        self.tx.locked[slot] = doc
        return doc

    async def _lock_for_read(self, equals: dict[str, Any]) -> None:
        lockable = _lockable(equals)
        if lockable:
            await self.tx._run(self.tx.conn.fetchval("SELECT ts_find_lock($1, $2::jsonb)", self.name, lockable))
        else:
            await self.tx._run(self.tx.conn.execute("SELECT pg_advisory_xact_lock(ts_collection_lock($1))", self.name))

    async def _select(self, conds: tuple[Cond, ...], equals: dict[str, Any], what: str = "*") -> list[asyncpg.Record]:
        _check_filter(conds, equals)
        await self.tx._flush()  # the filter runs in the database: it must see this transaction's writes
        await self._lock_for_read(equals)
        params = Params()
        where = self.layout.filter_sql(conds, equals, params)
        return await self.tx._run(self.tx.conn.fetch(self.layout.select_sql(where, what, what == "*"), *params.values))

    async def _write(self, key: str, old: Doc | None, new: Doc | None, blind: bool = False) -> None:
        """Queue a write of ``key`` (sent with the others at commit, or before a filtered read).

        ``old`` is the version read under the key's lock; a ``blind`` write never read the key.
        Several writes of one key become one, from the first old version to the last new one.
        """
        self.tx.check_usable()
        if new is not None:
            self.layout.row_values(key, new)  # a document the collection refuses fails here, at the call
            if "\x00" in key or _NUL_ESCAPE.search(jsoncodec.dumps(new)):
                # What PostgreSQL would refuse when the write is sent; as then, the transaction is spoilt.
                self.tx.failed = "PostgreSQL cannot store the character U+0000"
                raise ValueError(f"{self.name}: PostgreSQL cannot store the character U+0000 (key {key!r})")
        slot = (self.name, key)
        queued = self.tx.pending.get(slot)
        if queued is not None:
            if queued[2] is None and new is not None:  # re-created after a delete: a new row, as on its own
                await self.tx._flush()
                old, blind = None, False
            else:
                blind, old = queued[0], queued[1]
        self.tx.pending[slot] = (blind, old, new)
        self.tx.locked[slot] = new

    # -- reads ------------------------------------------------------------------------------

    async def get(self, key: Any) -> Doc | None:
        doc = await self._current(str(key))
        return jsoncodec.copy(doc) if doc is not None else None

    async def exists(self, key: Any) -> bool:
        return await self._current(str(key)) is not None

    async def all(self) -> list[Doc]:
        return [self.layout.to_doc(r) for r in await self._select((), {})]

    async def items(self) -> list[tuple[str, Doc]]:
        lay = self.layout
        return [(lay.key_of(r), lay.to_doc(r)) for r in await self._select((), {})]

    async def find(self, *conds: Cond, **equals: Any) -> list[Doc]:
        return [self.layout.to_doc(r) for r in await self._select(conds, equals)]

    async def count(self, *conds: Cond, **equals: Any) -> int:
        rows = await self._select(conds, equals, "count(*)")
        return int(rows[0][0])

    # -- writes -----------------------------------------------------------------------------

    async def insert(self, doc: Doc, key: Any = None) -> Doc:
        """Add ``doc``; without ``key`` a fresh ``id`` from the collection's counter, which never goes back."""
        doc = _prepare(doc)
        conn = self.tx.conn
        if key is None:
            while True:
                new_id = int(await self.tx._run(conn.fetchval(ALLOCATE_ID, self.name)))
                if await self._current(str(new_id)) is None:
                    break
            doc = {"id": new_id, **doc}
            key = str(new_id)
        else:
            key = str(key)
            if (self.name, key) not in self.tx.locked and not _moves_ids(key):
                # One statement: lock the key, insert unless taken.
                self.tx.check_usable()
                values = self.layout.row_values(key, doc)
                self.tx.wrote = True
                rows = await self.tx._run(conn.fetch(self.layout.insert_one_sql(), [doc], *values))
                if not rows:
                    raise KeyExists(f"{self.name}: key {key!r} exists")
                self.tx.locked[(self.name, key)] = doc
                return jsoncodec.copy(doc)
            if await self._current(key) is not None:
                raise KeyExists(f"{self.name}: key {key!r} exists")
            if _moves_ids(key):
                await self.tx._run(conn.execute(ADVANCE_IDS, self.name, int(key) + 1))
        await self._write(key, None, doc)
        return jsoncodec.copy(doc)

    async def put(self, key: Any, doc: Doc) -> Doc:
        doc = _prepare(doc)
        key = str(key)
        if (self.name, key) in self.tx.locked:
            await self._write(key, self.tx.locked[(self.name, key)], doc)
        else:  # the key's lock and its old version are taken when the write is sent
            await self._write(key, None, doc, blind=True)
        return jsoncodec.copy(doc)

    async def update(self, key: Any, changes: Doc) -> Doc | None:
        key = str(key)
        changes = _prepare(changes)
        old = await self._current(key)
        if old is None:
            return None
        new = {**old, **changes}
        await self._write(key, old, new)
        return jsoncodec.copy(new)

    async def delete(self, key: Any) -> bool:
        key = str(key)
        old = await self._current(key)
        if old is None:
            return False
        await self._write(key, old, None)
        return True

    async def delete_where(self, *conds: Cond, **equals: Any) -> int:
        """Delete every match, each key locked first as a keyed delete would."""
        if not conds and not equals:
            raise ValueError("delete_where needs a filter; delete documents one by one to empty a collection")
        _check_filter(conds, equals)
        await self.tx._flush()
        lay, conn, run = self.layout, self.tx.conn, self.tx._run
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
