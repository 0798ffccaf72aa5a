"""Every acknowledged write survives kill -9 at any moment, and the files always load again."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from store_kit import closing_sync, stored

from core.jsondb import JsonStore

WORKER = Path(__file__).resolve().parent / "store_worker.py"


def test_acknowledged_writes_survive_kill_9_at_random_moments(tmp_path):
    data_dir = tmp_path / "data"
    rng = random.Random(1234)
    acknowledged: list[str] = []
    started = time.monotonic()
    rounds = 0
    while rounds < 20 and time.monotonic() - started < 10:
        proc = subprocess.Popen([sys.executable, str(WORKER), "write", str(data_dir)], stdout=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        acknowledged += out.split()
        rounds += 1
        # The files load after every kill, and hold every key the writer acknowledged.
        docs = stored(data_dir)
        missing = [key for key in acknowledged if key not in docs]
        assert not missing, f"round {rounds}: {len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
    assert rounds >= 10
    assert len(acknowledged) > 500, "the writer should have been acknowledged many times"
    # Compactions ran during the rounds (small threshold), so kills also hit them.
    assert (data_dir / "snapshot.jsonl").exists()


def test_torn_last_journal_line_is_dropped_and_writing_continues(tmp_path):
    with closing_sync(JsonStore(tmp_path).open()) as store:
        with store.transaction_sync() as tx:
            tx.collection("t.docs").put("a", {"v": 1})
        journal = next(tmp_path.glob("journal.*.jsonl"))
        good = journal.read_bytes()
        with open(journal, "ab") as handle:
            handle.write(b'{"at":1,"ops":[{"c":"t.docs","k":"b","v":{"v"')  # a write cut short by a crash

        with closing_sync(JsonStore(tmp_path).open()) as reopened:
            with reopened.transaction_sync() as tx:
                assert tx.collection("t.docs").get("a") == {"v": 1}
                assert not tx.collection("t.docs").exists("b")
            assert journal.read_bytes() == good, "the torn tail is trimmed so later lines start clean"
            with reopened.transaction_sync() as tx:
                tx.collection("t.docs").put("c", {"v": 3})
            assert sorted(d["v"] for d in stored(tmp_path).values()) == [1, 3]
