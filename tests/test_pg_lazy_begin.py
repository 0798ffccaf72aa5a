"""PgStore sends BEGIN only when a transaction needs it, and never leaves a key locked afterwards.

A transaction that reads keys and then writes one collection (a token rotation)
runs without BEGIN: its reads lock their keys for the session, and its one write
statement takes those locks over and commits. What must hold: those keys stay
locked against every other transaction until that commit; no advisory lock is
left behind after a commit, a rollback or an error; anything more (a second
collection, a filtered read) runs inside BEGIN as before.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest

from core.accounts import Accounts
from core.pg import PgStore
from core.store import StoreError


def run_two(url: str, body) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with contextlib.AsyncExitStack() as opened:  # each closed however the rest goes
            a = await PgStore.connect(url, pool_size=2)
            opened.push_async_callback(a.close)
            b = await PgStore.connect(url, pool_size=2)
            opened.push_async_callback(b.close)
            admin = await asyncpg.connect(url)
            opened.push_async_callback(admin.close)
            await body(a, b, admin)

    asyncio.run(main())


async def advisory_locks(admin: asyncpg.Connection) -> int:
    """Advisory locks held on this test's database (other databases on the server may be busy with other runs)."""
    sql = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    return int(await admin.fetchval(sql))


def test_keys_read_before_begin_stay_locked_until_the_write_commits(pg_url):
    async def body(a: PgStore, b: PgStore, admin: asyncpg.Connection) -> None:
        await a.collection("things").put("k", {"n": 0})
        read = asyncio.Event()
        release = asyncio.Event()

        async def slow_increment() -> None:
            async with a.transaction() as tx:
                things = tx.collection("things")
                doc = await things.get("k")
                read.set()
                await release.wait()
                await things.put("k", {"n": doc["n"] + 1})
            assert not tx.begun  # read then one write statement: no BEGIN was needed

        async def increment_on_b() -> None:
            async with b.transaction() as tx:
                things = tx.collection("things")
                doc = await things.get("k")
                await things.put("k", {"n": doc["n"] + 1})

        first = asyncio.ensure_future(slow_increment())
        await read.wait()
        second = asyncio.ensure_future(increment_on_b())
        await asyncio.sleep(0.3)
        assert not second.done()  # b waits for the key a holds
        assert await advisory_locks(admin) >= 1
        release.set()
        await asyncio.gather(first, second)
        assert await b.collection("things").get("k") == {"n": 2}  # neither increment lost
        assert await advisory_locks(admin) == 0

    run_two(pg_url, body)


@pytest.mark.parametrize("ending", ["no write", "error in the body", "second collection", "filtered read"])
def test_no_advisory_lock_is_left_behind(pg_url, ending):
    async def body(a: PgStore, b: PgStore, admin: asyncpg.Connection) -> None:
        await a.collection("things").put("k", {"n": 0})
        try:
            async with a.transaction() as tx:
                things = tx.collection("things")
                doc = await things.get("k")
                if ending == "error in the body":
                    raise RuntimeError("the handler failed")
                if ending == "second collection":
                    await tx.collection("others").put("k", doc)
                    await things.put("k", {"n": 1})
                if ending == "filtered read":
                    await things.put("k", {"n": 1})
                    assert await things.find(n=1) == [{"n": 1}]
        except RuntimeError:
            assert ending == "error in the body"
        assert await advisory_locks(admin) == 0
        # and the key is free for the other instance at once
        async with asyncio.timeout(2):
            async with b.transaction() as tx:
                await tx.collection("things").update("k", {"seen": True})
        if ending == "second collection":
            assert await b.collection("others").get("k") == {"n": 0}

    run_two(pg_url, body)


def test_a_failed_write_statement_rolls_back_and_releases_the_keys(pg_url):
    async def body(a: PgStore, b: PgStore, admin: asyncpg.Connection) -> None:
        await a.collection("things").put("k", {"n": 0})
        with pytest.raises((StoreError, ValueError)):
            async with a.transaction() as tx:
                things = tx.collection("things")
                await things.get("k")
                await things.put("k", {"text": "nul \x00 is refused by PostgreSQL"})
        assert await advisory_locks(admin) == 0
        assert await b.collection("things").get("k") == {"n": 0}

    run_two(pg_url, body)


def test_rotations_do_not_scan_the_sessions_table(pg_url):
    """A prepared write planned while the table was small used to read every session on each rotation."""

    async def body(a: PgStore, b: PgStore, admin: asyncpg.Connection) -> None:
        accounts = await Accounts.open(a)
        await a.collection("auth.users").insert({"username": "u", "password": "x", "roles": [2001]}, key="u")
        digest = "0" * 64
        assert await accounts.start_session("u", digest, 3600, "x")
        for i in range(1, 301):
            new = f"{i:064x}"
            outcome = await accounts.refresh(digest, "u", "token", new, 3600, 0)
            assert outcome.outcome.value == "rotated"
            digest = new
        await a.close()  # a backend that exits reports its statistics
        await asyncio.sleep(0.5)
        await admin.execute("SELECT pg_stat_clear_snapshot()")
        read = await admin.fetchval("SELECT seq_tup_read FROM pg_stat_user_tables WHERE relname = 'sessions'")
        assert read < 300, f"{read} session rows read by sequential scans during 300 rotations"

    run_two(pg_url, body)
