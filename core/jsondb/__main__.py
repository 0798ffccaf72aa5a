"""``python -m core.jsondb check|compact DATA_DIR``: verify the files, or compact them now.

The store itself runs its compactions through ``compact``, in a child process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..store import StoreError
from .compaction import compact
from .load import load
from .shared import LOCK, FileLock

USAGE = "usage: python -m core.jsondb check|compact DATA_DIR"


def main(argv: list[str]) -> int:
    """Run one command; the exit status (2 for bad usage, 1 for a store error)."""
    if len(argv) != 2 or argv[0] not in ("check", "compact"):
        print(USAGE, file=sys.stderr)
        return 2
    command, data_dir = argv[0], Path(argv[1])
    try:
        if not data_dir.is_dir():
            raise StoreError(f"{argv[1]}: no such directory")
        if command == "compact":
            # Background work: on a busy machine the server's event loop gets the CPU first.
            os.nice(10)
            print(compact(data_dir))
            return 0
        with FileLock(data_dir / LOCK).held():
            loaded = load(data_dir, repair=False)
    except StoreError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 1
    for name, table in sorted(loaded.tables.items()):
        print(f"{name}: {len(table.docs)} records, next id {table.next_id}")
    print(f"ok: snapshot generation {loaded.generation}, {loaded.offset} journal bytes after it")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
