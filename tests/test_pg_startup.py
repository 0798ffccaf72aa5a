"""Start-up on PostgreSQL stops with one line naming the problem: never a traceback, never the password."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from bench.harness import free_port
from core.pg import BadDatabaseUrl, DatabaseUnreachable, LoginRefused, PermissionDenied, PgStore
from core.store import StoreError

SECRET = "s3cr3t-Pa55"
PROJECT = Path(__file__).resolve().parent.parent


def connect_error(url: str) -> StoreError:
    with pytest.raises(StoreError) as caught:
        asyncio.run(PgStore.connect(url, pool_size=2))
    message = str(caught.value)
    assert "\n" not in message and SECRET not in message and (not url or url not in message)
    return caught.value


@pytest.mark.parametrize(
    "url, says",
    [
        ("", "empty"),
        (f"mysql://app:{SECRET}@db/turnstile", "scheme"),
        (f"postgresql://app:{SECRET}@db:port/turnstile", "Port"),
        (f"postgresql://app:{SECRET}@:5432/turnstile", "no host"),
        (f"postgresql://app:{SECRET}@db:5432", "no database"),
        (f"postgresql://app:{SECRET}@db:5432/a/b", "not a database name"),
        (f"postgresql://app:{SECRET}@db:5432/turnstile?sslmode=bogus", "sslmode"),
    ],
)
def test_a_malformed_url_is_named(url, says):
    error = connect_error(url)
    assert isinstance(error, BadDatabaseUrl)
    assert str(error).startswith("DATABASE_URL is malformed") and says in str(error)


def test_a_server_that_does_not_answer_is_named():
    error = connect_error(f"postgresql://app:{SECRET}@127.0.0.1:1/turnstile")
    assert isinstance(error, DatabaseUnreachable)
    assert str(error) == "cannot reach PostgreSQL (user 'app' at 127.0.0.1:1/turnstile): connection refused"


def _on_test_server(admin: str, user: str, database: str) -> str:
    parts = urlsplit(admin)
    return f"postgresql://{user}:{SECRET}@{parts.hostname}:{parts.port or 5432}/{database}"


def test_a_refused_login_is_named(pg_admin):
    error = connect_error(_on_test_server(pg_admin, "no_such_role_here", "postgres"))
    assert isinstance(error, LoginRefused)
    assert "refused the login of user 'no_such_role_here'" in str(error)


def test_a_missing_database_is_named(pg_admin):
    error = connect_error(_on_test_server(pg_admin, urlsplit(pg_admin).username or "postgres", "turnstile_no_such_db"))
    assert isinstance(error, LoginRefused)
    assert "no database 'turnstile_no_such_db'" in str(error)


def test_server_py_with_a_bad_database_url_exits_1_with_one_line(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql://app:{SECRET}@127.0.0.1:1/turnstile",
        "ACCESS_TOKEN_SECRET": "a" * 64,
        "REFRESH_TOKEN_SECRET": "b" * 64,
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_DIR": str(tmp_path / "logs"),
        "PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "server.py"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == ["turnstile: cannot reach PostgreSQL (user 'app' at 127.0.0.1:1/turnstile): connection refused"]
    assert SECRET not in done.stdout + done.stderr


@pytest.fixture
def weak_role(pg_admin):
    """A role that may log in and nothing more, and an empty database owned by the admin; dropped afterwards."""
    from core.pg.testing import create_database, drop_database

    role = f"turnstile_weak_{os.getpid()}_{secrets.token_hex(3)}"

    async def admin(*statements: str) -> None:
        conn = await asyncpg.connect(pg_admin, timeout=5)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE ROLE {role} LOGIN PASSWORD '{SECRET}'"))
    database = asyncio.run(create_database(pg_admin))
    try:
        yield role, database, admin
    finally:
        asyncio.run(drop_database(pg_admin, database))
        asyncio.run(admin(f"DROP ROLE {role}"))


def _as(role: str, database_url: str) -> str:
    parts = urlsplit(database_url)
    return f"postgresql://{role}:{SECRET}@{parts.hostname}:{parts.port or 5432}{parts.path}"


def test_server_py_names_the_user_the_database_and_the_grant_a_schema_needs(weak_role, tmp_path):
    role, database, _ = weak_role
    name = urlsplit(database).path.lstrip("/")
    env = {
        **os.environ,
        "DATABASE_URL": _as(role, database),
        "ACCESS_TOKEN_SECRET": "a" * 64,
        "REFRESH_TOKEN_SECRET": "b" * 64,
    }
    done = subprocess.run(
        [sys.executable, str(PROJECT / "server.py"), "user", "list"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    parts = urlsplit(database)
    assert done.stderr == (
        f"turnstile: PostgreSQL denied user '{role}' at {parts.hostname}:{parts.port or 5432}/{name}: "
        f"permission denied for schema public; Turnstile creates and migrates its own tables: make the user own the "
        f'database (ALTER DATABASE "{name}" OWNER TO "{role}"), or GRANT CREATE ON SCHEMA "public" TO "{role}"\n'
    )
    assert SECRET not in done.stdout + done.stderr


def test_a_database_the_user_may_not_connect_to_is_named_with_the_grant(weak_role):
    role, database, admin = weak_role
    name = urlsplit(database).path.lstrip("/")
    asyncio.run(admin(f'REVOKE CONNECT ON DATABASE "{name}" FROM PUBLIC'))
    error = connect_error(_as(role, database))
    assert isinstance(error, PermissionDenied)
    assert f"PostgreSQL denied user '{role}' at " in str(error) and f"/{name}: permission denied for database" in str(error)
    assert str(error).endswith(f'; GRANT CONNECT ON DATABASE "{name}" TO "{role}"')


def test_tables_of_another_role_are_named_with_a_hint(weak_role):
    role, database, admin = weak_role
    asyncio.run(_close(PgStore.connect(database, pool_size=1)))  # the admin creates the tables
    asyncio.run(admin(f'ALTER DATABASE "{urlsplit(database).path.lstrip("/")}" OWNER TO {role}'))
    error = connect_error(_as(role, database))
    assert isinstance(error, PermissionDenied)
    assert f"PostgreSQL denied user '{role}' at " in str(error) and "permission denied for table schema_version" in str(error)
    owner = urlsplit(database).username or "postgres"
    assert str(error).endswith(
        f'permission denied for table schema_version; Turnstile\'s tables belong to role "{owner}": run Turnstile as '
        f'that role, or hand them over (as that role or a superuser: REASSIGN OWNED BY "{owner}" TO "{role}")'
    )


def test_a_test_server_role_without_createdb_is_named_with_the_hint(weak_role):
    from core.pg.testing import create_database

    role, database, _ = weak_role
    with pytest.raises(PermissionDenied) as caught:
        asyncio.run(create_database(_as(role, database)))
    assert f"PostgreSQL denied user '{role}' at " in str(caught.value)
    assert str(caught.value).endswith(f'permission denied to create database; let the user create databases (as a superuser: ALTER ROLE "{role}" CREATEDB)')
    assert SECRET not in str(caught.value)


async def _close(opening) -> None:
    store = await opening
    await store.close()


def test_a_table_whose_owner_is_unknown_still_gets_a_hint():
    from core.pg.startup import Target, permission_denied

    target = Target("postgresql://app:x@db/app", "app", "db", 5432, "app")
    error = permission_denied(target, asyncpg.InsufficientPrivilegeError("must be owner of table kv_auth_users"))
    assert str(error) == (
        "PostgreSQL denied user 'app' at db:5432/app: must be owner of table kv_auth_users; Turnstile's tables belong to "
        "another role: run Turnstile as their owner, or hand them over (as that role or a superuser: "
        'REASSIGN OWNED BY <their owner> TO "app")'
    )
