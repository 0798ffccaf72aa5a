"""Forgot-password timing: the answer must take the same time whether or not the account exists.

``POST /password/forgot`` does the same work for every well-formed request (a
throttle count and one queued job); the lookup, the token and the mail happen
later, in the mail queue. This serves the app with a throwaway DATA_DIR (mails
to its outbox), asks for each kind of account in turn, alternating so all see
the same machine load, and prints the median and 90th percentile of each and
their ratio to the unknown user's. Mail limits are off for the run.

Two passes: *isolated*, where the queue has sent the previous request's mail
before the next request starts (the answer's own cost), and *back to back*,
where it has not (what a client sending requests in a row sees: a queued
mail is composed and written while the next answers are on their way), in a
shuffled order so that no kind always follows the same other kind.
Usage: ``.venv/bin/python bench/forgot_timing.py [N] [--postgres URL]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Post, admin_sql, served, with_database  # noqa: E402
from core.pytest_plugin import make_settings  # noqa: E402

KINDS = {
    "verified user": {"user": "ann"},
    "verified email": {"email": "ann@example.com"},
    "unverified user": {"user": "bob"},
    "unknown user": {"user": "ghost"},
    "unknown email": {"email": "ghost@example.com"},
}
NO_LIMITS = {f"TURNSTILE_RECOVERY_MAILS_PER_{k}": "0" for k in ("USER", "ADDRESS", "IP")}


async def main(n: int, admin_url: str) -> None:
    logging.getLogger("turnstile").setLevel(logging.ERROR)  # one outbox line per mail otherwise
    if not admin_url:
        await measure(n, "")
        return
    name = f"turnstile_bench_forgot_{os.getpid()}"
    await admin_sql(admin_url, f"CREATE DATABASE {name}")
    try:
        await measure(n, with_database(admin_url, name))
    finally:
        await admin_sql(admin_url, f"DROP DATABASE {name} WITH (FORCE)")


async def measure(n: int, database_url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp), cookie_secure=False, database_url=database_url, extra=NO_LIMITS)
        async with served(settings) as (app, post):
            passes = await run(app, post, n)
            sent = len(list((settings.log_dir / "outbox").glob("*.eml")))
    report(passes, n, sent, "PostgreSQL" if database_url else "JSON store")


async def run(app: Any, post: Post, n: int) -> dict[str, dict[str, list[float]]]:
    """Both passes: each kind of request ``n`` times, timed."""
    assert (await post("/register", {"user": "ann", "pwd": "the right password", "email": "ann@example.com"}))[0] == 201
    assert (await post("/register", {"user": "bob", "pwd": "the right password", "email": "bob@example.com"}))[0] == 201
    assert await app.services.accounts.mark_email_verified("ann", "ann@example.com")
    queue = app.services.store.collection("recovery.mail_queue")

    async def drained() -> None:
        while await queue.count():
            await asyncio.sleep(0.001)

    passes: dict[str, dict[str, list[float]]] = {}
    labels = list(KINDS)
    for mode in ("isolated", "back to back"):
        times: dict[str, list[float]] = {k: [] for k in KINDS}
        shuffled = random.Random(7)
        for i in range(n):
            order = labels[i % len(labels):] + labels[: i % len(labels)]
            if mode == "back to back":  # each kind after any other: no kind always follows the same one
                shuffled.shuffle(order)
            for label in order:
                if mode == "isolated":
                    await drained()
                code, took = await post("/password/forgot", KINDS[label])
                assert code == 202, code
                times[label].append(took)
        passes[mode] = times
        await drained()
    return passes


def report(passes: dict[str, dict[str, list[float]]], n: int, sent: int, backend: str) -> None:
    print(f"{backend}: {n} requests of each kind per pass, rotating order; {sent} reset mails written to the outbox")
    for mode, times in passes.items():
        print(f" {mode}:")
        base_ms = statistics.median(times["unknown user"]) * 1000
        for label, taken in times.items():
            ms = sorted(t * 1000 for t in taken)
            median = statistics.median(ms)
            print(f"  {label:16s} median {median:6.2f} ms  p90 {ms[int(len(ms) * 0.9)]:6.2f} ms  ratio to unknown user {median / base_ms:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=200)
    parser.add_argument("--postgres", default="", help="a PostgreSQL server's admin URL: the run gets a fresh database there, dropped after")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.postgres))
