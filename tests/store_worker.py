"""A separate process working on a shared DATA_DIR, driven by the store tests.

    python tests/store_worker.py write DATA_DIR      # insert forever, print each key once acknowledged
    python tests/store_worker.py count DATA_DIR N    # N read-modify-write increments of one counter
    python tests/store_worker.py watch DATA_DIR      # write "child", wait to see "parent"
    python tests/store_worker.py compact DATA_DIR    # write, compact twice, write again
    python tests/store_worker.py hold-lock DATA_DIR  # take the store's file lock and sleep
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.jsondb import JsonStore  # noqa: E402
from store_kit import closing  # noqa: E402


async def write(data_dir: str) -> None:
    """Never closes its store: the tests kill this process mid-write, which is what they test."""
    store = JsonStore(data_dir, compact_min_bytes=16_000, compact_ratio=0.3).open()
    docs = store.collection("t.docs")

    async def worker(n: int) -> None:
        i = 0
        while True:
            key = f"{os.getpid()}-{n}-{i}"
            await docs.insert({"n": i, "pad": "x" * 40}, key=key)
            print(key, flush=True)
            i += 1

    await asyncio.gather(*(worker(n) for n in range(4)))


async def increment(store: JsonStore, n: int) -> None:
    """``n`` read-modify-writes of one counter, each also taking an auto id."""
    for _ in range(n):
        async with store.transaction() as tx:
            counters = tx.collection("t.counters")
            value = (await counters.get("c") or {"value": 0})["value"]
            await counters.put("c", {"value": value + 1})
            await tx.collection("t.ids").insert({"pid": os.getpid()})


async def count(data_dir: str, n: int) -> None:
    async with closing(JsonStore(data_dir, compact_min_bytes=8_000, compact_ratio=0.3).open()) as store:
        await increment(store, n)


async def watch(data_dir: str) -> None:
    async with closing(JsonStore(data_dir).open()) as store:
        await store.collection("t.docs").put("child", {"by": "child"})
        deadline = time.monotonic() + 15
        while await store.collection("t.docs").get("parent") is None:
            if time.monotonic() > deadline:
                sys.exit(3)
            await asyncio.sleep(0.02)
        print("seen", flush=True)


async def compact(data_dir: str) -> None:
    async with closing(JsonStore(data_dir).open()) as store:
        docs = store.collection("t.docs")
        for round_ in range(2):
            for i in range(20):
                await docs.put(f"c{round_}-{i}", {"round": round_})
            await store.compact()
        await docs.delete("p0")
        await docs.put("after", {"round": 2})


def hold_lock(data_dir: str) -> None:
    fd = os.open(Path(data_dir) / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    time.sleep(60)


if __name__ == "__main__":
    mode, data_dir = sys.argv[1], sys.argv[2]
    if mode == "hold-lock":
        hold_lock(data_dir)
    elif mode == "count":
        asyncio.run(count(data_dir, int(sys.argv[3])))
    else:
        asyncio.run({"write": write, "watch": watch, "compact": compact}[mode](data_dir))
