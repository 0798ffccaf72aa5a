"""Several processes on one DATA_DIR see each other's writes without a restart and lose no update."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from store_kit import closing, closing_sync
from store_worker import increment

from core.jsondb import JsonStore
from core.jsondb.shared import ChangeCounter

WORKER = Path(__file__).resolve().parent / "store_worker.py"


def worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, text=True)


def test_two_processes_see_each_others_writes_without_restart(tmp_path):
    async def run() -> None:
        async with closing(JsonStore(tmp_path).open()) as store:
            docs = store.collection("t.docs")
            child = worker("watch", str(tmp_path))
            deadline = time.monotonic() + 15
            while await docs.get("child") is None:  # a plain read notices the other process's journal line
                assert time.monotonic() < deadline, "the child's write never became visible"
                await asyncio.sleep(0.02)
            await docs.put("parent", {"by": "parent"})
            out, _ = await asyncio.get_running_loop().run_in_executor(None, child.communicate)
            assert child.returncode == 0 and out.strip() == "seen"

    asyncio.run(run())


def test_concurrent_increments_from_three_processes_lose_no_update(tmp_path):
    """Read-modify-write under the cross-process lock, with compactions going on in between."""
    per_process = 150
    children = [worker("count", str(tmp_path), str(per_process)) for _ in range(2)]

    async def run() -> None:
        async with closing(JsonStore(tmp_path, compact_min_bytes=8_000, compact_ratio=0.3).open()) as store:
            await increment(store, per_process)
            for child in children:
                await asyncio.get_running_loop().run_in_executor(None, child.wait)
            assert [c.returncode for c in children] == [0, 0]
            # This (still open) instance catches up on its own; a fresh one agrees.
            async with closing(JsonStore(tmp_path).open()) as fresh:
                for view in (store, fresh):
                    assert await view.collection("t.counters").get("c") == {"value": 3 * per_process}
                    ids = [d["id"] for d in await view.collection("t.ids").all()]
                    assert sorted(ids) == list(range(1, 3 * per_process + 1)), "auto ids are unique across processes"
                    assert await view.id_counter("t.ids") == 3 * per_process + 1

    asyncio.run(run())


def test_compaction_by_another_process_is_noticed(tmp_path):
    async def run() -> None:
        async with closing(JsonStore(tmp_path).open()) as store:
            docs = store.collection("t.docs")
            for i in range(5):
                await docs.put(f"p{i}", {"i": i})
            child = worker("compact", str(tmp_path))
            await asyncio.get_running_loop().run_in_executor(None, child.wait)
            assert child.returncode == 0
            # Two compactions removed the journal this instance was following: it reloads.
            assert await docs.get("after") == {"round": 2}
            assert not await docs.exists("p0") and await docs.get("p4") == {"i": 4}
            assert await docs.count() == 4 + 40 + 1
            await docs.put("p5", {"i": 5})
            async with closing(JsonStore(tmp_path).open()) as fresh:
                assert await fresh.collection("t.docs").count() == 46

    asyncio.run(run())


def test_lock_left_by_a_killed_process_does_not_wedge_the_next_start(tmp_path):
    with closing_sync(JsonStore(tmp_path).open()):
        holder = worker("hold-lock", str(tmp_path))
        assert holder.stdout.readline().strip() == "locked"
        fd = os.open(tmp_path / ".lock", os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                raise AssertionError("the lock should be held by the child")
            except BlockingIOError:
                pass
        finally:
            os.close(fd)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)

        opened: list[JsonStore] = []
        thread = threading.Thread(target=lambda: opened.append(JsonStore(tmp_path).open()), daemon=True)
        thread.start()
        thread.join(timeout=5)
        assert opened, "JsonStore.open() hung on a lock left by a killed process"
        with closing_sync(opened[0]) as store, store.transaction_sync() as tx:
            tx.collection("t.docs").put("k", {"v": 1})
        with closing_sync(JsonStore(tmp_path).open()) as store, store.transaction_sync() as tx:
            assert tx.collection("t.docs").get("k") == {"v": 1}


def test_a_write_acknowledged_by_another_process_is_visible_to_the_next_read(tmp_path):
    """No polling: once the writer has acknowledged a key, the very next read here returns it."""

    async def run() -> None:
        async with closing(JsonStore(tmp_path).open()) as store:
            docs = store.collection("t.docs")
            child = worker("write", str(tmp_path))
            try:
                assert child.stdout is not None
                for _ in range(200):
                    key = await asyncio.get_running_loop().run_in_executor(None, child.stdout.readline)
                    assert await docs.get(key.strip()) is not None, f"acknowledged {key.strip()!r} not visible"
            finally:
                child.kill()
                child.wait()

    asyncio.run(run())


def test_reads_of_an_unchanged_store_make_no_system_calls(tmp_path, monkeypatch):
    """The shared change counter answers "anything new?" from memory; the files are looked at only after a change."""
    async def run() -> None:
        # Two instances: two processes' views.
        async with closing(JsonStore(tmp_path).open()) as reader, closing(JsonStore(tmp_path).open()) as writer:
            docs = reader.collection("t.docs")
            await writer.collection("t.docs").put("a", {"n": 1})
            looks = []
            monkeypatch.setattr(os, "stat", lambda *a, _stat=os.stat, **k: looks.append(a[0]) or _stat(*a, **k))
            assert await docs.get("a") == {"n": 1}
            after_catching_up = len(looks)
            assert after_catching_up > 0
            for _ in range(50):
                assert await docs.get("a") == {"n": 1} and await docs.count() == 1
                assert await docs.all() == [{"n": 1}] and await docs.find(n=1) == [{"n": 1}]
            assert len(looks) == after_catching_up, "a read of an unchanged store looked at the files"
            await writer.collection("t.docs").put("b", {"n": 2})
            assert await docs.get("b") == {"n": 2}
            assert len(looks) > after_catching_up
            monkeypatch.undo()

    asyncio.run(run())


def test_without_the_shared_counter_reads_still_see_other_writes(tmp_path, monkeypatch):
    async def run() -> None:
        async with closing(JsonStore(tmp_path).open()) as writer:
            monkeypatch.setattr(ChangeCounter, "_map", lambda self: None)  # e.g. a file system without shared mmap
            async with closing(JsonStore(tmp_path).open()) as reader:
                assert reader._counter.map is None
                await writer.collection("t.docs").put("a", {"n": 1})
                assert await reader.collection("t.docs").get("a") == {"n": 1}

    asyncio.run(run())


def test_a_process_that_cannot_map_the_counter_still_tells_the_others(tmp_path, monkeypatch):
    async def run() -> None:
        async with closing(JsonStore(tmp_path).open()) as reader:
            assert await reader.collection("t.docs").get("a") is None  # caught up, counter seen
            monkeypatch.setattr(ChangeCounter, "_map", lambda self: None)
            async with closing(JsonStore(tmp_path).open()) as writer:
                assert writer._counter.map is None
                await writer.collection("t.docs").put("a", {"n": 1})
                assert await reader.collection("t.docs").get("a") == {"n": 1}

    asyncio.run(run())


def test_reads_catch_up_while_this_process_waits_for_the_lock(tmp_path):
    """A transaction queued behind another process's lock must not freeze this process's view."""

    async def run() -> None:
        async with closing(JsonStore(tmp_path).open()) as writer, closing(JsonStore(tmp_path).open()) as reader:
            await writer.collection("t.docs").put("k", {"n": 1})  # acknowledged
            holder = os.open(tmp_path / ".lock", os.O_RDWR)
            fcntl.flock(holder, fcntl.LOCK_EX)  # another process holds the lock

            async def write_later() -> None:
                async with reader.transaction() as tx:
                    await tx.collection("t.docs").put("mine", {"n": 2})

            waiting = asyncio.ensure_future(write_later())
            try:
                await asyncio.sleep(0.2)
                assert not waiting.done()
                seen = await reader.collection("t.docs").get("k")
            finally:
                os.close(holder)
                await waiting
            assert seen == {"n": 1}
            assert await writer.collection("t.docs").get("mine") == {"n": 2}

    asyncio.run(run())
