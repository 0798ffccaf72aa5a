"""A damaged data file stops start-up with an error naming it; the README recovery steps work."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from store_kit import closing, stored

from core.jsondb import JsonStore, StoreCorrupt

SERVER = Path(__file__).resolve().parent.parent / "server.py"


def populated(data_dir: Path) -> Path:
    """A store with a snapshot, a previous snapshot, and journal lines after them."""

    async def fill() -> None:
        async with closing(JsonStore(data_dir).open()) as store:
            docs = store.collection("t.docs")
            for i in range(10):
                await docs.put(f"k{i}", {"i": i})
            await store.compact()
            for i in range(10, 15):
                await docs.put(f"k{i}", {"i": i})
            await store.compact()
            for i in range(15, 20):
                await docs.put(f"k{i}", {"i": i})

    asyncio.run(fill())
    return data_dir



def snapshot_of(data_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(data_dir.iterdir()) if p.is_file()}


def test_garbled_snapshot_line_stops_start_up_naming_file_and_line(tmp_path):
    data = populated(tmp_path / "data")
    snapshot = data / "snapshot.jsonl"
    lines = snapshot.read_bytes().splitlines(keepends=True)
    lines[3] = b'{"c":"t.docs","k":"k2","v":{"i":2\n'
    snapshot.write_bytes(b"".join(lines))
    before = snapshot_of(data)
    with pytest.raises(StoreCorrupt, match=r"snapshot\.jsonl line 4: not valid JSON"):
        JsonStore(data).open()
    assert snapshot_of(data) == before, "a failed start must not touch any file"


def test_truncated_snapshot_is_detected(tmp_path):
    data = populated(tmp_path / "data")
    snapshot = data / "snapshot.jsonl"
    body = snapshot.read_bytes()
    cut = body[: body.rfind(b"\n", 0, len(body) - 1) + 1]  # lose the end line only: still line-aligned
    snapshot.write_bytes(cut)
    with pytest.raises(StoreCorrupt, match=r"snapshot\.jsonl: truncated"):
        JsonStore(data).open()
    snapshot.write_bytes(body[: len(body) // 2])
    with pytest.raises(StoreCorrupt, match=r"snapshot\.jsonl"):
        JsonStore(data).open()


def test_garbled_journal_line_in_the_middle_stops_start_up(tmp_path):
    data = populated(tmp_path / "data")
    journal = sorted(data.glob("journal.*.jsonl"))[-1]
    lines = journal.read_bytes().splitlines(keepends=True)
    assert len(lines) == 5
    lines[2] = b"#garbage#\n"
    journal.write_bytes(b"".join(lines))
    before = snapshot_of(data)
    with pytest.raises(StoreCorrupt, match=rf"{journal.name} line 3: not valid JSON"):
        JsonStore(data).open()
    assert snapshot_of(data) == before


def test_missing_snapshot_with_later_journals_is_refused(tmp_path):
    data = populated(tmp_path / "data")
    (data / "snapshot.jsonl").unlink()
    with pytest.raises(StoreCorrupt, match=r"snapshot\.jsonl: missing"):
        JsonStore(data).open()


def test_opening_during_the_first_compaction_loads_everything(tmp_path):
    """Between freezing journal 1 and writing the first snapshot, journals 1 and 2 exist and no snapshot: not corrupt."""

    async def run() -> None:
        async with closing(JsonStore(tmp_path).open()) as store:
            docs = store.collection("t.docs")
            await docs.put("a", {"n": 1})
            (tmp_path / "journal.00000002.jsonl").touch()  # what the compaction's first step does, under the lock
            await docs.put("b", {"n": 2})
            async with closing(JsonStore(tmp_path).open()) as opened:
                assert {d["n"] for d in await opened.collection("t.docs").all()} == {1, 2}

    asyncio.run(run())


def test_recovery_from_previous_snapshot_loses_nothing(tmp_path):
    """README 'Data files': replace a damaged snapshot.jsonl with snapshot.prev.jsonl."""
    data = populated(tmp_path / "data")
    (data / "snapshot.jsonl").write_bytes(b"\x00\x00garbage")
    with pytest.raises(StoreCorrupt):
        JsonStore(data).open()
    shutil.copy(data / "snapshot.prev.jsonl", data / "snapshot.jsonl")
    assert sorted(d["i"] for d in stored(data).values()) == list(range(20))


def test_recovery_by_removing_a_bad_journal_line(tmp_path):
    """README 'Data files': delete the damaged line; only that transaction is lost."""
    data = populated(tmp_path / "data")
    journal = sorted(data.glob("journal.*.jsonl"))[-1]
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[1] = b"not json\n"
    journal.write_bytes(b"".join(lines))
    with pytest.raises(StoreCorrupt):
        JsonStore(data).open()
    journal.write_bytes(b"".join(lines[:1] + lines[2:]))
    assert sorted(d["i"] for d in stored(data).values()) == [i for i in range(20) if i != 16]


def test_server_refuses_to_start_on_a_corrupt_store(tmp_path):
    data = populated(tmp_path / "data")
    (data / "snapshot.jsonl").write_text("{not json\n")
    env = {"PATH": "/usr/bin:/bin", "ACCESS_TOKEN_SECRET": "a" * 64, "REFRESH_TOKEN_SECRET": "b" * 64, "DATA_DIR": str(data)}
    result = subprocess.run([sys.executable, str(SERVER)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"{data / 'snapshot.jsonl'} line 1: not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert (data / "snapshot.jsonl").read_text() == "{not json\n"
