"""Transactions on PostgreSQL are atomic across instances: two pools here stand for two servers."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from core.pg import PgStore
from core.store import KeyExists, StoreError, StoreUnavailable, where


def run_two(url: str, body) -> None:
    """``body(a, b)`` with two stores on one database, as two instances would have."""

    async def main() -> None:
        async with contextlib.AsyncExitStack() as opened:  # each store closed however the rest goes
            a = await PgStore.connect(url, pool_size=4)
            opened.push_async_callback(a.close)
            b = await PgStore.connect(url, pool_size=4)
            opened.push_async_callback(b.close)
            await body(a, b)

    asyncio.run(main())


def test_200_concurrent_increments_from_two_instances_all_count(pg_url):
    async def increment(store: PgStore) -> None:
        async with store.transaction() as tx:
            counters = tx.collection("counters")
            doc = await counters.get("hits")
            await counters.put("hits", {"n": (doc or {"n": 0})["n"] + 1})

    async def body(a: PgStore, b: PgStore) -> None:
        await asyncio.gather(*(increment(a if i % 2 else b) for i in range(200)))
        assert await a.collection("counters").get("hits") == {"n": 200}

    run_two(pg_url, body)


def test_one_session_rotated_by_two_instances_at_once_has_one_successor(pg_url):
    async def rotate(store: PgStore, digest: str, new: str) -> str:
        async with store.transaction() as tx:
            sessions = tx.collection("auth.sessions")
            record = await sessions.get(digest)
            if record is None or record["retired"] is not None:
                return "refused"
            await asyncio.sleep(0.02)  # the other instance is at its read now
            await sessions.update(digest, {"retired": int(time.time()), "successor": new})
            await sessions.put(new, {**record, "digest": new, "retired": None, "successor": None})
            return "rotated"

    async def body(a: PgStore, b: PgStore) -> None:
        for round_ in range(10):
            digest = f"d{round_}"
            await a.collection("auth.sessions").put(
                digest,
                {"digest": digest, "username": "alice", "family": f"f{round_}", "created": 1, "expires": 2**40, "retired": None, "successor": None},
            )
            outcomes = await asyncio.gather(rotate(a, digest, f"{digest}-a"), rotate(b, digest, f"{digest}-b"))
            assert sorted(outcomes) == ["refused", "rotated"]
            family = await b.collection("auth.sessions").find(family=f"f{round_}")
            assert len(family) == 2  # the old token and exactly one successor
            winner = "a" if outcomes[0] == "rotated" else "b"
            assert (await a.collection("auth.sessions").get(digest))["successor"] == f"{digest}-{winner}"

    run_two(pg_url, body)


def test_one_key_inserted_by_two_instances_at_once_is_taken_once(pg_url):
    async def body(a: PgStore, b: PgStore) -> None:
        for i in range(20):
            results = await asyncio.gather(
                a.collection("auth.users").insert({"username": f"u{i}", "password": "a"}, key=f"u{i}"),
                b.collection("auth.users").insert({"username": f"u{i}", "password": "b"}, key=f"u{i}"),
                return_exceptions=True,
            )
            assert sum(isinstance(r, KeyExists) for r in results) == 1, results
            winner = next(r for r in results if isinstance(r, dict))
            assert await a.collection("auth.users").get(f"u{i}") == winner

    run_two(pg_url, body)


@pytest.mark.parametrize(
    "collection, field",
    [("auth.sessions", "username"), ("notes.notes", "owner"), ("notes.notes", "unindexed")],
)
def test_check_then_insert_by_field_admits_no_phantom(pg_url, collection, field):
    """"Insert only if none has this field value yet", from two instances: exactly one wins,
    whether the field is a typed indexed column, an ensure_index field, or not indexed at all."""

    async def claim(store: PgStore, key: str) -> bool:
        async with store.transaction() as tx:
            coll = tx.collection(collection)
            if await coll.count(**{field: "bob"}):
                return False
            await asyncio.sleep(0.02)
            doc = {field: "bob", "digest": key} if collection == "auth.sessions" else {field: "bob"}
            await coll.insert(doc, key=key)
            return True

    async def body(a: PgStore, b: PgStore) -> None:
        await a.ensure_index("notes.notes", "owner")
        for round_ in range(5):
            await a.collection(collection).delete_where(**{field: "bob"})
            won = await asyncio.gather(claim(a, f"a{round_}"), claim(b, f"b{round_}"))
            assert sorted(won) == [False, True]
            assert await b.collection(collection).count(**{field: "bob"}) == 1

    run_two(pg_url, body)


def test_writers_of_other_keys_and_values_do_not_wait(pg_url):
    async def body(a: PgStore, b: PgStore) -> None:
        await a.ensure_index("notes.notes", "owner")
        await a.collection("notes.notes").put("1", {"owner": "x"})
        await a.collection("notes.notes").put("4", {"owner": "x"})
        holding = asyncio.Event()

        async def hold() -> None:
            async with a.transaction() as tx:
                await tx.collection("notes.notes").get("1")
                await tx.collection("notes.notes").find(owner="x")
                holding.set()
                await asyncio.sleep(0.6)

        async def timed(coro) -> float:
            await holding.wait()
            start = time.monotonic()
            await coro
            return time.monotonic() - start

        holder = asyncio.create_task(hold())
        other_key = await timed(b.collection("notes.notes").put("2", {"owner": "y"}))
        holder_started = time.monotonic()
        same_value = await timed(b.collection("notes.notes").put("3", {"owner": "x"}))
        await holder
        assert other_key < 0.3  # another key, another value: no wait
        assert same_value > 0.3  # a new match for the holder's read waits for its commit
        # Moving a document out of the holder's match set waits too (the old value is locked).
        holding.clear()
        holder = asyncio.create_task(hold())
        moved = await timed(b.collection("notes.notes").put("4", {"owner": "elsewhere"}))
        await holder
        assert moved > 0.3 and holder_started

    run_two(pg_url, body)


def test_a_deadlock_is_a_503_and_nothing_half_done_stays(pg_url):
    async def cross(store: PgStore, first: str, second: str) -> None:
        async with store.transaction() as tx:
            things = tx.collection("things")
            await things.get(first)  # locks `first` now (a put alone takes its lock when it is sent, at commit)
            await things.put(first, {"by": first})
            await asyncio.sleep(0.1)
            await things.get(second)

    async def body(a: PgStore, b: PgStore) -> None:
        results = await asyncio.gather(cross(a, "x", "y"), cross(b, "y", "x"), return_exceptions=True)
        failed = [r for r in results if isinstance(r, Exception)]
        assert len(failed) == 1 and isinstance(failed[0], StoreUnavailable), results
        assert failed[0].retry_after >= 1
        kept = {k for k, _ in await a.collection("things").items()}
        assert len(kept) == 1  # the loser's write was rolled back
        await b.collection("things").put("x", {"after": True})  # and no lock is left behind
        await a.collection("things").put("y", {"after": True})

    run_two(pg_url, body)


def test_a_transaction_sees_its_own_writes_and_rolls_back_on_error(pg_url):
    async def body(a: PgStore, b: PgStore) -> None:
        with pytest.raises(RuntimeError):
            async with a.transaction() as tx:
                notes = tx.collection("notes")
                await notes.put("k", {"owner": "z"})
                assert await notes.get("k") == {"owner": "z"}
                assert [d["owner"] for d in await notes.find(owner="z")] == ["z"]
                assert await notes.count(where("owner") >= "a") == 1
                raise RuntimeError("changed my mind")
        assert await b.collection("notes").get("k") is None
        assert await a.collection("notes").count(owner="z") == 0

    run_two(pg_url, body)


def test_a_database_error_inside_a_transaction_cannot_be_committed(pg_url):
    async def body(a: PgStore, b: PgStore) -> None:
        with pytest.raises(StoreError, match="rolled back"):
            async with a.transaction() as tx:
                notes = tx.collection("notes")
                await notes.put("ok", {"n": 1})
                with pytest.raises(ValueError):
                    await notes.put("bad", {"text": "nul \x00 inside"})  # PostgreSQL cannot store U+0000
                with pytest.raises(StoreError, match="already failed"):
                    await notes.get("ok")
        assert await b.collection("notes").get("ok") is None

    run_two(pg_url, body)


def test_prefixed_transactions_and_delete_where_inside_them(pg_url):
    async def body(a: PgStore, b: PgStore) -> None:
        for i in range(6):
            await a.collection("plug.items").put(str(i), {"expires": i})
        async with a.transaction(prefix="plug.") as tx:
            items = tx.collection("items")
            assert await items.get("3") == {"expires": 3}
            assert await items.delete_where(where("expires") < 4) == 4
            assert await items.get("3") is None
            assert await items.count(where("expires") >= 0) == 2
        assert sorted(k for k, _ in await b.collection("plug.items").items()) == ["4", "5"]

    run_two(pg_url, body)


def test_a_cancelled_transaction_commits_nothing_and_holds_no_lock(pg_url):
    async def body(a: PgStore, b: PgStore) -> None:
        inside = asyncio.Event()

        async def abandoned() -> None:
            async with a.transaction() as tx:
                await tx.collection("things").put("k", {"half": True})
                inside.set()
                await asyncio.sleep(10)

        task = asyncio.create_task(abandoned())
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        start = time.monotonic()
        async with b.transaction() as tx:
            assert await tx.collection("things").get("k") is None
            await tx.collection("things").put("k", {"whole": True})
        assert time.monotonic() - start < 1
        for _ in range(8):  # every pooled connection of a is clean again
            assert await a.collection("things").get("k") == {"whole": True}

    run_two(pg_url, body)


def test_moving_a_session_to_another_user_waits_for_a_reader_of_the_old_user(pg_url):
    async def body(a: PgStore, b: PgStore) -> None:
        await a.collection("auth.sessions").put("d1", {"digest": "d1", "username": "alice", "family": "f"})
        holding = asyncio.Event()

        async def hold() -> None:
            async with a.transaction() as tx:
                assert len(await tx.collection("auth.sessions").find(username="alice")) == 1
                holding.set()
                await asyncio.sleep(0.5)

        holder = asyncio.create_task(hold())
        await holding.wait()
        start = time.monotonic()
        await b.collection("auth.sessions").put("d1", {"digest": "d1", "username": "bob", "family": "f"})
        waited = time.monotonic() - start
        await holder
        assert waited > 0.3

    run_two(pg_url, body)


@pytest.mark.parametrize(
    "collection, field",
    [("auth.sessions", "username"), ("notes.notes", "owner"), ("notes.notes", "unindexed")],
)
def test_a_read_then_update_into_a_value_waits_for_a_reader_of_that_value(pg_url, collection, field):
    """A write sent at commit (after reading its key) still takes the write locks: no phantom for
    a transaction that counted the value, and the writer waits for it."""

    async def body(a: PgStore, b: PgStore) -> None:
        await a.ensure_index("notes.notes", "owner")
        await a.collection(collection).put("d1", {"digest": "d1", field: "alice"})
        holding = asyncio.Event()

        async def hold() -> list[int]:
            async with a.transaction() as tx:
                coll = tx.collection(collection)
                seen = [await coll.count(**{field: "bob"})]
                holding.set()
                await asyncio.sleep(0.5)
                return seen + [await coll.count(**{field: "bob"})]

        holder = asyncio.create_task(hold())
        await holding.wait()
        start = time.monotonic()
        async with b.transaction() as tx:
            coll = tx.collection(collection)
            assert (await coll.get("d1"))[field] == "alice"
            await coll.update("d1", {field: "bob"})
        waited = time.monotonic() - start
        assert await holder == [0, 0]
        assert waited > 0.3
        assert await a.collection(collection).count(**{field: "bob"}) == 1

    run_two(pg_url, body)


def test_a_put_of_an_unread_key_in_a_transaction_waits_for_the_holder_of_that_key(pg_url):
    """The put is sent at commit; it then locks its key, so it cannot slip under a read-modify-write."""

    async def body(a: PgStore, b: PgStore) -> None:
        await a.collection("notes").put("k", {"n": 1})
        holding = asyncio.Event()

        async def increment() -> None:
            async with a.transaction() as tx:
                notes = tx.collection("notes")
                n = (await notes.get("k"))["n"]
                holding.set()
                await asyncio.sleep(0.5)
                await notes.put("k", {"n": n + 1})

        holder = asyncio.create_task(increment())
        await holding.wait()
        start = time.monotonic()
        async with b.transaction() as tx:
            await tx.collection("notes").put("k", {"n": 100})
        waited = time.monotonic() - start
        await holder
        assert waited > 0.3
        assert await a.collection("notes").get("k") == {"n": 100}  # the increment first, then this put

    run_two(pg_url, body)
