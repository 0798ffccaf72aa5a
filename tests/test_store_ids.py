"""Automatic ids never go back: not after deletes, reopening, compaction, or an explicit advance."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from store_kit import closing

from core.jsondb import JsonStore

ROOT = Path(__file__).resolve().parent.parent


def test_the_counter_follows_inserts_and_survives_deletes_reopening_and_compaction(open_store):
    async def run() -> None:
        async with open_store() as store:
            assert await store.id_counter("t.items") == 1
            items = store.collection("t.items")
            first = await items.insert({"n": 1})
            second = await items.insert({"n": 2})
            assert (first["id"], second["id"]) == (1, 2)
            assert await store.id_counter("t.items") == 3
            await items.delete(2)
            assert await store.id_counter("t.items") == 3, "a delete never gives an id back"
            await items.insert({"n": 10}, key=10)  # a numeric key moves the counter past it
            assert await store.id_counter("t.items") == 11

        async with open_store() as reopened:
            assert await reopened.id_counter("t.items") == 11
            if reopened.backend == "json":  # compaction rewrites the JSON store's files
                await reopened.compact()

        async with open_store() as compacted:
            assert await compacted.id_counter("t.items") == 11
            assert (await compacted.collection("t.items").insert({"n": 3}))["id"] == 11

    asyncio.run(run())


def test_advance_moves_forward_only_and_is_durable(open_store):
    async def run() -> None:
        async with open_store() as store:
            await store.advance_id_counter("t.items", 500)
            assert await store.id_counter("t.items") == 500
            await store.advance_id_counter("t.items", 20)
            assert await store.id_counter("t.items") == 500, "ids never go back"
            # A collection whose only trace is a used id still counts (a copy must carry it over).
            assert await store.collections() == ["t.items"]
            assert await store.collection("t.items").count() == 0

        async with open_store() as reopened:  # the advance was a write of its own (on JSON, a journal line)
            assert await reopened.id_counter("t.items") == 500
            assert (await reopened.collection("t.items").insert({"n": 1}))["id"] == 500
            await reopened.advance_id_counter("t.items", 900)
            if reopened.backend == "json":  # compaction rewrites the JSON store's files
                await reopened.compact()

        async with open_store() as compacted:
            assert await compacted.id_counter("t.items") == 900
            assert (await compacted.collection("t.items").insert({"n": 2}))["id"] == 900

    asyncio.run(run())


def test_an_advance_that_changes_nothing_writes_nothing(tmp_path):
    """JSON only: measured by the journal's size."""

    async def run() -> None:
        async with closing(JsonStore(tmp_path).open()) as store:
            await store.collection("t.items").insert({"n": 1})
            journal = next(tmp_path.glob("journal.*.jsonl"))
            size = journal.stat().st_size
            await store.advance_id_counter("t.items", 2)
            await store.advance_id_counter("t.items", 1)
            assert journal.stat().st_size == size

    asyncio.run(run())


def test_bad_advances_are_refused(open_store):
    async def run() -> None:
        async with open_store() as store:
            for bad, error in ((0, ValueError), (2**53, ValueError), (True, TypeError), ("5", TypeError), (5.0, TypeError)):
                with pytest.raises(error):
                    await store.advance_id_counter("t.items", bad)
            with pytest.raises(ValueError):
                await store.advance_id_counter("Bad Name", 5)
            assert await store.id_counter("t.items") == 1
            assert await store.collections() == []

    asyncio.run(run())


def test_another_process_sees_the_advanced_counter(tmp_path):
    """JSON only: ``python -m core.jsondb check`` reads the JSON store's files."""

    async def run() -> None:
        async with closing(JsonStore(tmp_path).open()) as store:
            await store.advance_id_counter("t.items", 77)

    asyncio.run(run())
    result = subprocess.run([sys.executable, "-m", "core.jsondb", "check", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    assert "t.items: 0 records, next id 77" in result.stdout
