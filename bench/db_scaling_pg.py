"""`bench/db_scaling.py --store postgres`: write and login-lookup cost at 1k and 100k users on PostgreSQL.

Two fresh databases on the server (``--database-url``, else the one the tests
find), dropped at the end: one holds 1k users, the other 100k. Both go through
`PgStore`, the store interface the server uses: 1,000 users are seeded per
database with transactions of puts; the other 99,000 of the big one are
copied straight into the ``users`` table (COPY, rows built by the store's own
layout), then both tables are vacuumed and analyzed, as autovacuum would after
such a load. Writes (``insert`` of a new user, one durable transaction, as
/register makes; each round's users are deleted again afterwards, unmeasured,
so that each database stays at its size) and lookups (``await accounts.user(name)``, as a login makes)
are measured in rounds that alternate between the two databases, so that a
noisy neighbour on this shared machine hits both sizes alike. The JSON
store's figures are measured the same way in the same run, beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import asyncpg

from bench.harness import cpu_steal_ms, lookup_latencies, pct, seed, user, write_latencies
from core import jsoncodec
from core.pg import PgStore
from core.pg.tables import USERS
from core.pg.testing import create_database, drop_database, find_server
from core.store import Store, where

SMALL, BIG = 1_000, 100_000
REPEATS = 3  # each figure is the median of the repeats' own percentiles
ROUNDS = 10  # per repeat and measure: ROUNDS x PER_ROUND samples for each size
PER_ROUND = 100
WARMUP = 50
API_BATCH = 5_000
COPY_BATCH = 10_000
POOL_SIZE = 10  # DATABASE_POOL_SIZE's default
WRITE_P50_TARGET_MS = 3.0
RATIO_TARGET = 1.5


async def seed_through_store(store: Store, count: int) -> None:
    """``count`` users through the store interface, in transactions of `API_BATCH` puts."""
    for start in range(0, count, API_BATCH):
        async with store.transaction() as tx:
            users = tx.collection("auth.users")
            for i in range(start, min(count, start + API_BATCH)):
                await users.put(f"user{i:06d}", user(i))


async def seed_by_copy(url: str, start: int, stop: int) -> None:
    """Users ``start``..``stop`` by COPY into ``users``: the rows the store itself would write."""
    columns = [name for name, _ in USERS.columns] + ["keyed", "extra"]
    conn = await asyncpg.connect(url)
    try:
        await conn.set_type_codec(  # COPY speaks binary: jsonb is a version byte, then the text
            "jsonb",
            encoder=lambda v: b"\x01" + jsoncodec.dumps(v),
            decoder=lambda b: jsoncodec.loads(b[1:]),
            schema="pg_catalog",
            format="binary",
        )
        for first in range(start, stop, COPY_BATCH):
            rows = [tuple(USERS.row_values(f"user{i:06d}", user(i))) for i in range(first, min(stop, first + COPY_BATCH))]
            await conn.copy_records_to_table("users", records=rows, columns=columns)
    finally:
        await conn.close()


async def sql(url: str, statement: str) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(statement)
    finally:
        await conn.close()


async def remove_written(store: Store, first: int, count: int) -> None:
    """Delete the users a round wrote (unmeasured), so each size stays at its size; all must be there."""
    users = store.collection("auth.users")
    gone = await users.delete_where(where("username") >= f"user{first:06d}", where("username") < f"user{first + count:06d}")
    assert gone == count, f"{gone} of {count} acknowledged writes found"


async def alternating(small: Store, big: Store, repeat: int) -> dict[str, list[float]]:
    """`ROUNDS` rounds of `PER_ROUND` writes, then of lookups, on each store, the order flipped every round."""
    out: dict[str, list[float]] = {"write_small": [], "write_big": [], "lookup_small": [], "lookup_big": []}
    sizes = {"small": (small, SMALL), "big": (big, BIG)}
    for measure in ("write", "lookup"):
        for number in range(ROUNDS):
            for which in ("small", "big") if number % 2 == 0 else ("big", "small"):
                store, seeded = sizes[which]
                if measure == "write":  # new users, never written before, removed again after the round
                    first = seeded + (repeat * ROUNDS + number) * PER_ROUND
                    samples = await write_latencies(store, first, PER_ROUND)
                    await remove_written(store, first, PER_ROUND)
                else:
                    samples = await lookup_latencies(store, seeded, PER_ROUND, seed=repeat * ROUNDS + number)
                out[f"{measure}_{which}"].extend(samples)
    return out


async def measure_pair(small: Store, big: Store) -> list[dict[str, list[float]]]:
    """`REPEATS` times writes and lookups on both stores, after a warm-up of each; the sizes are checked after."""
    for store, seeded in ((small, SMALL), (big, BIG)):
        await write_latencies(store, 900_000, WARMUP)
        await remove_written(store, 900_000, WARMUP)
        await lookup_latencies(store, seeded, WARMUP)
    figures = [await alternating(small, big, repeat) for repeat in range(REPEATS)]
    for store, seeded in ((small, SMALL), (big, BIG)):
        assert await store.collection("auth.users").count() == seeded
    return figures


async def floor(url: str, count: int = 500) -> dict[str, float]:
    """What a write is made of, on a plain connection: one round trip, and one bare autocommit INSERT (p50 ms)."""
    conn = await asyncpg.connect(url)
    out: dict[str, list[float]] = {"round_trip": [], "bare_insert": []}
    try:
        for i in range(count):
            started = time.perf_counter()
            await conn.fetchval("SELECT 1")
            out["round_trip"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await conn.execute("INSERT INTO users (username, password) VALUES ($1, $2)", f"floor{i:06d}", "x")
            out["bare_insert"].append((time.perf_counter() - started) * 1000)
    finally:
        await conn.close()
    return {name: pct(values, 0.5) for name, values in out.items()}


Figures = list[dict[str, list[float]]]  # per repeat: samples (ms) per measure and size


async def postgres_figures(admin_url: str) -> tuple[Figures, dict[str, object]]:
    facts: dict[str, object] = {}
    async with contextlib.AsyncExitStack() as stack:
        small_url = await create_database(admin_url)
        stack.push_async_callback(drop_database, admin_url, small_url)
        big_url = await create_database(admin_url)
        stack.push_async_callback(drop_database, admin_url, big_url)
        small = await PgStore.connect(small_url, pool_size=POOL_SIZE)
        stack.push_async_callback(small.close)
        big = await PgStore.connect(big_url, pool_size=POOL_SIZE)
        stack.push_async_callback(big.close)

        started = time.perf_counter()
        await seed_through_store(small, SMALL)
        await seed_through_store(big, SMALL)
        facts["seed_api_s"] = (time.perf_counter() - started) / 2
        started = time.perf_counter()
        await seed_by_copy(big_url, SMALL, BIG)
        facts["seed_copy_s"] = time.perf_counter() - started
        for url in (small_url, big_url):
            await sql(url, "VACUUM ANALYZE users")
        facts["users_big"] = await sql(big_url, "SELECT count(*) FROM users")
        facts["users_size_big"] = await sql(big_url, "SELECT pg_size_pretty(pg_total_relation_size('users'))")
        facts["server"] = await sql(admin_url, "SHOW server_version")
        facts["durability"] = await sql(
            admin_url,
            "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings"
            " WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method', 'shared_buffers')",
        )
        steal = cpu_steal_ms()
        figures = await measure_pair(small, big)
        facts["steal_ms"] = cpu_steal_ms() - steal
        facts.update(await floor(big_url))
    return figures, facts


async def json_figures(tmp: Path) -> Figures:
    small = await seed(tmp / "1k", SMALL)
    big = await seed(tmp / "100k", BIG)
    try:
        return await measure_pair(small, big)
    finally:
        await small.close()
        await big.close()


def median_of(figures: Figures, key: str, q: float) -> tuple[float, list[float]]:
    """The median over the repeats of the ``q`` percentile of ``key``, and the repeats' values."""
    each = [pct(f[key], q) for f in figures]
    return sorted(each)[len(each) // 2], each


Row = tuple[str, str, str, "bool | None"]


def rows(name: str, figures: Figures, targets: bool) -> list[Row]:
    """(label, value, target, verdict) per figure; the value is the median of the repeats."""

    def ms(key: str, q: float) -> str:
        value, each = median_of(figures, key, q)
        return f"{value:.3f} ms ({', '.join(f'{v:.3f}' for v in each)})"

    w50s, _ = median_of(figures, "write_small", 0.5)
    w50b, _ = median_of(figures, "write_big", 0.5)
    ratios = sorted(pct(f["write_big"], 0.5) / pct(f["write_small"], 0.5) for f in figures)
    ratio = ratios[len(ratios) // 2]
    return [
        (f"{name} write p50 at 1k users", ms("write_small", 0.5), "", None),
        (f"{name} write p99 at 1k users", ms("write_small", 0.99), "", None),
        (f"{name} write p50 at 100k users", ms("write_big", 0.5), f"<= {WRITE_P50_TARGET_MS:g} ms" if targets else "",
         w50b <= WRITE_P50_TARGET_MS if targets else None),
        (f"{name} write p99 at 100k users", ms("write_big", 0.99), "", None),
        (f"{name} write p50 ratio 100k / 1k", f"{ratio:.2f} ({', '.join(f'{r:.2f}' for r in ratios)})",
         f"<= {RATIO_TARGET:g}" if targets else "", ratio <= RATIO_TARGET if targets else None),
        (f"{name} login user lookup p50 at 1k users", ms("lookup_small", 0.5), "", None),
        (f"{name} login user lookup p99 at 1k users", ms("lookup_small", 0.99), "", None),
        (f"{name} login user lookup p50 at 100k users", ms("lookup_big", 0.5), "", None),
        (f"{name} login user lookup p99 at 100k users", ms("lookup_big", 0.99), "", None),
    ]


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("met" if ok else "MISSED")


def report(pg: list[Row], js: list[Row], facts: dict[str, object]) -> str:
    samples = ROUNDS * PER_ROUND
    lines = [
        "# Store scaling on PostgreSQL",
        "",
        f"Written by `python bench/db_scaling.py --store postgres` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, PostgreSQL {facts['server']} on 127.0.0.1 "
        f"({facts['durability']}); asyncpg {asyncpg.__version__}, pool size {POOL_SIZE}.",
        "",
        f"Through `PgStore` (the store interface the server uses), in two fresh databases dropped afterwards: "
        f"{SMALL} users seeded through the store per database (transactions of puts, {facts['seed_api_s']:.2f} s), "
        f"{BIG - SMALL} more copied into the big one's `users` table ({facts['seed_copy_s']:.2f} s; "
        f"{facts['users_big']} rows, {facts['users_size_big']} with indexes), then VACUUM ANALYZE. "
        f"A write is `insert` of a new user `{{username, password (bcrypt hash), roles [2001], created}}`, one "
        "durable transaction as /register makes; a lookup is `await accounts.user(name)` as a login makes, on "
        f"random seeded users. {REPEATS} repeats of {samples} of each per size, in {ROUNDS} rounds alternating "
        f"between the sizes (after {WARMUP} unmeasured of each); each value is the median of the repeats' "
        "percentiles (the repeats' own in brackets; the ratio is taken per repeat). The JSON store is measured "
        "the same way in the same run, after PostgreSQL. "
        f"CPU stolen by the host during the PostgreSQL measures: {facts['steal_ms']:.0f} ms; "
        f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}.",
        "",
        f"What a write is made of: four round trips (BEGIN; `ts_get_user`, which locks the key and reads it; "
        "the upsert behind `ts_write_locks`; COMMIT, which waits for the WAL flush). On a plain connection to the "
        f"same database one round trip (`SELECT 1`) takes {facts['round_trip']:.3f} ms at p50 and a bare "
        f"autocommit INSERT into `users` (one round trip plus the flush) {facts['bare_insert']:.3f} ms. Both "
        "lookups and writes reach a user through the `users` primary key (a B-tree: depth, not size, is what grows).",
        "",
        "| measure | value | target |",
        "|---|---|---|",
    ]
    for label, value, target, ok in pg + js:
        lines.append(f"| {label} | {value} | {target + ': ' + verdict(ok) if target else ''} |")
    return "\n".join(lines) + "\n"


def line(label: str, value: str, target: str = "", ok: bool | None = None) -> None:
    judged = f"target {target}  {'OK' if ok else 'MISSED'}" if target else ""
    print(f"{label:<46} {value:<36} {judged}".rstrip(), flush=True)


async def main(admin_url: str, results: Path | None) -> None:
    import tempfile

    pg, facts = await postgres_figures(admin_url)
    with tempfile.TemporaryDirectory(prefix="turnstile-bench-") as tmp:
        js = await json_figures(Path(tmp))
    pg_rows, js_rows = rows("PostgreSQL", pg, True), rows("JSON store", js, False)
    for row in pg_rows + js_rows:
        line(*row)
    line("PostgreSQL bare round trip p50 (SELECT 1)", f"{facts['round_trip']:.3f} ms")
    line("PostgreSQL bare autocommit INSERT p50", f"{facts['bare_insert']:.3f} ms")
    line("CPU stolen by the host (PostgreSQL measures)", f"{facts['steal_ms']:.0f} ms")
    line("machine load average (1 min) at the end", f"{os.getloadavg()[0]:.2f}")
    if results is not None:
        results.write_text(report(pg_rows, js_rows, facts))
        print(f"written to {results}")


def run(database_url: str, results: Path | None) -> None:
    """Entry point of ``--store postgres``; the admin URL from the flag, else the server the tests use."""
    admin_url = database_url
    if not admin_url:
        admin_url, why = find_server()
        if admin_url is None:
            raise SystemExit(f"no PostgreSQL for --store postgres: {why}. Pass --database-url.")
    asyncio.run(main(admin_url, results))

