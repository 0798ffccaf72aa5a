"""The connections of one `PgStore`, and the merging of identical reads outside transactions.

asyncpg's pool bounds the number of connections, opens new ones and takes
back those that failed; `Connections` keeps a connection that served a
request without error for the next one, and sends identical reads asked for
in the same turn of the event loop as one statement (`Connections.read`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, AsyncIterator

import asyncpg

from ..jsoncodec import dumps_str, loads
from ..store import StoreError, StoreUnavailable
from .errors import connection_broken, translate
from .startup import CONNECT_TIMEOUT, Target

ACQUIRE_TIMEOUT = 10.0  # a request waits this long for a free connection, then gets a 503
COMMAND_TIMEOUT = 30.0  # no statement (lock waits included) runs longer
CLOSE_TIMEOUT = 10.0
KEEP_IDLE = 30.0  # a connection unused this long goes back to the pool, whose lifetime limit then applies
SERVER_SETTINGS = {
    "application_name": "turnstile",
    "lock_timeout": "10s",  # a lock wait this long is a 503 (retry), not a hung request
    "idle_in_transaction_session_timeout": "60s",  # a frozen instance cannot hold locks forever
    "jit": "off",  # compiling a big scan costs more than it saves for these short queries
}
_RETRY = object()  # a shared read's first caller was cancelled: read again


def kill(conn: asyncpg.Connection) -> None:
    """Terminate a connection; asyncpg may already have detached it from the pool after a loss."""
    try:
        conn.terminate()
    except asyncpg.InterfaceError:
        pass


def is_closed(conn: asyncpg.Connection) -> bool:
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
    await conn.set_type_codec("jsonb", encoder=dumps_str, decoder=loads, schema="pg_catalog")


class Connections:
    """The pool of one store, the connections kept out of it, and the reads being merged."""

    def __init__(self, pool: asyncpg.Pool, pool_size: int) -> None:
        self._pool = pool
        self.pool_size = pool_size
        self.closed = False
        self._kept: list[tuple[asyncpg.Connection, float]] = []  # idle connections kept out of the pool, newest last
        self._waiting = 0  # requests waiting in the pool for a connection
        self._batches: dict[tuple[Any, ...], list[asyncio.Future[Any]]] = {}  # reads being gathered (`read`)

    @classmethod
    async def open(cls, target: Target, pool_size: int) -> "Connections":
        """The pool for ``target``: no connection opened yet; one-line `StoreError` if it cannot be made."""
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
        return cls(pool, pool_size)

    def idle(self) -> int:
        """Connections open and not in use."""
        return self._pool.get_idle_size() + len(self._kept)

    def size(self) -> int:
        """Connections open."""
        return self._pool.get_size()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection, `StoreUnavailable` when none can be had in time.

        A connection that served a request without error is kept for the next one instead of going
        back through the pool: asyncpg's acquire and release (timeout, shield, a task) cost about as
        much CPU as the query itself. The pool still bounds the number of connections, opens new ones
        and takes back every connection that failed or that a waiting request needs.
        """
        if self.closed:
            raise StoreUnavailable("the store is closed (the server is stopping)")
        conn = await self._take_kept()
        if conn is None:
            conn = await self._acquire()
        try:
            yield conn
        except BaseException as exc:
            if connection_broken(exc) or connection_broken(exc.__cause__ or exc):
                kill(conn)  # never hand a confused connection to the next request
            await self._release(conn)
            raise
        if self._waiting or self.closed or is_closed(conn) or conn.is_in_transaction():
            await self._release(conn)
        else:
            self._kept.append((conn, time.monotonic()))
            if self._kept[0][1] < time.monotonic() - KEEP_IDLE:  # the oldest has not been needed for a while
                await self._release(self._kept.pop(0)[0])

    async def _take_kept(self) -> asyncpg.Connection | None:
        while self._kept:
            conn = self._kept.pop()[0]
            if not is_closed(conn):
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

    async def read(self, sql: str, *args: Any, one: bool = False) -> tuple[Any, bool]:
        """One read statement outside a transaction: (its rows or value, whether other callers share them).

        Identical reads asked for during one turn of the event loop go to the database as one
        statement, sent on the next turn: after every one of them was asked for, so each still sees
        every write acknowledged before it was asked for. Under load, concurrent requests for the same
        data (a hot list, one user's record) then cost one round trip instead of one each. Shared rows
        hold shared decoded documents: the caller copies what it hands out.
        """
        key = (sql, one, args, tuple(map(type, args)))  # 1, 1.0 and True are equal keys, but not equal parameters
        try:
            waiters = self._batches.get(key)
        except TypeError:  # a parameter that cannot be hashed (a list): read on its own
            return await self.read_now(sql, args, one), False
        if waiters is not None:  # joined: the first caller reads for us
            waiter = asyncio.get_running_loop().create_future()
            waiters.append(waiter)
            result = await waiter
            if result is _RETRY:  # the first caller was cancelled: read again
                return await self.read(sql, *args, one=one)
            return result, True
        waiters = self._batches[key] = []
        try:
            try:
                await asyncio.sleep(0)  # the rest of this turn of the loop may join
            finally:
                del self._batches[key]
            result = await self.read_now(sql, args, one)
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

    async def read_now(self, sql: str, args: tuple[Any, ...], one: bool) -> Any:
        """One statement outside a transaction; tried again once if a pooled connection turns out dead.

        A failure to connect is not retried: the database is down, and the caller should hear so now.
        """
        for attempt in (1, 2):
            async with self.connection() as conn:
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
                    kill(conn)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Refuse new work, give back the kept connections, close the pool (terminate it if that hangs)."""
        if self.closed:
            return
        self.closed = True
        while self._kept:
            await self._release(self._kept.pop()[0])
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT)
        except Exception:
            self._pool.terminate()
