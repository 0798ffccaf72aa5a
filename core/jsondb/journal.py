"""The journals: ``journal.<generation>.jsonl``, one line per committed transaction.

A line is ``{"at": time, "ops": [{"c": collection, "k": key, "v": document or
null}, ...], "ids": {collection: next id}}`` ("ids" only when a counter
moved). Lines are appended and fsynced before the transaction is
acknowledged. A compaction freezes the current journal and starts the next
generation. A torn last line (bytes past the last newline) is a write that
was never acknowledged: readers leave it, and the next append drops it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Callable

from ..store import NAME_PATTERN, StoreCorrupt
from ..jsoncodec import loads
from .tables import Changes

PATTERN = re.compile(r"^journal\.(\d{8,})\.jsonl$")
log = logging.getLogger("turnstile.store")


def fsync_dir(path: Path) -> None:
    """Make a file's creation, rename or removal in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journals:
    """The journal files of one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def path(self, generation: int) -> Path:
        return self.data_dir / f"journal.{generation:08d}.jsonl"

    def generations(self) -> list[int]:
        return sorted(int(m.group(1)) for m in map(PATTERN.match, os.listdir(self.data_dir)) if m)

    def append(self, generation: int, offset: int, data: bytes) -> int:
        """Append ``data`` after the first ``offset`` bytes and fsync (lock held); returns the new end offset."""
        path = self.path(generation)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size > offset:
                # Bytes past the last complete line: a write torn by a crash, never acknowledged.
                log.warning("store: dropping %d torn bytes at the end of %s", size - offset, path)
                os.ftruncate(fd, offset)
            elif size < offset:
                raise StoreCorrupt(f"{path}: shrank from {offset} to {size} bytes while in use")
            # os.write may write only part (a file size limit, a full disk): keep writing until
            # all of it is down, so a real failure raises instead of acknowledging a torn line.
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.data_dir)
        return offset + len(data)

    def truncate(self, generation: int, offset: int) -> bool:
        """Drop bytes past ``offset`` (a failed write); never grows the file. Whether anything was cut."""
        with contextlib.suppress(OSError):
            fd = os.open(self.path(generation), os.O_WRONLY | os.O_CLOEXEC)
            try:
                if os.fstat(fd).st_size > offset:
                    os.ftruncate(fd, offset)
                    return True
            finally:
                os.close(fd)
        return False


def parse_line(path: Path, line: bytes, start: int, number: int) -> tuple[Changes, dict[str, int]]:
    """One journal line's changes and id counters; `StoreCorrupt` names the file, line and problem."""
    where = f"{path} (line {number} after byte {start})" if start else f"{path} line {number}"
    try:
        record = loads(line)
    except ValueError as exc:
        raise StoreCorrupt(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("ops"), list):
        raise StoreCorrupt(f"{where}: expected an object with an 'ops' list")
    changes: Changes = {}
    for op in record["ops"]:
        if (
            not isinstance(op, dict)
            or not isinstance(op.get("c"), str)
            or not NAME_PATTERN.match(op["c"])
            or not isinstance(op.get("k"), str)
            or not (op.get("v") is None or isinstance(op.get("v"), dict))
        ):
            raise StoreCorrupt(f"{where}: bad operation {op!r}; expected {{'c': collection, 'k': key, 'v': object or null}}")
        changes.setdefault(op["c"], {})[op["k"]] = op["v"]
    ids = record.get("ids", {})  # written only when a transaction moved a counter
    if not isinstance(ids, dict) or not all(isinstance(n, int) and NAME_PATTERN.match(c) for c, n in ids.items()):
        raise StoreCorrupt(f"{where}: 'ids' must map collection names to integers")
    return changes, ids


def replay(path: Path, data: bytes, start: int, apply: Callable[[Changes, dict[str, int]], None]) -> int:
    """Hand each complete line of ``data`` (read from ``path`` at byte ``start``) to ``apply``.

    Returns the bytes consumed: a torn tail is left for the caller.
    """
    end = data.rfind(b"\n") + 1
    if end == 0:
        return 0
    for number, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        changes, ids = parse_line(path, line, start, number)
        apply(changes, ids)
    return end
