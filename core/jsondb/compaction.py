"""Compaction: fold the journals into a new snapshot, from the files alone, alongside running writers.

1. Under ``.lock``: start the next journal generation, so writers leave the
   current journals alone from then on ("frozen").
2. Without the lock: merge the old snapshot with the frozen journals into
   ``snapshot.jsonl.tmp``.
3. Under ``.lock``: keep the old snapshot as ``snapshot.prev.jsonl``, rename
   the new one into place, and delete the journals older than the old
   snapshot (the previous snapshot plus the journals kept since rebuild the
   same data).

``.compact.lock`` makes compactions exclusive. The store runs one in a child
process (``python -m core.jsondb compact DATA_DIR``), so the merge never
competes with the event loop for the GIL.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from ..store import Doc, StoreError
from . import snapshot
from .journal import Journals, fsync_dir, parse_line
from .shared import COMPACT_LOCK, LOCK, ChangeCounter, FileLock

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def run_in_child(data_dir: Path) -> int:
    """Compact ``data_dir`` in a child process; the new snapshot's size (0 when another process was compacting)."""
    result = subprocess.run(
        [sys.executable, "-m", "core.jsondb", "compact", str(data_dir.resolve())],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise StoreError((result.stderr.strip().splitlines() or ["compaction failed"])[-1])
    return int(result.stdout.strip() or 0)


def compact(data_dir: Path) -> int:
    """Rotate the journal, merge, swap the snapshot; the new snapshot's size, or 0 if another compaction runs."""
    try:
        fd = FileLock(data_dir / COMPACT_LOCK).acquire(blocking=False)
    except BlockingIOError:
        return 0  # another process is compacting
    counter = ChangeCounter(data_dir)
    try:
        return _compact(data_dir, counter)
    finally:
        counter.close()
        os.close(fd)


def _compact(data_dir: Path, counter: ChangeCounter) -> int:
    lock, journals = FileLock(data_dir / LOCK), Journals(data_dir)
    current_snapshot = data_dir / snapshot.SNAPSHOT
    # 1. Freeze the current journal: writers move on to a new generation.
    with lock.held():
        base = snapshot.read_header(current_snapshot) if current_snapshot.exists() else None
        base_gen = base["generation"] if base else 1
        newest = max(journals.generations(), default=base_gen)
        frozen = [g for g in journals.generations() if base_gen <= g <= newest]
        new_gen = newest + 1
        journals.path(new_gen).touch(mode=0o600)
        fsync_dir(data_dir)
        counter.bump()
    # 2. Merge the old snapshot with the frozen journals into a new one (no lock held).
    changes: dict[tuple[str, str], Doc | None] = {}
    ids: dict[str, int] = {name: meta["next_id"] for name, meta in (base or {}).get("collections", {}).items()}
    for generation in frozen:
        path = journals.path(generation)
        data = path.read_bytes()
        data = data[: data.rfind(b"\n") + 1]
        for number, line in enumerate(data.splitlines(), 1):
            if line.strip():
                docs, line_ids = parse_line(path, line, 0, number)
                for name, keyed in docs.items():
                    ids.setdefault(name, 1)
                    for key, doc in keyed.items():
                        changes.pop((name, key), None)  # keep journal order for new keys
                        changes[(name, key)] = doc
                for name, next_id in line_ids.items():
                    ids[name] = max(ids.get(name, 1), next_id)
    tmp = data_dir / (snapshot.SNAPSHOT + ".tmp")
    snapshot.write_lines(tmp, snapshot.header(new_gen, ids), snapshot.merged_lines(current_snapshot if base else None, changes))
    # 3. Swap under the lock; keep the previous snapshot (and the journals since) for recovery.
    with lock.held():
        current = snapshot.read_header(current_snapshot) if current_snapshot.exists() else None
        if (current["generation"] if current else 1) != base_gen:
            os.unlink(tmp)
            return 0
        if base is not None:
            prev_tmp = data_dir / (snapshot.PREV_SNAPSHOT + ".tmp")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(prev_tmp)
            os.link(current_snapshot, prev_tmp)
            os.replace(prev_tmp, data_dir / snapshot.PREV_SNAPSHOT)
        os.replace(tmp, current_snapshot)
        fsync_dir(data_dir)
        for generation in journals.generations():
            if generation < base_gen:
                os.unlink(journals.path(generation))
        counter.bump()
    return current_snapshot.stat().st_size
