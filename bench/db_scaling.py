"""Store write cost vs size: seeds 1k then 100k users and prints one line per figure.

    python bench/db_scaling.py                     # the JSON store (the default)
    python bench/db_scaling.py --store postgres [--database-url postgresql://postgres@host/postgres]

JSON store figures (targets on a 2-core machine): write p50/p99 at 1k and 100k users (p50 at 100k <= 2 ms,
bcrypt excluded: the hash is precomputed), the p50 ratio 100k/1k (<= 1.5), the longest event-loop
stall during sustained writes at 100k with compactions running (<= 50 ms; three rounds, each
with the CPU time the host stole meanwhile, judged by their median), load time at 100k
(<= 2 s) and RSS at 100k, both measured in a fresh process. Last, the JSON codec that the
store uses compared with the standard library on the 100k snapshot.

With ``--store postgres`` (see `bench.db_scaling_pg`): the same write figures and the login's
user lookup on PostgreSQL through the store interface, in two fresh databases (dropped at the
end), with the JSON store's figures measured in the same run beside them; the table is also
written to bench/results-db-scaling-postgres.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import cpu_steal_ms, lookup_latencies, pct, seed, user, write_latencies  # noqa: E402
from core.jsondb import JsonStore  # noqa: E402

async def longest_stall(store: JsonStore, seconds: float = 3.0, tag: str = "") -> tuple[float, int]:
    """Max event-loop lag while 16 writers insert and a compaction runs in the background."""
    users = store.collection("auth.users")
    stop = time.monotonic() + seconds
    written = 0
    worst = 0.0

    async def writer(n: int) -> None:
        nonlocal written
        i = 0
        while time.monotonic() < stop:
            await users.insert(user(0), key=f"load{tag}{n}-{i}")
            i += 1
            written += 1

    async def monitor() -> None:
        nonlocal worst
        while time.monotonic() < stop:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, (time.perf_counter() - before - 0.001) * 1000)

    async def compactions() -> None:
        while time.monotonic() < stop:
            await store.compact()

    await asyncio.gather(monitor(), compactions(), *(writer(n) for n in range(16)))
    return worst, written


LOAD_SCRIPT = """
import asyncio, sys, time
sys.path.insert(0, {root!r})
from core.jsondb import JsonStore
started = time.perf_counter()
store = JsonStore({data!r}).open()
elapsed = time.perf_counter() - started
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS"))
print(elapsed, rss / 1024, asyncio.run(store.collection("auth.users").count()))
"""


def load_in_fresh_process(data_dir: Path) -> tuple[float, float, int]:
    out = subprocess.run([sys.executable, "-c", LOAD_SCRIPT.format(root=str(ROOT), data=str(data_dir))],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def codec_comparison(snapshot: Path) -> tuple[float, float | None]:
    lines = snapshot.read_bytes().splitlines()
    started = time.perf_counter()
    for line in lines:
        json.loads(line)
    std = time.perf_counter() - started
    try:
        import orjson
    except ImportError:
        return std, None
    started = time.perf_counter()
    for line in lines:
        orjson.loads(line)
    return std, time.perf_counter() - started


def line(label: str, value: str, target: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else ("  OK" if ok else "  MISSED")
    print(f"{label:<48} {value:>12}   {target}{verdict}", flush=True)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="turnstile-bench-") as tmp:
        small_dir, big_dir = Path(tmp) / "1k", Path(tmp) / "100k"
        small = await seed(small_dir, 1_000)
        small_lat = await write_latencies(small, 1_000)
        small_look = await lookup_latencies(small, 1_000)
        await small.close()
        big = await seed(big_dir, 100_000)
        big_lat = await write_latencies(big, 100_000)
        big_look = await lookup_latencies(big, 100_000)
        rounds = []
        for number in range(3):
            steal_before = cpu_steal_ms()
            stall, written = await longest_stall(big, tag=f"r{number}-")
            rounds.append((stall, written, cpu_steal_ms() - steal_before))
        await big.close()
        load, rss, count = load_in_fresh_process(big_dir)
        std, fast = codec_comparison(big_dir / "snapshot.jsonl")

        p50_small, p50_big = pct(small_lat, 0.5), pct(big_lat, 0.5)
        line("write p50 at 1k users", f"{p50_small:.3f} ms")
        line("write p99 at 1k users", f"{pct(small_lat, 0.99):.3f} ms")
        line("write p50 at 100k users", f"{p50_big:.3f} ms", "target <= 2 ms", p50_big <= 2)
        line("write p99 at 100k users", f"{pct(big_lat, 0.99):.3f} ms")
        line("p50 ratio 100k / 1k", f"{p50_big / p50_small:.2f}", "target <= 1.5", p50_big / p50_small <= 1.5)
        line("login user lookup p50 at 1k users", f"{pct(small_look, 0.5):.3f} ms")
        line("login user lookup p50 at 100k users", f"{pct(big_look, 0.5):.3f} ms")
        for number, (stall, written, steal) in enumerate(rounds, 1):
            line(f"longest loop stall, round {number}, 100k", f"{stall:.1f} ms",
                 f"({written} writes in 3 s; CPU stolen by the host meanwhile: {steal:.0f} ms)")
        typical = sorted(r[0] for r in rounds)[1]
        line("longest loop stall, median of the rounds", f"{typical:.1f} ms", "target <= 50 ms", typical <= 50)
        line(f"load time at 100k ({count} users, fresh process)", f"{load:.3f} s", "target <= 2 s", load <= 2)
        line("RSS at 100k (fresh process, after load)", f"{rss:.0f} MiB")
        line("machine load average (1 min) during the run", f"{os.getloadavg()[0]:.2f}")
        line("parse 100k snapshot lines: json / orjson", f"{std:.3f} s / " + (f"{fast:.3f} s" if fast is not None else "n/a"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Store write and lookup cost at 1k and 100k users.")
    parser.add_argument("--store", choices=("json", "postgres"), default="json")
    parser.add_argument("--database-url", default="",
                        help="PostgreSQL admin URL for --store postgres (default: TEST_DATABASE_URL or the local server)")
    parser.add_argument("--results", default=str(ROOT / "bench" / "results-db-scaling-postgres.md"),
                        help="where --store postgres writes its table ('' for nowhere)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    if args.store == "json":
        asyncio.run(main())
    else:
        from bench.db_scaling_pg import run

        run(args.database_url, Path(args.results) if args.results else None)
