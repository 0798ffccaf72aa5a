"""Concurrent transactions in one process, on every backend: no lost update, exactly one winner, nothing half-done."""

from __future__ import annotations

import asyncio

import pytest

from core.store import KeyExists


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_transactions_on_one_counter_lose_no_increment(open_store):
    async with open_store() as store:

        async def bump() -> None:
            async with store.transaction() as tx:
                counters = tx.collection("t.counters")
                value = (await counters.get("c") or {"value": 0})["value"]
                await asyncio.sleep(0)  # give the others every chance to interleave
                await counters.put("c", {"value": value + 1})

        await asyncio.gather(*(bump() for _ in range(300)))
        assert await store.collection("t.counters").get("c") == {"value": 300}


@pytest.mark.gen_test
async def test_failed_transaction_changes_nothing(open_store):
    async with open_store() as store:
        with pytest.raises(RuntimeError):
            async with store.transaction() as tx:
                await tx.collection("t.docs").put("a", {"v": 1})
                await tx.collection("t.ids").insert({"v": 1})
                raise RuntimeError("abort")
        assert not await store.collection("t.docs").exists("a")
        assert await store.id_counter("t.ids") == 1, "an aborted insert does not use up its id"
        await store.collection("t.docs").put("b", {"v": 2})
        async with open_store() as reopened:
            assert await reopened.collection("t.docs").all() == [{"v": 2}]


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_inserts_of_one_key_have_exactly_one_winner(open_store):
    async with open_store() as store:
        users = store.collection("auth.users")
        # A whole user: PostgreSQL keeps auth.users in a table of its own, which needs a password.
        results = await asyncio.gather(
            *(users.insert({"username": "dup", "password": "hash", "n": n}, key="dup") for n in range(40)), return_exceptions=True
        )
        winners = [r for r in results if isinstance(r, dict)]
        assert len(winners) == 1 and all(isinstance(r, KeyExists) for r in results if r not in winners)
        assert await users.get("dup") == winners[0]
