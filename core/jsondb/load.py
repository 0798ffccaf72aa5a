"""Reading a data directory at start-up (or after another process compacted it): the snapshot, then the journals.

With ``repair`` (only at open, lock held) a torn journal tail is trimmed, an
empty journal is created, and the temporary files of a compaction that died
are removed. Anything else unreadable raises `StoreCorrupt` naming the file,
line and problem, and no file is changed to "repair" it.
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path

from ..store import StoreCorrupt
from . import legacy, snapshot
from .journal import Journals, fsync_dir, replay
from .shared import COMPACT_LOCK, FileLock
from .tables import Changes, Table, apply

log = logging.getLogger("turnstile.store")


class Loaded:
    """What reading the files produced."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}
        self.generation = 1
        self.offset = 0  # bytes of the newest journal read (complete lines only)
        self.snapshot_bytes = 0


def load(data_dir: Path, repair: bool) -> Loaded:
    """Read snapshot + journals (lock held)."""
    enabled = gc.isenabled()
    gc.disable()  # loading creates only acyclic dicts: collecting meanwhile costs ~30% of load time
    try:
        return _load(data_dir, repair)
    finally:
        if enabled:
            gc.enable()


def _load(data_dir: Path, repair: bool) -> Loaded:
    loaded = Loaded()
    journals = Journals(data_dir)
    current = data_dir / snapshot.SNAPSHOT
    generations = journals.generations()
    if current.exists():
        loaded.tables, loaded.generation, loaded.snapshot_bytes = snapshot.read(current)
    elif generations and generations[0] > 1:
        # Journal 1 gone means a snapshot existed. With journal 1 present the whole history is
        # there: the first compaction has frozen it but not yet written its snapshot.
        raise StoreCorrupt(
            f"{current}: missing, but {journals.path(generations[-1]).name} exists; "
            f"restore it (see README 'Data files': copy {snapshot.PREV_SNAPSHOT} to {snapshot.SNAPSHOT})"
        )
    elif repair:
        legacy.import_files(data_dir, loaded.tables)
    wanted = [g for g in generations if g >= loaded.generation]
    expected = list(range(loaded.generation, loaded.generation + len(wanted)))
    if wanted and wanted != expected:
        missing = sorted(set(range(loaded.generation, wanted[-1] + 1)) - set(wanted))
        raise StoreCorrupt(f"{journals.path(missing[0])}: missing; later journals exist, so changes would be lost")

    def apply_line(changes: Changes, ids: dict[str, int]) -> None:
        apply(loaded.tables, changes, ids, {})

    loaded.offset = 0
    for generation in wanted:
        path = journals.path(generation)
        data = path.read_bytes()
        consumed = replay(path, data, 0, apply_line)
        loaded.generation, loaded.offset = generation, consumed
        if consumed < len(data) and generation == wanted[-1] and repair:
            log.warning("store: %s ends with %d torn bytes (a write never acknowledged); trimming", path, len(data) - consumed)
            os.truncate(path, consumed)
    if repair:
        if not wanted:
            journals.path(loaded.generation).touch(mode=0o600)
            fsync_dir(data_dir)
        remove_leftovers(data_dir)
    return loaded


def remove_leftovers(data_dir: Path) -> None:
    """Delete temporary files of a compaction that died, unless one is running now."""
    try:
        fd = FileLock(data_dir / COMPACT_LOCK).acquire(blocking=False)
    except BlockingIOError:
        return
    try:
        for name in os.listdir(data_dir):
            if name.endswith(".tmp"):
                os.unlink(data_dir / name)
    finally:
        os.close(fd)
