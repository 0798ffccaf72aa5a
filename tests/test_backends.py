"""The backend is chosen in one place (core.backends): by URL scheme, or a data directory for the JSON store.

What must hold: the store interface imports no backend; an unknown URL scheme is
one clear line, both at start-up (``DATABASE_URL``) and for ``store copy``, and
never shows the URL (it may hold a password); a data directory opens the JSON store.
"""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys

import pytest
from plugin_kit import PROJECT

from core import backends
from core.jsondb import JsonStore
from core.pytest_plugin import make_settings
from core.store import StoreError
from core.store_copy import main as store_copy

SECRET = "Hunter2-pw"


@pytest.mark.parametrize("module", ["store.py", "store_base.py", "jsoncodec.py"])
def test_the_interface_and_the_shared_base_import_no_backend(module):
    tree = ast.parse((PROJECT / "core" / module).read_text())
    imported = {
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    } | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {m for m in imported if m.split(".")[-1] in ("jsondb", "pg") or "backends" in m}, imported


@pytest.mark.parametrize("url", [f"mysql://app:{SECRET}@db/turnstile", f"app:{SECRET}@db/turnstile"])
def test_an_unknown_database_url_scheme_stops_start_up_with_one_line(tmp_path, url):
    settings = make_settings(tmp_path).with_changes(database_url=url)
    with pytest.raises(StoreError) as caught:
        asyncio.run(backends.open_store(settings))
    message = str(caught.value)
    assert message.startswith("DATABASE_URL: no store backend opens") and "postgresql://" in message
    assert SECRET not in message and "\n" not in message


def test_store_copy_refuses_an_unknown_scheme(tmp_path, capsys):
    assert store_copy(["store", "copy", "--from", str(tmp_path), "--to", f"mysql://app:{SECRET}@db/x"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "turnstile: no store backend opens mysql:// URLs; use postgresql:// or postgres://"


@pytest.mark.parametrize(
    "args",
    [
        ("--from", "data", "--to", f"mysql://app:{SECRET}@db/x"),
        ("--from", "data", "--to", f"mysql:/app:{SECRET}@db/x"),  # one slash: still a URL, never a folder "mysql:"
        ("--from", f"mysql://app:{SECRET}@db/x", "--to", "copy"),
    ],
)
def test_server_py_store_copy_refuses_an_unknown_scheme_and_creates_nothing(tmp_path, args):
    (tmp_path / "data").mkdir()
    done = subprocess.run(
        [sys.executable, str(PROJECT / "server.py"), "store", "copy", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == "turnstile: no store backend opens mysql:// URLs; use postgresql:// or postgres://\n"
    assert done.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"] and not any((tmp_path / "data").iterdir())


def test_a_data_directory_opens_the_json_store(tmp_path):
    async def run() -> None:
        store = await backends.open_at(str(tmp_path / "data"))
        try:
            assert isinstance(store, JsonStore) and store.backend == "json"
            await store.collection("t.docs").put("k", {"v": 1})
        finally:
            await store.close()
        assert backends.describe(str(tmp_path / "data")) == f"JSON store {tmp_path / 'data'}"

    asyncio.run(run())
