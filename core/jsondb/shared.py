"""What processes sharing one ``DATA_DIR`` coordinate through: two ``flock`` lock files and a mapped change counter.

* ``.lock`` is held for each read-modify-write and for the compaction's file
  swaps; ``.compact.lock`` keeps compactions exclusive. The kernel drops a
  ``flock`` when its process dies, so a ``kill -9`` never wedges the next start.
* ``.changes`` holds an 8-byte counter that every process maps into memory
  (like SQLite's ``-shm`` file). Whoever changes the journals or the snapshot
  bumps it, under ``.lock``, before acknowledging; a read that sees the value
  it last caught up to knows that nothing changed, without a system call. Its
  value means nothing across restarts.

The processes must share one machine: a network file system shares neither
the lock nor the mapping reliably.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
from pathlib import Path
from typing import Iterator

LOCK = ".lock"
COMPACT_LOCK = ".compact.lock"
CHANGES = ".changes"


class FileLock:
    """An exclusive ``flock`` on one file, taken on a fresh descriptor each time (so it excludes this process too)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def acquire(self, blocking: bool = True) -> int:
        """The locked descriptor; close it to let go. `BlockingIOError` if not ``blocking`` and taken."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def held(self, blocking: bool = True) -> Iterator[None]:
        fd = self.acquire(blocking)
        try:
            yield
        finally:
            os.close(fd)


class ChangeCounter:
    """The shared ``.changes`` counter of one directory, as this process sees it.

    ``seen`` is the value this process last caught up to. Where the file cannot
    be mapped, `now` is ``None`` (the reader must look at the files every time)
    and `bump` still tells the processes that did map it, through the file.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / CHANGES
        self.map: mmap.mmap | None = None
        self.seen: int | None = None

    def open(self) -> None:
        """Map the counter (created if missing; lock held)."""
        self.map = self._map()

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
            self.map = None

    def _map(self) -> mmap.mmap | None:
        """The mapping, or ``None`` where that fails: reads then always look at the files."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
            return mmap.mmap(fd, 8)
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)

    def now(self) -> int | None:
        """The current value (no system call), or ``None`` without a mapping."""
        return int.from_bytes(self.map[:8], "little") if self.map is not None else None

    def bump(self) -> None:
        """Tell every process sharing the directory that the files changed (lock held, so no bump is lost).

        Called after the change is on disk and before it is acknowledged, so a
        read that starts after the acknowledgement sees a new value. The caller
        is caught up with the files, so its own view counts as seen.
        """
        if self.map is None:
            self.map = self._map()
        if self.map is not None:
            value = int.from_bytes(self.map[:8], "little") + 1
            self.map[:8] = value.to_bytes(8, "little")
            self.seen = value
            return
        # No mapping here: bump through the file, whose page the other processes have mapped.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            value = int.from_bytes(os.pread(fd, 8, 0).ljust(8, b"\0"), "little") + 1
            os.pwrite(fd, value.to_bytes(8, "little"), 0)
        finally:
            os.close(fd)
