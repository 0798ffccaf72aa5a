"""``server.py store copy`` moves every collection between the JSON store and PostgreSQL, both ways."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from bench.harness import SERVER
from core.jsondb import JsonStore
from core.pg import PgStore
from core.store import StoreError
from core.store_copy import copy_store, main

NOW = int(time.time())


def _session(digest: str, expires: int, retired: int | None = None) -> dict:
    return {
        "digest": digest, "username": "alice", "family": "fam", "created": NOW - 10,
        "expires": expires, "retired": retired, "successor": None,
    }  # fmt: skip


async def fill(store) -> None:
    await store.collection("auth.users").insert(
        {"username": "alice", "password": "$2b$04$hash", "roles": [1], "created": NOW}, key="alice"
    )
    await store.collection("auth.users").insert({"username": "bob", "password": "$2b$04$x", "roles": [], "created": NOW}, key="bob")
    await store.collection("auth.sessions").put("live", _session("live", NOW + 3600))
    await store.collection("auth.sessions").put("retired", _session("retired", NOW + 3600, retired=NOW - 1))
    await store.collection("auth.sessions").put("expired", _session("expired", NOW - 1))
    staff = store.collection("employees")
    for name in ("ann", "ben", "cy"):
        await staff.insert({"name": name})
    await staff.delete(3)  # the counter stays at 4: id 3 must never come back
    await store.collection("notes.notes").put("n1", {"owner": "alice", "text": "hi", "tags": ["a"], "score": 1.5})


async def contents(store) -> dict:
    return {name: dict(await store.collection(name).items()) for name in await store.collections()}


def test_json_to_postgres_and_back_keeps_everything_live(pg_url, tmp_path):
    async def main_() -> None:
        source = JsonStore(tmp_path / "json").open()
        pg = await PgStore.connect(pg_url, pool_size=2)
        back = JsonStore(tmp_path / "back").open()
        try:
            await fill(source)
            expected = await contents(source)
            del expected["auth.sessions"]["expired"]  # an expired session can never be used again

            counts = await copy_store(source, pg)
            assert counts == {"auth.users": 2, "auth.sessions": 2, "employees": 2, "notes.notes": 1}
            assert await contents(pg) == expected
            assert await pg.id_counter("employees") == 4

            assert await copy_store(pg, back) == counts
            assert await contents(back) == expected
            assert await back.id_counter("employees") == 4
            assert (await back.collection("employees").insert({"name": "dee"}))["id"] == 4
            assert (await pg.collection("employees").insert({"name": "dee"}))["id"] == 4
        finally:
            await source.close()
            await pg.close()
            await back.close()

    asyncio.run(main_())


def test_a_non_empty_target_is_refused_unless_forced(pg_url, tmp_path):
    async def main_() -> None:
        source = JsonStore(tmp_path / "json").open()
        pg = await PgStore.connect(pg_url, pool_size=2)
        try:
            await fill(source)
            await pg.collection("notes.notes").put("stale", {"owner": "nobody"})
            await pg.collection("other").put("kept", {"x": 1})
            with pytest.raises(StoreError, match="not empty .*--force"):
                await copy_store(source, pg)
            assert await pg.collection("auth.users").count(username="alice") == 0  # nothing was copied
            await copy_store(source, pg, force=True)
            assert [k for k, _ in await pg.collection("notes.notes").items()] == ["n1"]  # the copy replaced it
            assert await pg.collection("other").get("kept") == {"x": 1}  # a collection the source lacks stays
        finally:
            await source.close()
            await pg.close()

    asyncio.run(main_())


def test_the_command_copies_and_never_prints_the_password(pg_url, tmp_path, capsys):
    asyncio.run(_fill_json(tmp_path / "json"))
    parts = urlsplit(pg_url)
    url = urlunsplit((parts.scheme, f"{parts.username or 'postgres'}:Hunter2-pw@{parts.hostname}:{parts.port or 5432}", parts.path, "", ""))

    assert main(["store", "copy", "--from", str(tmp_path / "json"), "--to", url]) == 0
    out = capsys.readouterr()
    assert "auth.users: 2" in out.out and "copied 7 documents in 4 collections" in out.out
    assert "Hunter2-pw" not in out.out + out.err

    assert main(["store", "copy", "--from", str(tmp_path / "json"), "--to", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("turnstile: the target is not empty") and err.count("\n") == 1
    assert "Hunter2-pw" not in err

    assert main(["store", "copy", "--from", str(tmp_path / "typo"), "--to", url, "--force"]) == 1
    assert capsys.readouterr().err == f"turnstile: --from {tmp_path / 'typo'}: no such directory\n"
    assert not (tmp_path / "typo").exists()

    assert main(["store", "copy", "--from", url, "--to", str(tmp_path / "back")]) == 0
    assert main(["store", "copy", "--from", str(tmp_path / "back"), "--to", url, "--force"]) == 0


async def _fill_json(path) -> None:
    store = JsonStore(path).open()
    try:
        await fill(store)
    finally:
        await store.close()


def test_server_py_store_copy_moves_a_data_dir_to_postgresql(pg_url, tmp_path):
    """The operator's command line, end to end: ``python server.py store copy``."""
    asyncio.run(_fill_json(tmp_path / "json"))
    command = [sys.executable, str(SERVER), "store", "copy", "--from", str(tmp_path / "json"), "--to", pg_url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "copied 7 documents in 4 collections" in done.stdout
    again = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert again.returncode == 1 and again.stderr.startswith("turnstile: the target is not empty")
