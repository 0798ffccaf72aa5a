"""The core.store interface on every backend: protocols, namespaces, closing; and the JSON store's health facts."""

from __future__ import annotations

import asyncio

import pytest

from store_kit import closing

from core.jsondb import JsonStore
from core.store import Collection, Namespace, Store, StoreUnavailable


def test_the_store_satisfies_the_protocols(open_store):
    async def run() -> None:
        async with open_store() as store:
            assert isinstance(store, Store) and store.backend == open_store.backend
            assert isinstance(store.collection("t.docs"), Collection)
            async with store.transaction() as tx:
                assert isinstance(tx.collection("t.docs"), Collection)

    asyncio.run(run())


def test_health_reports_sizes_and_counts_never_the_path(tmp_path):
    """JSON only: the details and the probe file are the JSON store's own."""

    async def run() -> None:
        async with closing(JsonStore(tmp_path).open()) as store:
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


def test_a_namespace_prefixes_collections_transactions_and_indexes(open_store):
    async def run() -> None:
        async with open_store() as store:
            notes = Namespace(store, "notes")
            await notes.collection("notes").put("a", {"owner": "alice"})
            async with notes.transaction() as tx:
                await tx.collection("notes").put("b", {"owner": "bob"})
            await notes.ensure_index("notes", "owner")
            if store.backend == "json":  # where an index lives is each backend's own business
                assert "owner" in store._tables["notes.notes"].indexes
            assert await store.collections() == ["notes.notes"]
            assert await store.collection("notes.notes").find(owner="bob") == [{"owner": "bob"}]

    asyncio.run(run())


def test_a_closed_store_refuses_writes_as_unavailable(open_store):
    async def run() -> None:
        async with open_store() as store:
            docs = store.collection("t.docs")
            await docs.put("a", {"n": 1})
            waiting = [asyncio.ensure_future(docs.put(f"w{i}", {"n": i})) for i in range(3)]
            await store.close()
            results = await asyncio.gather(*waiting, return_exceptions=True)
            with pytest.raises(StoreUnavailable):
                await docs.put("b", {"n": 2})
            if store.backend == "json":  # the JSON store's own: sync transactions, and reads from memory after close
                with pytest.raises(StoreUnavailable):
                    with store.transaction_sync():
                        pass
                assert await docs.get("a") == {"n": 1}, "reads still answer from memory"
        async with open_store() as reopened:
            # Whatever close() let finish was acknowledged and is there; the rest was refused, not lost silently.
            for i, result in enumerate(results):
                assert (await reopened.collection("t.docs").exists(f"w{i}")) == (not isinstance(result, BaseException)), result
                assert isinstance(result, (dict, StoreUnavailable)), result

    asyncio.run(run())
