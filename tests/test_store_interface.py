"""JsonStore as the core.store interface: protocols, health facts without paths, namespaces."""

from __future__ import annotations

import asyncio

from core.jsondb import JsonStore
from core.store import Collection, Namespace, Store


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
