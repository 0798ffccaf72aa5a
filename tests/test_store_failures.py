"""A write that fails is never acknowledged, leaves the files loadable, and never wedges the store."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from store_kit import closing, stored

from core.jsondb import JsonStore, StoreError

ROOT = Path(__file__).resolve().parent.parent


# Runs in a child so the file size limit (RLIMIT_FSIZE) only applies there.
SIZE_LIMITED_WRITER = r"""
import asyncio, resource, signal, sys
sys.path.insert(0, sys.argv[1])
from core.jsondb import JsonStore, StoreError

async def main(data_dir):
    store = JsonStore(data_dir).open()
    docs = store.collection("t.docs")
    await docs.put("before", {"v": 1})
    print("acknowledged before", flush=True)
    journal = next(store.data_dir.glob("journal.*.jsonl"))
    # Room for part of the next transaction only: the kernel accepts a short write, then EFBIG.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (journal.stat().st_size + 100, hard))
    try:
        await docs.put("big", {"pad": "x" * 400})
        print("acknowledged big", flush=True)
    except StoreError:
        print("refused big", flush=True)
    try:
        with store.transaction_sync() as tx:
            tx.collection("t.docs").put("big-sync", {"pad": "y" * 400})
        print("acknowledged big-sync", flush=True)
    except OSError:
        print("refused big-sync", flush=True)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    await docs.put("after", {"v": 2})
    print("acknowledged after", flush=True)
    await store.close()

asyncio.run(main(sys.argv[2]))
"""


def test_a_short_write_fails_the_transaction_instead_of_acknowledging_it(tmp_path):
    """os.write may write only part of a batch; the rest must be written or the write must fail."""
    result = subprocess.run(
        [sys.executable, "-c", SIZE_LIMITED_WRITER, str(ROOT), str(tmp_path)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.stdout.split("\n")[:-1] == [
        "acknowledged before", "refused big", "refused big-sync", "acknowledged after",
    ], result.stderr
    assert result.returncode == 0, result.stderr
    journal = next(tmp_path.glob("journal.*.jsonl")).read_bytes()
    assert b"\0" not in journal and journal.endswith(b"\n")
    assert sorted(stored(tmp_path)) == ["after", "before"]


@pytest.mark.gen_test(timeout=10)
async def test_a_failed_write_never_makes_the_journal_longer(tmp_path):
    """A journal that shrank under us is reported, not padded with NUL bytes back to our offset."""
    async with closing(JsonStore(tmp_path).open()) as store:
        docs = store.collection("t.docs")
        await docs.put("a", {"v": 1})
        journal = next(tmp_path.glob("journal.*.jsonl"))
        first_line = journal.stat().st_size
        await docs.put("b", {"v": 2})
        os.truncate(journal, first_line)  # something outside the store cut the file short
        with pytest.raises(StoreError, match="shrank"):
            await docs.put("c", {"v": 3})
        health = await store.check()
        assert health.writable is False and health.error == "journal write failed: StoreCorrupt"
        assert str(tmp_path) not in repr(health.public()), "the health check must not say where the data lives"
        assert journal.stat().st_size == first_line
        assert b"\0" not in journal.read_bytes()


@pytest.mark.gen_test(timeout=15)
async def test_a_transaction_committed_while_a_failed_write_is_cleaned_up_still_completes(tmp_path):
    """Entries queued during the trim after a failure are failed too; the lock is let go; writing resumes."""
    async with closing(JsonStore(tmp_path).open()) as store:
        docs = store.collection("t.docs")
        await docs.put("ok", {"v": 0})

        real_append, real_truncate = store._append, store._truncate_to
        failures = iter([OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))])
        trimming, may_finish = threading.Event(), threading.Event()

        def append_failing_once(data: bytes) -> int:
            exc = next(failures, None)
            if exc is not None:
                raise exc
            return real_append(data)

        def slow_truncate(offset: int) -> None:
            trimming.set()
            may_finish.wait(5)
            real_truncate(offset)

        store._append = append_failing_once  # type: ignore[method-assign]
        store._truncate_to = slow_truncate  # type: ignore[method-assign]

        first = asyncio.ensure_future(docs.put("first", {"v": 1}))
        while not trimming.is_set():
            await asyncio.sleep(0.005)
        second = asyncio.ensure_future(docs.put("second", {"v": 2}))
        while not any("second" in e.changes.get("t.docs", {}) for e in store._pending):
            await asyncio.sleep(0.005)  # committed: queued behind the failed batch
        may_finish.set()

        with pytest.raises(StoreError):
            await asyncio.wait_for(first, 3)
        try:
            await asyncio.wait_for(second, 3)
        except StoreError:
            pass  # failing it is fine; hanging is not
        await asyncio.wait_for(store.flush(), 3)

        # The cross-process lock is free: another process (a separate open file) can take it.
        fd = os.open(tmp_path / ".lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

        # A later write starts a fresh writer and is durable.
        await asyncio.wait_for(docs.put("later", {"v": 3}), 3)
        assert (await store.check()).writable is True
        await asyncio.wait_for(store.close(), 3)
        reopened = await asyncio.get_running_loop().run_in_executor(None, stored, tmp_path)
        assert "ok" in reopened and "later" in reopened and "first" not in reopened
