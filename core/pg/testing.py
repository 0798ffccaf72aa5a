"""Finding a PostgreSQL for tests, and fresh databases on it.

The server is, in this order, ``TEST_DATABASE_URL`` if set, else
``postgresql://postgres@127.0.0.1:5432/postgres`` if it answers (``bin/test``
starts one when it can). Tests that need it call `require_server`: outside
CI they skip with a loud reason when there is none; with ``CI=true`` they
fail, so CI never passes by skipping them.

Every database made here is new (``turnstile_test_<pid>_<random>``) and is
dropped afterwards, connections and all. The fixtures (``pg_admin``,
``pg_database``, ``pg_url``) are in `core.pytest_plugin`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import warnings
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from .startup import parse_url, permission_denied

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PREFIX = "turnstile_test_"
_found: tuple[str | None, str] | None = None
_warned = False


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


async def _answers(url: str) -> str | None:
    """None if ``url`` accepts a login, else why not."""
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except Exception as exc:  # any failure means "not this one"; the reason is reported
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    await conn.close()
    return None


def find_server() -> tuple[str | None, str]:
    """``(admin URL, "")`` of the server to test against, or ``(None, why there is none)``; asked once."""
    global _found
    if _found is None:
        explicit = os.environ.get("TEST_DATABASE_URL", "").strip()
        url = explicit or DEFAULT_URL
        problem = asyncio.run(_answers(url))
        if problem is None:
            _found = (url, "")
        elif explicit:
            _found = (None, f"TEST_DATABASE_URL does not answer ({problem})")
        else:
            _found = (None, f"no TEST_DATABASE_URL, and nothing answers at {DEFAULT_URL} ({problem})")
    return _found


def require_server() -> str:
    """The admin URL; skips the test (fails it with CI=true) when no PostgreSQL can be had."""
    import pytest

    url, why = find_server()
    if url is not None:
        return url
    message = f"PostgreSQL TESTS NOT RUN: {why}. Run ./bin/test (it finds or starts a server) or set TEST_DATABASE_URL."
    if in_ci():
        pytest.fail(f"{message} CI=true, so this is a failure, not a skip.", pytrace=False)
    global _warned
    if not _warned:  # once, in the warnings summary every run prints, not only with -rs
        _warned = True
        warnings.warn(pytest.PytestWarning(message), stacklevel=2)
    pytest.skip(message)
    raise AssertionError("unreachable")


def database_url(admin_url: str, name: str) -> str:
    """``admin_url`` pointing at database ``name`` instead."""
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def create_database(admin_url: str) -> str:
    """A new empty database; its URL."""
    name = f"{PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.InsufficientPrivilegeError as exc:  # TEST_DATABASE_URL names a role without CREATEDB
        raise permission_denied(parse_url(admin_url), exc) from None
    finally:
        await conn.close()
    return database_url(admin_url, name)


async def drop_database(admin_url: str, url: str) -> None:
    """Drop the database of ``url`` (made by `create_database`), ending its connections."""
    name = urlsplit(url).path.lstrip("/")
    if not name.startswith(PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not a test database")
    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str) -> AsyncIterator[str]:
    """``async with fresh_database(admin) as url:`` a database that exists for the block only."""
    url = await create_database(admin_url)
    try:
        yield url
    finally:
        await drop_database(admin_url, url)


async def reset_database(admin_url: str, url: str) -> None:
    """Make the database of ``url`` empty again (its connections ended, schema ``public`` recreated).

    Much cheaper than a new database (CREATE DATABASE copies a template): a test run makes one
    database and hands each test an empty one this way.
    """
    await terminate_connections(admin_url, url)
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


async def terminate_connections(admin_url: str, url: str) -> int:
    """``pg_terminate_backend`` every connection to the database of ``url`` (from an admin connection)."""
    name = urlsplit(url).path.lstrip("/")
    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        return len(
            await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
        )
    finally:
        await conn.close()


def run_with_store(url: str, body: Callable[[Any], Awaitable[Any]], pool_size: int = 4) -> Any:
    """Open a `PgStore` on ``url``, run ``body(store)`` on a fresh event loop, always close it."""
    from . import PgStore

    async def main() -> Any:
        store = await PgStore.connect(url, pool_size=pool_size)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())
