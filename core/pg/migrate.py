"""Schema migrations: ordered plain SQL files, each applied once, in its own transaction.

``migrations/NNNN_name.sql`` is schema version NNNN. `migrate` runs the
missing ones in order while holding a session advisory lock, so instances
starting at once take turns and the second finds nothing left to do. Table
``schema_version`` records every version applied. A database whose version
is above the newest file was migrated by newer code: start-up stops with
`SchemaTooNew` rather than run against a schema it does not know.
"""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

from ..store import StoreError
from .errors import is_unavailable, translated
from .startup import SchemaTooNew

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 7_305_514_002_931_110_001  # any fixed bigint; only migrations take it
_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migration_files(folder: Path = MIGRATIONS) -> list[tuple[int, Path]]:
    """``(version, path)`` of every migration, in order; versions must be 1, 2, 3, ..."""
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _FILE.match(p.name)))
    for expected, (version, path) in enumerate(found, start=1):
        if version != expected:
            raise RuntimeError(f"migration {path.name}: expected version {expected:04d}")
    return found


def latest_version(folder: Path = MIGRATIONS) -> int:
    files = migration_files(folder)
    return files[-1][0] if files else 0


async def current_version(conn: asyncpg.Connection) -> int:
    """The schema version recorded in the database (0 for an empty database)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))


async def migrate(conn: asyncpg.Connection, folder: Path = MIGRATIONS) -> int:
    """Bring the schema up to the newest migration; the version it ends at."""
    files = migration_files(folder)
    newest = files[-1][0] if files else 0
    with translated():
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version integer PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            version = await current_version(conn)
            if version > newest:
                raise SchemaTooNew(
                    f"the database schema is version {version}, newer than this Turnstile knows ({newest}); "
                    "run the newer Turnstile, or restore a backup taken before its upgrade"
                )
            for number, path in files:
                if number <= version:
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(path.read_text(encoding="utf-8"))
                        await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
                except asyncpg.PostgresError as exc:
                    if is_unavailable(exc):
                        raise
                    first = (str(exc).splitlines() or [""])[0]
                    raise StoreError(f"migration {path.name} failed: {first} ({exc.sqlstate})") from None
                version = number
            return version
        finally:
            if not conn.is_closed():
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
