"""The schema is created and upgraded on start-up: SQL files in order, each in a transaction, under a lock."""

from __future__ import annotations

import asyncio
import shutil

import asyncpg
import pytest

from core.pg import PgStore, SchemaTooNew
from core.pg.migrate import MIGRATIONS, latest_version, migrate, migration_files
from core.store import StoreError


async def versions(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        return [r[0] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY version")]
    finally:
        await conn.close()


def test_instances_starting_at_once_migrate_once(pg_url):
    async def main() -> None:
        stores = await asyncio.gather(*(PgStore.connect(pg_url, pool_size=1) for _ in range(4)))
        try:
            for store in stores:
                assert store.schema_version == latest_version()
                assert (await store.check()).details["schema_version"] == latest_version()
        finally:
            for store in stores:
                await store.close()
        assert await versions(pg_url) == list(range(1, latest_version() + 1))
        await (await PgStore.connect(pg_url, pool_size=1)).close()  # a restart finds nothing to do
        assert await versions(pg_url) == list(range(1, latest_version() + 1))

    asyncio.run(main())


def test_a_schema_newer_than_the_code_stops_start_up(pg_url):
    async def main() -> None:
        await (await PgStore.connect(pg_url, pool_size=1)).close()  # migrated
        conn = await asyncpg.connect(pg_url)
        await conn.execute("INSERT INTO schema_version (version) VALUES (99)")
        await conn.close()
        with pytest.raises(SchemaTooNew) as caught:
            await PgStore.connect(pg_url, pool_size=1)
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"the database schema is version 99, newer than this Turnstile knows ({latest_version()})")

    asyncio.run(main())


def test_a_failing_migration_leaves_nothing_behind(pg_url, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    for _, path in migration_files():
        shutil.copy(path, folder / path.name)
    nxt = latest_version() + 1
    bad = folder / f"{nxt:04d}_add_things.sql"
    bad.write_text("CREATE TABLE half_done (x int);\nSELECT * FROM no_such_table;\n")

    async def main() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            with pytest.raises(StoreError, match=f"migration {bad.name} failed: relation \"no_such_table\" does not exist"):
                await migrate(conn, folder)
            assert await versions(pg_url) == list(range(1, nxt))
            assert await conn.fetchval("SELECT to_regclass('half_done')") is None
            bad.write_text("CREATE TABLE half_done (x int);\n")
            assert await migrate(conn, folder) == nxt
            assert await conn.fetchval("SELECT to_regclass('half_done')::text") == "half_done"
            # The migration lock is free again: another session can take it at once.
            other = await asyncpg.connect(pg_url)
            assert await other.fetchval("SELECT pg_try_advisory_lock(7305514002931110001)")
            await other.close()
        finally:
            await conn.close()

    asyncio.run(main())


def test_migration_files_are_numbered_without_gaps(tmp_path):
    assert [v for v, _ in migration_files(MIGRATIONS)] == list(range(1, latest_version() + 1))
    (tmp_path / "0001_a.sql").write_text("")
    (tmp_path / "0003_c.sql").write_text("")
    with pytest.raises(RuntimeError, match="expected version 0002"):
        migration_files(tmp_path)
