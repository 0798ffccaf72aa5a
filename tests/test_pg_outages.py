"""While PostgreSQL is unreachable every operation is a StoreUnavailable; afterwards the pool recovers by itself."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

from pg_proxy import Proxy

from core.pg import PgStore
from core.pg.testing import terminate_connections
from core.store import StoreUnavailable

PASSWORD = "pr0xy-Secret"


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"{parts.username or 'postgres'}:{PASSWORD}@127.0.0.1:{port}", parts.path, "", ""))


@contextlib.asynccontextmanager
async def _through_proxy(pg_url: str, pool_size: int) -> AsyncIterator[tuple[PgStore, Proxy]]:
    """A store whose connections pass through a proxy the test can cut or stall; closed afterwards."""
    parts = urlsplit(pg_url)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    store = await PgStore.connect(_via(pg_url, proxy.port), pool_size=pool_size)
    try:
        yield store, proxy
    finally:
        await store.close()
        await proxy.cut()


async def _expect_unavailable(coro) -> None:
    try:
        await coro
    except StoreUnavailable:
        return
    raise AssertionError("expected StoreUnavailable")


def test_unreachable_database_is_503_everywhere_and_recovers_without_restart(pg_url):
    async def main() -> None:
        async with _through_proxy(pg_url, pool_size=3) as (store, proxy):
            things = store.collection("things")
            for i in range(20):
                await things.put(str(i), {"n": i})
            await proxy.cut()
            for op in (
                things.get("1"),
                things.all(),
                things.find(n=3),
                things.count(n=3),
                things.put("x", {"n": -1}),
                things.insert({"n": -2}),
                store.id_counter("things"),
                store.collections(),
            ):
                await _expect_unavailable(op)

            async def in_transaction() -> None:
                async with store.transaction() as tx:
                    await tx.collection("things").get("1")

            await _expect_unavailable(in_transaction())
            start = time.monotonic()
            health = await store.check()
            assert time.monotonic() - start < 3
            assert health.writable is False and health.backend == "postgres"
            assert "PostgreSQL" in (health.error or "")
            assert PASSWORD not in str(health.public()) and "postgresql://" not in str(health.public())

            await proxy.start()  # the database is back: no restart of the store
            assert (await store.check()).writable is True
            assert [d["n"] for d in await things.all()] == list(range(20))  # nothing acknowledged was lost
            assert await things.get("x") is None
            await things.put("x", {"n": 100})
            assert (await things.get("x")) == {"n": 100}

    asyncio.run(main())


def test_health_answers_fast_when_the_database_stalls(pg_url):
    async def main() -> None:
        async with _through_proxy(pg_url, pool_size=2) as (store, proxy):
            health = await store.check()
            assert health.writable is True
            assert set(health.details) >= {"pool_size", "idle", "schema_version", "server_version"}
            await proxy.cut()
            proxy.stall = True
            await proxy.start()
            start = time.monotonic()
            health = await store.check()
            assert time.monotonic() - start < 3
            assert health.writable is False

    asyncio.run(main())


def test_a_write_storm_survives_terminated_connections(pg_admin, pg_url):
    """pg_terminate_backend during writes: failures are StoreUnavailable, every acknowledged write is kept."""

    async def main() -> None:
        store = await PgStore.connect(pg_url, pool_size=4)
        acked: list[str] = []
        failures: list[BaseException] = []
        stop = asyncio.Event()
        killed: list[int] = []

        async def writer(w: int) -> None:
            i = 0
            while not stop.is_set():
                key = f"w{w}-{i}"
                i += 1
                try:
                    async with store.transaction() as tx:
                        counters = tx.collection("counters")
                        doc = await counters.get(f"c{w}") or {"n": 0}
                        await counters.put(f"c{w}", {"n": doc["n"] + 1})
                        await tx.collection("things").insert({"w": w}, key=key)
                    acked.append(key)
                except Exception as exc:  # anything but StoreUnavailable fails the test below
                    failures.append(exc)
                    await asyncio.sleep(0.01)

        async def killer() -> None:
            for _ in range(4):
                await asyncio.sleep(0.15)
                killed.append(await terminate_connections(pg_admin, pg_url))
            await asyncio.sleep(0.3)
            stop.set()

        try:
            await asyncio.gather(killer(), *(writer(w) for w in range(4)))
            assert sum(killed) > 0 and failures  # the faults really hit transactions in flight
            assert all(isinstance(f, StoreUnavailable) for f in failures), failures[:3]
            keys = {k for k, _ in await store.collection("things").items()}
            assert set(acked) <= keys  # no acknowledged write lost
            # Each counter counts at least its acknowledged increments (an unacknowledged commit may add one).
            for w in range(4):
                mine = sum(1 for k in acked if k.startswith(f"w{w}-"))
                n = (await store.collection("counters").get(f"c{w}"))["n"]
                assert mine <= n <= mine + sum(1 for f in failures)
            before = len(acked)
            await store.collection("things").put("after", {"ok": True})  # recovered by itself
            assert before > 20
        finally:
            await store.close()

    asyncio.run(main())
