"""The project's first store format, imported once: one ``<collection>.json`` file per collection.

The first store (commit 4719c72) wrote ``{"format": 1, "next_id": n,
"records": {key: document}}`` to ``<collection>.json``; the journal format
replaced it in 2cc23ca. A data directory it left behind (no snapshot, no
journal yet) is imported into a first snapshot, and each file renamed to
``<collection>.json.migrated``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..store import NAME_PATTERN, StoreCorrupt
from . import snapshot
from .tables import Table

FORMAT = 1
log = logging.getLogger("turnstile.store")


def import_files(data_dir: Path, tables: dict[str, Table]) -> None:
    """Load every ``<collection>.json`` into ``tables``, write them as the snapshot, and set the files aside."""
    legacy = sorted(p for p in data_dir.glob("*.json") if NAME_PATTERN.match(p.stem))
    if not legacy:
        return
    for path in legacy:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreCorrupt(f"{path}: not valid JSON ({exc})") from None
        if (
            not isinstance(raw, dict)
            or raw.get("format") != FORMAT
            or not isinstance(raw.get("records"), dict)
            or not isinstance(raw.get("next_id"), int)
        ):
            raise StoreCorrupt(f"{path}: expected the first store's format: {{'format': 1, 'next_id': n, 'records': {{...}}}}")
        table = tables[path.stem] = Table()
        table.docs, table.next_id = raw["records"], raw["next_id"]
    snapshot.write(data_dir, tables, 1)
    for path in legacy:
        os.replace(path, path.with_name(path.name + ".migrated"))
    log.warning("store: imported %d legacy collection files into %s", len(legacy), snapshot.SNAPSHOT)
