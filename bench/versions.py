"""This checkout against an earlier commit, side by side: ``python bench/run.py --against REV``.

A change that should cost nothing (a refactor) is judged here: the commit
``REV`` is exported (``git archive``) to a scratch folder, and two servers of
each version run at once on fresh data with bcrypt at cost 4, one on the JSON
store and one on a fresh PostgreSQL database (dropped afterwards). Each row is
measured in short runs that alternate between the versions (the earlier one
first, then this one first), so drift on this shared machine hits both alike;
the ratio (this / earlier) is the median of the per-pair ratios, and the worst
pair is shown beside it. Each run also reads the server's CPU time (/proc) per
request, which drifts less than requests per second when the host is busy.

Rows: protected ``GET /employees`` on each backend; ``GET /refresh`` with
rotation on each backend (eight connections, each following the rotating
cookie of its own user's session).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.harness import DEFAULT_PG, HERE, Load, ServerProcess, admin_sql, cpu_seconds, with_database

NOISE = 0.05  # within noise: the median ratio this close to 1 on this shared machine


def export(rev: str, into: Path) -> Path:
    """The tree of ``rev`` in ``into``; its server.py."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "server.py"


def compare(rev: str, server_url: str | None, repeats: int, seconds: float, scratch: Path) -> dict[str, Any]:
    """Each row on both versions, alternating; medians, ratios and the worst pair."""
    server_url = server_url or os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG
    earlier = export(rev, scratch / "earlier")
    names = {version: f"turnstile_bench_{version}_{secrets.token_hex(4)}" for version in ("earlier", "this")}
    for name in names.values():
        asyncio.run(admin_sql(server_url, f'CREATE DATABASE "{name}"'))
    common = {"ACCESS_TOKEN_SECRET": secrets.token_hex(32), "REFRESH_TOKEN_SECRET": secrets.token_hex(32), "BCRYPT_ROUNDS": "4"}
    res: dict[str, Any] = {"against": rev, "repeats": repeats, "seconds": seconds, "bcrypt_rounds": 4}
    servers: dict[tuple[str, str], ServerProcess] = {}
    try:
        for version in ("earlier", "this"):
            script = {"server": earlier} if version == "earlier" else {}
            servers[version, "json"] = ServerProcess(scratch / f"{version}-json", **script, **common).__enter__()
            servers[version, "postgres"] = ServerProcess(
                scratch / f"{version}-pg", **script, DATABASE_URL=with_database(server_url, names[version]), **common
            ).__enter__()
        bearer = {"Authorization": f"Bearer {servers['this', 'json'].login('bench')[0]}"}
        refreshers = [f"device-{j}" for j in range(8)]  # one user per connection, as in real traffic
        for key, server in servers.items():
            if key != ("this", "json"):
                server.login("bench")  # the same user everywhere; one secret signs for all
            for user in refreshers:
                server.login(user)

        def measured(server: ServerProcess, run_one) -> dict[str, Any]:  # type: ignore[no-untyped-def]
            """One load run, with the server's CPU time per request (steadier than req/s on a shared machine)."""
            before = cpu_seconds(server.pid) or 0.0
            got = run_one(server)
            spent = (cpu_seconds(server.pid) or 0.0) - before
            return {**got, "cpu_us": 1e6 * spent / max(1.0, got["rps"] * seconds)}

        def pairs(backend: str, run_one) -> dict[str, Any]:  # type: ignore[no-untyped-def]
            rows = []
            for i in range(2 * repeats + 1):
                order = ("earlier", "this") if i % 2 == 0 else ("this", "earlier")
                got = {version: measured(servers[version, backend], run_one) for version in order}
                rows.append({**got, "ratio": got["this"]["rps"] / got["earlier"]["rps"],
                             "cpu_ratio": got["this"]["cpu_us"] / got["earlier"]["cpu_us"]})
            ratios = [r["ratio"] for r in rows]
            out: dict[str, Any] = {"ratio": statistics.median(ratios), "worst": min(ratios), "ratios": [round(r, 3) for r in ratios],
                                   "cpu_ratio": statistics.median(r["cpu_ratio"] for r in rows)}
            for version in ("earlier", "this"):
                out[version] = {k: statistics.median(r[version][k] for r in rows) for k in ("rps", "p50_ms", "p99_ms", "cpu_us")}
            return out

        def get(server: ServerProcess) -> dict[str, Any]:
            return Load(server.port, "GET", "/employees", bearer, seconds=seconds, scratch=scratch).run()

        def refresh(server: ServerProcess) -> dict[str, Any]:
            cookies = [f"jwt={server.login_again(user)[1]}" for user in refreshers]
            return Load(server.port, "GET", "/refresh", conns=8, seconds=seconds, cookies=cookies).run()

        for server in servers.values():
            get(server)  # warm-up
        for backend in ("json", "postgres"):
            res[f"get_{backend}"] = pairs(backend, get)
            res[f"refresh_{backend}"] = pairs(backend, refresh)
        res["exit_codes"] = [server.stop()[0] for server in servers.values()]
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)
        for name in names.values():
            asyncio.run(admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return res


def table(res: dict[str, Any]) -> str:
    lines = [f"| measure | {res['against']} | this checkout | this / {res['against']}: req/s, median of pairs; worst pair "
             f"| server CPU per request, this / {res['against']} | within noise (±{NOISE:.0%}) |",
             "|---|---|---|---|---|---|"]
    for key, label in (("get_json", "Protected GET /employees, JSON store"), ("refresh_json", "GET /refresh (rotation), JSON store"),
                       ("get_postgres", "Protected GET /employees, PostgreSQL"), ("refresh_postgres", "GET /refresh (rotation), PostgreSQL")):
        row = res[key]
        cells = [f"{row[v]['rps']:.0f} req/s, p50 {row[v]['p50_ms']:.2f} ms, p99 {row[v]['p99_ms']:.2f} ms, {row[v]['cpu_us']:.0f} us CPU/req"
                 for v in ("earlier", "this")]
        verdict = "yes" if row["ratio"] >= 1 - NOISE or row["cpu_ratio"] <= 1 + NOISE else "SLOWER"
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {row['ratio']:.3f}; worst {row['worst']:.3f} (pairs {row['ratios']}) "
                     f"| {row['cpu_ratio']:.3f} | {verdict} |")
    return "\n".join(lines)
