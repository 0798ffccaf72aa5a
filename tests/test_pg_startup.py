"""Start-up on PostgreSQL stops with one line naming the problem: never a traceback, never the password."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bench.harness import free_port
from core.pg import BadDatabaseUrl, DatabaseUnreachable, LoginRefused, PgStore
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
