"""``python server.py store copy --from DATA_DIR_OR_URL --to DATA_DIR_OR_URL [--force]``.

Copies every collection from one store to another through the store
interface only, so it works in both directions between the JSON store and
PostgreSQL (and between two of the same kind). Users go first, then
sessions (expired ones are left behind: they can no longer be used), then
every other collection, each with its id counter, so automatic ids never
repeat on the target and nobody is logged out by the move.

A target that holds any data is refused unless ``--force``; with it, each
copied collection ends up exactly as in the source (target documents the
source lacks are deleted), and collections only the target has are left
alone. Stop the servers that use the source first, or writes made during
the copy may be missed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from .backends import describe, is_url, open_at
from .store import Store, StoreError

USERS = "auth.users"
SESSIONS = "auth.sessions"
BATCH = 500  # documents per target transaction


def _order(names: list[str]) -> list[str]:
    first = [n for n in (USERS, SESSIONS) if n in names]
    return first + sorted(n for n in names if n not in first)


def _live(doc: dict[str, Any], now: int) -> bool:
    expires = doc.get("expires")
    return not (isinstance(expires, (int, float)) and not isinstance(expires, bool) and expires < now)


async def copy_store(source: Store, target: Store, force: bool = False) -> dict[str, int]:
    """Copy every collection of ``source`` into ``target``; documents copied per collection."""
    existing = await target.collections()
    if existing and not force:
        raise StoreError(
            f"the target is not empty (it holds {', '.join(existing)}); use --force to overwrite those collections"
        )
    now = int(time.time())
    counts: dict[str, int] = {}
    for name in _order(await source.collections()):
        pairs = await source.collection(name).items()
        if name == SESSIONS:
            pairs = [(k, d) for k, d in pairs if _live(d, now)]
        if force and name in existing:
            keep = {k for k, _ in pairs}
            stale = [k for k, _ in await target.collection(name).items() if k not in keep]
            for start in range(0, len(stale), BATCH):
                async with target.transaction() as tx:
                    for key in stale[start : start + BATCH]:
                        await tx.collection(name).delete(key)
        for start in range(0, len(pairs), BATCH):
            async with target.transaction() as tx:
                coll = tx.collection(name)
                for key, doc in pairs[start : start + BATCH]:
                    try:
                        await coll.put(key, doc)
                    except (ValueError, TypeError) as exc:
                        raise StoreError(f"{name} {key!r} cannot be copied: {exc}") from None
        next_id = await source.id_counter(name)
        if next_id > 1:
            await target.advance_id_counter(name, next_id)
        counts[name] = len(pairs)
    return counts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="server.py store copy",
        description="Copy every collection (users and live sessions included) from one store to another.",
    )
    parser.add_argument("--from", dest="source", required=True, metavar="DATA_DIR_OR_URL")
    parser.add_argument("--to", dest="target", required=True, metavar="DATA_DIR_OR_URL")
    parser.add_argument("--force", action="store_true", help="copy into a target that already holds data")
    return parser


async def _run(source_at: str, target_at: str, force: bool) -> dict[str, int]:
    source = await open_at(source_at)
    try:
        target = await open_at(target_at)
        try:
            return await copy_store(source, target, force)
        finally:
            await target.close()
    finally:
        await source.close()


def main(argv: list[str]) -> int:
    """The command; ``argv`` may start with ``store copy``. Exit status 0, or 1 with one line on stderr."""
    if argv[:2] == ["store", "copy"]:
        argv = argv[2:]
    args = _parser().parse_args(argv)
    try:
        if args.source.rstrip("/") == args.target.rstrip("/"):
            raise StoreError("--from and --to name the same store")
        if not is_url(args.source) and not Path(args.source).is_dir():
            raise StoreError(f"--from {args.source}: no such directory")
        source_name, target_name = describe(args.source), describe(args.target)
        counts = asyncio.run(_run(args.source, args.target, args.force))
    except StoreError as exc:
        print(f"turnstile: {exc}", file=sys.stderr)
        return 1
    for name, n in counts.items():
        print(f"{name}: {n}")
    print(f"copied {sum(counts.values())} documents in {len(counts)} collections from {source_name} to {target_name}")
    return 0
