"""The JSON store and PostgreSQL side by side: ``python bench/run.py --store postgres``.

Two real servers run at once, one per backend, on fresh data with bcrypt at
cost 4 (so that hashing does not hide the store): one on the JSON store in a
temporary ``DATA_DIR``, one on a fresh PostgreSQL database that is dropped
afterwards. Each row is measured in short runs that alternate between the two
servers (JSON first, then PostgreSQL first), so drift on this shared machine
hits both alike; the ratio is the median of the per-pair ratios.

Rows: protected ``GET /employees``; ``GET /refresh`` with rotation (eight
connections, each following the rotating cookie of its own user's session);
``POST /register`` of new users. The load comes from wrk when it is installed
(one thread per connection where each follows its own cookie or numbers its
own bodies), else from bench/load.py. Targets: GET on PostgreSQL at least 0.8 x the JSON store, refresh at
least 0.6 x.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
from pathlib import Path
from typing import Any

from bench.harness import DEFAULT_PG, PASSWORD, Load, ServerProcess, admin_sql, with_database

STORE_TARGETS = {"get": 0.8, "refresh": 0.6}
def compare(server_url: str | None, repeats: int, seconds: float, scratch: Path) -> dict[str, Any]:
    """Run the three rows against both backends; medians and ratios."""
    server_url = server_url or os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG
    name = f"turnstile_bench_{secrets.token_hex(4)}"
    asyncio.run(admin_sql(server_url, f'CREATE DATABASE "{name}"'))
    common = {"ACCESS_TOKEN_SECRET": secrets.token_hex(32), "REFRESH_TOKEN_SECRET": secrets.token_hex(32), "BCRYPT_ROUNDS": "4"}
    res: dict[str, Any] = {"repeats": repeats, "seconds": seconds, "bcrypt_rounds": 4}
    try:
        with ServerProcess(scratch / "json", **common) as json_server, \
                ServerProcess(scratch / "pg", DATABASE_URL=with_database(server_url, name), **common) as pg_server:
            servers = {"json": json_server, "postgres": pg_server}
            bearer = {"Authorization": f"Bearer {json_server.login('bench')[0]}"}
            pg_server.login("bench")  # the same user on the other backend; one secret signs both
            refreshers = [f"device-{j}" for j in range(8)]  # one user per connection, as in real traffic
            for user in refreshers:
                json_server.login(user), pg_server.login(user)

            def pairs(run_one) -> dict[str, Any]:  # type: ignore[no-untyped-def]
                """Alternating pairs: (json, postgres), then (postgres, json), ..."""
                rows = []
                for i in range(2 * repeats + 1):
                    order = ("json", "postgres") if i % 2 == 0 else ("postgres", "json")
                    got = {kind: run_one(kind, servers[kind], i) for kind in order}
                    rows.append({**got, "ratio": got["postgres"]["rps"] / got["json"]["rps"]})
                out: dict[str, Any] = {"ratio": statistics.median(r["ratio"] for r in rows),
                                       "ratios": [round(r["ratio"], 3) for r in rows]}
                for kind in servers:
                    out[kind] = {k: statistics.median(r[kind][k] for r in rows) for k in ("rps", "p50_ms", "p99_ms")}
                return out

            def get(kind: str, server: ServerProcess, i: int) -> dict[str, Any]:
                return Load(server.port, "GET", "/employees", bearer, seconds=seconds, scratch=scratch).run()

            def refresh(kind: str, server: ServerProcess, i: int) -> dict[str, Any]:
                cookies = [f"jwt={server.login_again(user)[1]}" for user in refreshers]
                return Load(server.port, "GET", "/refresh", conns=8, seconds=seconds, cookies=cookies).run()

            def register(kind: str, server: ServerProcess, i: int) -> dict[str, Any]:
                body = '{"user": "r%d-{n}", "pwd": "%s"}' % (i, PASSWORD)
                return Load(server.port, "POST", "/register", {"Content-Type": "application/json"}, body_template=body,
                            conns=8, seconds=seconds, scratch=scratch).run()

            get("json", json_server, -1), get("postgres", pg_server, -1)  # warm-up
            res["get"] = pairs(get)
            res["refresh"] = pairs(refresh)
            res["register"] = pairs(register)
            res["exit_codes"] = [json_server.stop()[0], pg_server.stop()[0]]
    finally:
        asyncio.run(admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return res


def table(res: dict[str, Any]) -> str:
    lines = ["| measure | JSON store | PostgreSQL | PostgreSQL / JSON (median of pairs) | target |", "|---|---|---|---|---|"]
    for key, label in (("get", "Protected GET /employees"), ("refresh", "GET /refresh (rotation)"),
                       ("register", f"POST /register at cost {res['bcrypt_rounds']}")):
        row = res[key]
        cells = [f"{row[k]['rps']:.0f} req/s, p50 {row[k]['p50_ms']:.2f} ms, p99 {row[k]['p99_ms']:.2f} ms" for k in ("json", "postgres")]
        target = STORE_TARGETS.get(key)
        verdict = f">= {target}: {'met' if row['ratio'] >= target else 'MISSED'}" if target else ""
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {row['ratio']:.3f} (pairs {row['ratios']}) | {verdict} |")
    return "\n".join(lines)
