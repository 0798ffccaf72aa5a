"""Fixtures for the PostgreSQL tests: a server (skip, or fail with CI=true, without one) and fresh databases."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Iterator

import pytest

from core.pg import PgStore
from core.pg.testing import fresh_database_sync, require_server, reset_database


@pytest.fixture
def pg_admin() -> str:
    """The admin URL of the test server."""
    return require_server()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """This test run's own database, made on first use and dropped at the end of the run."""
    with fresh_database_sync(require_server()) as url:
        yield url


@pytest.fixture
def pg_url(pg_admin: str, pg_database: str) -> Iterator[str]:
    """An empty database for this test (this run's database, emptied first)."""
    asyncio.run(reset_database(pg_admin, pg_database))
    yield pg_database


def run_with_store(url: str, body: Callable[[PgStore], Awaitable[Any]], pool_size: int = 4) -> Any:
    """Open a store on ``url``, run ``body(store)`` on a fresh event loop, always close it."""

    async def main() -> Any:
        store = await PgStore.connect(url, pool_size=pool_size)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())
