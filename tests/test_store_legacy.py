"""A DATA_DIR left by the project's first store (one <collection>.json per collection) is imported once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from store_kit import closing

from core.jsondb import JsonStore, StoreCorrupt


def first_store_file(data_dir: Path, name: str, records: dict, next_id: int) -> Path:
    """Exactly what the first store's _persist wrote (commit 4719c72)."""
    path = data_dir / f"{name}.json"
    path.write_text(json.dumps({"format": 1, "next_id": next_id, "records": records}, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def test_first_store_files_are_imported_once(tmp_path):
    users = first_store_file(tmp_path, "auth.users", {"alice": {"username": "alice", "roles": [1]}}, 1)
    employees = first_store_file(tmp_path, "employees.employees", {"1": {"id": 1, "firstname": "Zoë"}, "3": {"id": 3}}, 4)

    async def run() -> None:
        async with closing(JsonStore(tmp_path).open()) as store:
            assert await store.collection("auth.users").get("alice") == {"username": "alice", "roles": [1]}
            assert await store.collection("employees.employees").get(1) == {"id": 1, "firstname": "Zoë"}
            assert (await store.collection("employees.employees").insert({"firstname": "Next"}))["id"] == 4
        assert not users.exists() and not employees.exists()
        assert users.with_name("auth.users.json.migrated").exists()
        # The .migrated files are never read again: the snapshot and journal hold everything.
        users.with_name("auth.users.json.migrated").write_text("garbage")
        async with closing(JsonStore(tmp_path).open()) as again:
            assert sorted(d["id"] for d in await again.collection("employees.employees").all()) == [1, 3, 4]
            assert await again.collection("auth.users").count() == 1

    asyncio.run(run())


@pytest.mark.parametrize("body", [
    '{"next_id": 1, "records": {}}',  # no format: not something the first store wrote
    '{"format": 1, "records": {}}',  # it always wrote next_id
    '{"format": 1, "next_id": 1, "records": []}',
    '{"format": 1, "next_id": 1, "records": {}',
])
def test_a_file_the_first_store_did_not_write_is_refused_and_left_alone(tmp_path, body):
    (tmp_path / "auth.users.json").write_text(body)
    with pytest.raises(StoreCorrupt, match=r"auth\.users\.json"):
        JsonStore(tmp_path).open()
    assert (tmp_path / "auth.users.json").read_text() == body
    assert not (tmp_path / "snapshot.jsonl").exists()
