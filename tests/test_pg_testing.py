"""The PostgreSQL test kit: fresh databases that vanish afterwards; no silent skips in CI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
from pg_kit import pg_admin  # noqa: F401 - fixture

from core.pg.testing import PREFIX, fresh_database

PROJECT = Path(__file__).resolve().parent.parent


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


def test_without_a_server_the_tests_skip_loudly_but_fail_in_ci():
    env = {**os.environ, "TEST_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/postgres"}
    args = [sys.executable, "-m", "pytest", "tests/test_pg_migrations.py", "--noconftest", "-p", "no:tornado", "-rs"]
    outside = subprocess.run(args, cwd=PROJECT, env={**env, "CI": ""}, capture_output=True, text=True, timeout=120)
    assert outside.returncode == 0, outside.stdout
    assert "SKIPPED" in outside.stdout and "PytestWarning: PostgreSQL TESTS NOT RUN" in outside.stdout
    in_ci = subprocess.run(args, cwd=PROJECT, env={**env, "CI": "true"}, capture_output=True, text=True, timeout=120)
    assert in_ci.returncode != 0
    assert "CI=true, so this is a failure, not a skip" in in_ci.stdout
