"""Outside a transaction, a put, a delete and an insert under a key are one autocommit statement each.

What must hold: no BEGIN and no second round trip for these writes (they take their
locks in that statement), the same answers as in a transaction (a taken key is
`KeyExists`, a delete says whether there was a document), and every other write
outside a transaction still runs as a transaction of its own.
"""

from __future__ import annotations

import asyncio

import pytest

from core.pg import PgStore
from core.pg.testing import run_with_store
from core.store import KeyExists


async def spy(store: PgStore) -> list[str]:
    """The statements the store's one connection sends from now on."""
    sent: list[str] = []
    async with store.connections.connection() as conn:
        conn.add_query_logger(lambda record: sent.append(record.query))
    return sent


async def logged(sent: list[str]) -> list[str]:
    """``sent`` once asyncpg has called its loggers (on a later turn of the event loop)."""
    for _ in range(3):
        await asyncio.sleep(0)
    return sent


def test_put_delete_and_insert_under_a_key_are_one_statement_each(pg_url):
    async def body(store: PgStore) -> None:
        things = store.collection("things")
        await things.put("w", {}), await things.insert({}, key="x"), await things.delete("w")  # statements prepared
        sent = await spy(store)
        assert await things.put("a", {"n": 1}) == {"n": 1}
        assert await things.insert({"n": 2}, key="b") == {"n": 2}
        with pytest.raises(KeyExists):
            await things.insert({"n": 3}, key="b")
        assert await things.delete("a") is True
        assert await things.delete("a") is False
        assert len(await logged(sent)) == 5, sent
        assert not [q for q in sent if q.strip().upper() in ("BEGIN", "COMMIT")], sent
        assert await things.all() == [{}, {"n": 2}]

    run_with_store(pg_url, body, pool_size=1)


def test_other_writes_outside_a_transaction_are_transactions_of_their_own(pg_url):
    async def body(store: PgStore) -> None:
        things = store.collection("things")
        await things.put("k", {"n": 1})
        sent = await spy(store)
        assert await things.update("k", {"m": 2}) == {"n": 1, "m": 2}  # a locked read, then the write
        assert len(await logged(sent)) == 2, sent
        doc = await things.insert({"n": 5})  # an automatic id: the counter moves in the same transaction
        assert doc == {"id": 1, "n": 5}
        await things.insert({"n": 6}, key="7")  # a numeric key moves the counter past it
        assert (await things.insert({"n": 8}))["id"] == 8
        assert await things.delete_where(n=5) == 1
        assert sorted(d["n"] for d in await things.all()) == [1, 6, 8]

    run_with_store(pg_url, body, pool_size=1)
