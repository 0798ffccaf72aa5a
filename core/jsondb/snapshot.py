"""Snapshots: ``snapshot.jsonl`` holds every record as of one journal generation.

Line 1 is the header ``{"format": 2, "generation": n, "written": time,
"collections": {name: {"next_id": n}}}``; then one ``{"c": collection, "k":
key, "v": document}`` line per record; last ``{"end": true, "records":
count}``, so a truncated file is told from a complete one. The journals from
``generation`` on hold every change made since. ``snapshot.prev.jsonl`` is
the snapshot before the last compaction (see `compaction`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..store import NAME_PATTERN, Doc, StoreCorrupt
from ..jsoncodec import dumps, loads
from .journal import fsync_dir
from .tables import Table

FORMAT = 2
SNAPSHOT = "snapshot.jsonl"
PREV_SNAPSHOT = "snapshot.prev.jsonl"


def header(generation: int, next_ids: dict[str, int]) -> dict[str, Any]:
    return {"format": FORMAT, "generation": generation, "written": round(time.time(), 3),
            "collections": {name: {"next_id": n} for name, n in sorted(next_ids.items())}}


def read(path: Path) -> tuple[dict[str, Table], int, int]:
    """The tables of a snapshot, its generation and its size in bytes; `StoreCorrupt` names what is wrong."""
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        raise StoreCorrupt(f"{path}: truncated (does not end with a complete line)")
    lines = data.splitlines()
    head = _line(path, lines, 0)
    if head.get("format") != FORMAT or not isinstance(head.get("generation"), int) or not isinstance(head.get("collections"), dict):
        raise StoreCorrupt(f"{path} line 1: expected a header with format {FORMAT}, 'generation' and 'collections'")
    tables: dict[str, Table] = {}
    for name, meta in head["collections"].items():
        if not NAME_PATTERN.match(name) or not isinstance(meta, dict) or not isinstance(meta.get("next_id"), int):
            raise StoreCorrupt(f"{path} line 1: bad collection entry {name!r}: {meta!r}")
        table = tables[name] = Table()
        table.next_id = meta["next_id"]
    end = _line(path, lines, len(lines) - 1) if len(lines) > 1 else {}
    if end.get("end") is not True or end.get("records") != len(lines) - 2:
        raise StoreCorrupt(f"{path}: truncated or edited (the last line must be {{\"end\": true, \"records\": {len(lines) - 2}}})")
    for number in range(1, len(lines) - 1):
        record = _line(path, lines, number)
        name, key, doc = record.get("c"), record.get("k"), record.get("v")
        if not isinstance(key, str) or not isinstance(doc, dict) or name not in tables:
            raise StoreCorrupt(f"{path} line {number + 1}: expected {{'c': a collection from the header, 'k': key, 'v': object}}")
        tables[name].docs[key] = doc
    return tables, head["generation"], len(data)


def _line(path: Path, lines: list[bytes], index: int) -> dict[str, Any]:
    try:
        value = loads(lines[index])
    except ValueError as exc:
        raise StoreCorrupt(f"{path} line {index + 1}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise StoreCorrupt(f"{path} line {index + 1}: expected a JSON object")
    return value


def read_header(path: Path) -> dict[str, Any]:
    """Only the header line (what a compaction needs to know where it starts)."""
    with open(path, "rb") as handle:
        first = handle.readline()
    try:
        head = loads(first)
    except ValueError as exc:
        raise StoreCorrupt(f"{path} line 1: not valid JSON ({exc})") from None
    if not isinstance(head, dict) or not isinstance(head.get("generation"), int):
        raise StoreCorrupt(f"{path} line 1: expected a header with a 'generation'")
    return head


def write(data_dir: Path, tables: dict[str, Table], generation: int) -> None:
    """Write ``tables`` as the snapshot of ``generation``: a temp file, fsynced, then renamed into place."""
    tmp = data_dir / (SNAPSHOT + ".tmp")
    head = header(generation, {name: t.next_id for name, t in tables.items()})
    records = ({"c": name, "k": key, "v": doc} for name, t in sorted(tables.items()) for key, doc in t.docs.items())
    write_lines(tmp, head, (dumps(rec) + b"\n" for rec in records))
    os.replace(tmp, data_dir / SNAPSHOT)
    fsync_dir(data_dir)


def write_lines(path: Path, head: dict[str, Any], lines: Iterable[bytes]) -> int:
    """Header, record lines, end line; fsynced. Returns the number of records."""
    count = 0
    with open(path, "wb") as handle:
        handle.write(dumps(head) + b"\n")
        for line in lines:
            handle.write(line)
            count += 1
        handle.write(dumps({"end": True, "records": count}) + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return count


def merged_lines(snapshot: Path | None, changes: dict[tuple[str, str], Doc | None]) -> Iterator[bytes]:
    """Old snapshot records (unchanged lines copied as they are), then records new in the journals.

    Consumes ``changes``: what is left afterwards was not in the old snapshot.
    """
    if snapshot is not None:
        with open(snapshot, "rb") as handle:
            handle.readline()
            for line in handle:
                record = loads(line)
                if "end" in record:
                    break
                ref = (record["c"], record["k"])
                if ref in changes:
                    doc = changes.pop(ref)
                    if doc is not None:
                        yield dumps({"c": ref[0], "k": ref[1], "v": doc}) + b"\n"
                else:
                    yield line
    for (name, key), doc in changes.items():
        if doc is not None:
            yield dumps({"c": name, "k": key, "v": doc}) + b"\n"
