"""JsonStore as the core.store interface: protocols, health facts without paths, namespaces, closing."""

from __future__ import annotations

import asyncio

import pytest

from core.jsondb import JsonStore
from core.store import Collection, Namespace, Store, StoreUnavailable


def test_json_store_satisfies_the_protocols(tmp_path):
    async def run() -> None:
        store = JsonStore(tmp_path).open()
        assert isinstance(store, Store) and store.backend == "json"
        assert isinstance(store.collection("t.docs"), Collection)
        async with store.transaction() as tx:
            assert isinstance(tx.collection("t.docs"), Collection)
        await store.close()

    asyncio.run(run())


def test_health_reports_sizes_and_counts_never_the_path(tmp_path):
    async def run() -> None:
        store = JsonStore(tmp_path).open()
        await store.collection("t.docs").put("a", {"n": 1})
        health = await store.check()
        assert (health.backend, health.writable, health.error) == ("json", True, None)
        assert set(health.details) == {"generation", "journal_bytes", "snapshot_bytes", "pending_writes", "compacting"}
        assert health.details["journal_bytes"] > 0 and health.details["pending_writes"] == 0
        assert str(tmp_path) not in repr(health.public())
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".probe")) == [], "the probe cleans up"
        await store.close()
        closed = await store.check()
        assert (closed.writable, closed.error) == (False, "closed"), "a closed store answers, and takes no writes"

    asyncio.run(run())


def test_a_namespace_prefixes_collections_transactions_and_indexes(tmp_path):
    async def run() -> None:
        store = JsonStore(tmp_path).open()
        notes = store.namespace("notes")
        assert isinstance(notes, Namespace)
        await notes.collection("notes").put("a", {"owner": "alice"})
        async with notes.transaction() as tx:
            await tx.collection("notes").put("b", {"owner": "bob"})
        await notes.ensure_index("notes", "owner")
        assert "owner" in store._tables["notes.notes"].indexes
        assert await store.collections() == ["notes.notes"]
        assert await store.collection("notes.notes").find(owner="bob") == [{"owner": "bob"}]
        await store.close()

    asyncio.run(run())


def test_a_closed_store_refuses_writes_as_unavailable(tmp_path):
    async def run() -> None:
        store = JsonStore(tmp_path).open()
        docs = store.collection("t.docs")
        await docs.put("a", {"n": 1})
        waiting = [asyncio.ensure_future(docs.put(f"w{i}", {"n": i})) for i in range(3)]
        await store.close()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        with pytest.raises(StoreUnavailable):
            await docs.put("b", {"n": 2})
        with pytest.raises(StoreUnavailable):
            with store.transaction_sync():
                pass
        assert await docs.get("a") == {"n": 1}, "reads still answer from memory"
        reopened = JsonStore(tmp_path).open()
        # Whatever close() let finish was acknowledged and is there; the rest was refused, not lost silently.
        for i, result in enumerate(results):
            assert (await reopened.collection("t.docs").exists(f"w{i}")) == (not isinstance(result, BaseException)), result
            assert isinstance(result, (dict, StoreUnavailable)), result
        await reopened.close()

    asyncio.run(run())
