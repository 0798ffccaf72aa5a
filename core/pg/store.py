"""`PgStore`: the store interface on PostgreSQL (asyncpg, a pool per instance), and its live collections.

The connections, and the merging of identical reads outside a transaction,
are `connections.Connections`; a transaction and its locks are
`transaction.PgTransaction` (whose docstring says how the locks make every
transaction atomic across instances); where each collection's rows live, and
its filters as SQL, is `tables`. Everything the backends share comes from
`core.store_base`.

Outside a transaction a read is one statement, taking no locks (one statement
sees one committed state), and identical reads asked for in the same turn of
the event loop go out as one (`Connections.read`). A put, a delete or an
insert under a key is one statement in autocommit that takes its locks itself
(`PgCollection._one_write`); any other write is a transaction of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, AsyncContextManager, AsyncIterator, Callable

import asyncpg

from ..store import Cond, Doc, Health, StoreError, check_field, check_name
from ..store_base import BaseCollection, BaseStore
from .connections import Connections
from .errors import translate, translated
from .migrate import migrate
from .startup import denied_object, first_connection, parse_url, permission_denied, privilege_error
from .tables import Layout, Params, layout
from .transaction import PgTransaction

CHECK_TIMEOUT = 2.0  # /healthz answers within this even when the database is gone
DDL_LOCK = 7_305_514_002_931_110_002  # serializes CREATE INDEX between instances


async def _owner(conn: asyncpg.Connection, relation: str) -> str | None:
    """The role that owns ``relation``, for a start-up message; None if that cannot be told."""
    try:
        owner = await conn.fetchval(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass($1)", relation
        )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return None
    return owner if isinstance(owner, str) else None


class PgStore(BaseStore):
    """The store on PostgreSQL; `connect` migrates the schema and opens the pool."""

    backend = "postgres"

    def __init__(self, connections: Connections, schema_version: int, server_version: str = "") -> None:
        super().__init__()
        self.connections = connections
        self.pool_size = connections.pool_size
        self.schema_version = schema_version
        self._indexed: set[tuple[str, str]] = set()
        self._server_version = server_version
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
        except StoreError as exc:
            denied = privilege_error(exc)
            if denied is None:
                raise
            what, name = denied_object(denied)
            owner = await _owner(conn, name) if what in ("table", "sequence") else None
            raise permission_denied(target, denied, owner) from None
        finally:
            await conn.close()
        return cls(await Connections.open(target, pool_size), version, server_version)

    # -- the interface --------------------------------------------------------------------

    def _open_collection(self, name: str) -> "PgCollection":
        return PgCollection(self, name)

    def transaction(self, prefix: str = "") -> AsyncContextManager[PgTransaction]:
        """One database transaction; committed when the block exits, rolled back if it raises.

        BEGIN goes out only before the first statement that needs it (`PgTransaction.run`): a body
        that reads keys and then writes one collection (a token rotation, a login) is its locked
        reads and one write statement, which commits on its own; two round trips fewer.
        """
        return self._transaction(prefix, single_write=False)

    def single_write(self) -> AsyncContextManager[PgTransaction]:
        """The transaction of one write outside any transaction: a put, a delete or an insert under
        a key is then one statement that commits on its own (`transaction.SingleWriteCollection`)."""
        return self._transaction("", single_write=True)

    @contextlib.asynccontextmanager
    async def _transaction(self, prefix: str, single_write: bool) -> AsyncIterator[PgTransaction]:
        started = time.perf_counter()
        async with self.connections.connection() as conn:
            tx = PgTransaction(conn, prefix, single_write)
            try:
                yield tx
                if tx.failed is not None:
                    raise StoreError(f"the transaction was rolled back after an earlier error: {tx.failed}")
                await tx.commit()
            except BaseException:
                await tx.abort()
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
        async with self.connections.connection() as conn:
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
        rows, _ = await self.connections.read(
            "SELECT DISTINCT collection FROM documents"
            " UNION SELECT collection FROM id_counters WHERE next_id > 1"
            " UNION SELECT 'auth.users' WHERE EXISTS (SELECT 1 FROM users)"
            " UNION SELECT 'auth.sessions' WHERE EXISTS (SELECT 1 FROM sessions)"
        )
        return sorted(r[0] for r in rows)

    async def id_counter(self, collection: str) -> int:
        check_name(collection)
        value, _ = await self.connections.read(
            "SELECT next_id FROM id_counters WHERE collection = $1", collection, one=True
        )
        return int(value) if value is not None else 1

    async def check(self) -> Health:
        """A durable write to ``health_probe`` within `CHECK_TIMEOUT`; no URL or password in the answer."""
        details: dict[str, Any] = {
            "pool_size": self.pool_size,
            "idle": self.connections.idle(),
            "open": self.connections.size(),
            "schema_version": self.schema_version,
            "server_version": self._server_version,
        }
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                async with self.connections.connection() as conn:
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
        await self.connections.close()


class PgCollection(BaseCollection):
    """A collection outside any transaction: each read one statement (merged with identical ones)."""

    store: PgStore

    def __init__(self, store: PgStore, name: str) -> None:
        super().__init__(store, name)
        self.layout: Layout = layout(name)
        lay = self.layout
        self._by_key = lay.select_sql(f"{lay.key_column} = $1", order=False)
        self._key_exists = lay.select_sql(f"{lay.key_column} = $1", "true", False)

    def _one_write(self) -> AsyncContextManager[PgTransaction]:
        return self.store.single_write()

    def _docs(self, rows: list[asyncpg.Record]) -> list[Doc]:
        to_doc = self.layout.to_doc
        return [to_doc(r) for r in rows]

    async def _lookup(self, key: str) -> tuple[Doc | None, bool]:
        rows, shared = await self.store.connections.read(self._by_key, key)
        return (self.layout.to_doc(rows[0]) if rows else None), shared

    async def _exists(self, key: str) -> bool:
        found, _ = await self.store.connections.read(self._key_exists, key, one=True)
        return bool(found)

    async def _select(self, conds: tuple[Cond, ...], equals: dict[str, Any]) -> tuple[list[Doc], bool]:
        params = Params()
        where = self.layout.filter_sql(conds, equals, params)
        rows, shared = await self.store.connections.read(self.layout.select_sql(where), *params.values)
        return self._docs(rows), shared

    async def _items(self) -> tuple[list[tuple[str, Doc]], bool]:
        rows, shared = await self.store.connections.read(self.layout.select_sql())
        key_of = self.layout.key_of
        return list(zip([key_of(r) for r in rows], self._docs(rows))), shared

    async def _count(self, conds: tuple[Cond, ...], equals: dict[str, Any]) -> int:
        params = Params()
        where = self.layout.filter_sql(conds, equals, params)
        value, _ = await self.store.connections.read(self.layout.select_sql(where, "count(*)", False), *params.values, one=True)
        return int(value)
