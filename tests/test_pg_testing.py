"""The PostgreSQL test kit: fresh databases that vanish afterwards; no silent skips in CI."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from core.pg import testing
from core.pg.testing import PREFIX, fresh_database


def test_fresh_databases_are_new_and_dropped_afterwards(pg_admin):
    async def main() -> None:
        async with fresh_database(pg_admin) as first, fresh_database(pg_admin) as second:
            assert first != second
            conn = await asyncpg.connect(first)
            assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
            # A connection still open does not stop the drop.
        names = [first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]]
        admin = await asyncpg.connect(pg_admin)
        try:
            assert await admin.fetch("SELECT datname FROM pg_database WHERE datname = ANY($1::text[])", names) == []
        finally:
            await admin.close()
        assert all(n.startswith(PREFIX) for n in names)

    asyncio.run(main())


def test_without_a_server_the_tests_skip_loudly_but_fail_in_ci(monkeypatch):
    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/postgres")
    monkeypatch.setattr(testing, "_found", None)  # forget the server this run found
    monkeypatch.setattr(testing, "_warned", False)
    monkeypatch.setenv("CI", "false")
    with pytest.warns(pytest.PytestWarning, match="PostgreSQL TESTS NOT RUN: TEST_DATABASE_URL does not answer"):
        with pytest.raises(pytest.skip.Exception, match="PostgreSQL TESTS NOT RUN"):
            testing.require_server()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true, so this is a failure, not a skip"):
        testing.require_server()
