"""PgStore sends identical reads asked for in one turn of the event loop once, and never serves a stale one.

What must hold: one statement for a burst of identical reads; every caller a
private copy; a read asked for after a write was acknowledged sees it (it never
joins a read already sent); an error reaches every caller; a cancelled first
caller leaves the others served.
"""

from __future__ import annotations

import asyncio

import pytest

from core.pg import PgStore
from core.pg.testing import run_with_store
from core.store import StoreUnavailable


def _count_statements(store: PgStore) -> list[str]:
    """Spy on the statements `PgStore` sends for reads outside transactions."""
    sent: list[str] = []
    read_now = store.connections.read_now

    async def spy(sql, args, one):  # type: ignore[no-untyped-def]
        sent.append(sql)
        return await read_now(sql, args, one)

    store.connections.read_now = spy  # type: ignore[method-assign]
    return sent


def test_a_burst_of_identical_reads_is_one_statement_and_each_caller_gets_its_own_copy(pg_url):
    async def body(store: PgStore) -> None:
        things = store.collection("things")
        for n in range(3):
            await things.insert({"n": n, "tags": ["x"]})
        sent = _count_statements(store)
        results = await asyncio.gather(*(things.all() for _ in range(8)), things.find(n=1), things.find(n=1), things.get("2"))
        assert len(sent) == 3, sent  # all(), find(n=1) and get("2"): one statement each
        lists = results[:8]
        assert all(r == lists[0] for r in lists) and [d["n"] for d in lists[0]] == [0, 1, 2]
        lists[0][0]["tags"].append("mine")
        lists[0][1]["n"] = 99
        assert all(r[0]["tags"] == ["x"] and r[1]["n"] == 1 for r in lists[1:])
        assert results[8] == results[9] == [{"id": 2, "n": 1, "tags": ["x"]}] and results[8] is not results[9]
        assert results[8][0] is not results[9][0]
        assert results[10] == {"id": 2, "n": 1, "tags": ["x"]}

    run_with_store(pg_url, body)


def test_reads_with_equal_but_different_parameters_are_not_shared(pg_url):
    async def body(store: PgStore) -> None:
        things = store.collection("things")
        await things.put("a", {"v": 1.5})
        await things.put("b", {"v": "1"})
        sent = _count_statements(store)
        by_number, by_text = await asyncio.gather(things.find(v=1.5), things.find(v="1"))
        assert (by_number, by_text) == ([{"v": 1.5}], [{"v": "1"}])
        assert len(sent) == 2

    run_with_store(pg_url, body)


def test_a_read_asked_for_after_an_acknowledged_write_sees_it(pg_url):
    """A read already sent is never joined: its snapshot may predate a write acknowledged since."""

    async def body(store: PgStore) -> None:
        things = store.collection("things")
        await things.put("a", {"v": 1})
        sent = _count_statements(store)
        first = asyncio.ensure_future(things.all())
        while not sent:  # the first read is on its way
            await asyncio.sleep(0)
        await things.put("b", {"v": 2})  # acknowledged: committed
        second = await things.all()
        assert second == [{"v": 1}, {"v": 2}]
        assert len(sent) == 2
        assert (await first)[0] == {"v": 1}

    run_with_store(pg_url, body)


def test_an_error_reaches_every_caller_of_a_shared_read(pg_url):
    async def body(store: PgStore) -> None:
        things = store.collection("things")
        await things.put("a", {"v": 1})
        read_now = store.connections.read_now

        async def broken(sql, args, one):  # type: ignore[no-untyped-def]
            raise StoreUnavailable("PostgreSQL is unreachable")

        store.connections.read_now = broken  # type: ignore[method-assign]
        results = await asyncio.gather(*(things.all() for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        store.connections.read_now = read_now  # type: ignore[method-assign]
        assert await things.all() == [{"v": 1}]  # nothing is left half-gathered

    run_with_store(pg_url, body)


@pytest.mark.parametrize("when", ["gathering", "reading"])
def test_a_cancelled_first_caller_leaves_the_others_served(pg_url, when):
    async def body(store: PgStore) -> None:
        things = store.collection("things")
        await things.put("a", {"v": 1})
        sent = _count_statements(store)
        first = asyncio.ensure_future(things.all())
        others = [asyncio.ensure_future(things.all()) for _ in range(3)]
        await asyncio.sleep(0)  # every task has asked; the first one gathers
        if when == "reading":
            while not sent:
                await asyncio.sleep(0)
        first.cancel()
        assert await asyncio.gather(*others) == [[{"v": 1}]] * 3
        with pytest.raises(asyncio.CancelledError):
            await first
        assert len(sent) == (1 if when == "gathering" else 2)  # the others read again, once, together

    run_with_store(pg_url, body)
