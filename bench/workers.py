"""One worker against several, side by side: ``python bench/run.py --workers 1,2``.

One real server per worker count runs at once on the JSON store (each on its
own fresh ``DATA_DIR``). The protected ``GET /employees`` load comes the way
clients bring it: one load thread opening ``GET_CONNECTIONS`` keep-alive
connections in one burst (``wrk -t1 -c32``). It alternates between the
servers in pairs (the first count first, then the other first), so drift on
this shared machine hits both alike. Reported: the median and the worst of
the per-pair ratios, and, during each run, how many of the connections each
worker held (from /proc). CPU per request counts the supervisor and all its
workers.

A second row opens a new connection for every request (``Connection:
close``), the case where the supervisor's hand-off costs most: its CPU per
connection handed is printed.

Logins run at the default bcrypt cost against one core's bcrypt rate,
measured just before each run.

Targets on a 2-core machine: GET with 2 workers, median of pairs at least
1.6 x one worker and worst pair at least 1.3 x; logins/s at least 1.7 x one
core's bcrypt rate.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

from bench.harness import PASSWORD, Load, ServerProcess, child_pids, connections_by_pid, cpu_seconds, one_core_bcrypt_rate

WORKER_TARGETS = {"get": 1.6, "get_worst": 1.3, "login": 1.7}
GET_CONNECTIONS = 32
MIN_PAIRS = 5


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and every process whose parent it is (the supervisor and its workers)."""
    total = cpu_seconds(pid) or 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += cpu_seconds(int(entry)) or 0.0
    return total


def compare(counts: list[int], repeats: int, seconds: float, scratch: Path) -> dict[str, Any]:
    common = {"ACCESS_TOKEN_SECRET": secrets.token_hex(32), "REFRESH_TOKEN_SECRET": secrets.token_hex(32), "BCRYPT_ROUNDS": "12"}
    res: dict[str, Any] = {"repeats": repeats, "seconds": seconds, "counts": counts}
    servers: dict[int, ServerProcess] = {}
    try:
        for n in counts:
            servers[n] = ServerProcess(scratch / f"workers-{n}", WORKERS=str(n), **common).__enter__()
        first = servers[counts[0]]
        bearer = {"Authorization": f"Bearer {first.login('bench')[0]}"}
        for n in counts[1:]:
            servers[n].request("POST", "/register", {"user": "bench", "pwd": PASSWORD})

        def get(n: int, headers: dict[str, str] | None = None) -> dict[str, Any]:
            server = servers[n]
            before, supervisor_before = tree_cpu(server.pid), cpu_seconds(server.pid) or 0.0
            load = Load(server.port, "GET", "/employees", {**bearer, **(headers or {})}, conns=GET_CONNECTIONS, seconds=seconds,
                        scratch=scratch).start()
            time.sleep(seconds / 2)
            workers = child_pids(server.pid) or [server.pid]
            held = connections_by_pid(server.port, workers)
            run = load.result()
            run["shares"] = sorted(held.values())
            if run["rps"] > 0:
                requests = run["rps"] * seconds
                run["cpu_us"] = (tree_cpu(server.pid) - before) / requests * 1e6
                if n > 1:
                    run["supervisor_us"] = ((cpu_seconds(server.pid) or 0.0) - supervisor_before) / requests * 1e6
            return run

        for n in counts:
            get(n)  # warm-up
        rows = []
        for i in range(max(MIN_PAIRS, 2 * repeats + 1)):
            order = counts if i % 2 == 0 else list(reversed(counts))
            got = {n: get(n) for n in order}
            rows.append(got)
        res["get"] = {
            str(n): {k: statistics.median(r[n][k] for r in rows) for k in ("rps", "p50_ms", "p99_ms", "cpu_us")} for n in counts
        }
        base = counts[0]
        res["get"]["ratios"] = {
            str(n): statistics.median(r[n]["rps"] / r[base]["rps"] for r in rows) for n in counts[1:]
        }
        res["get"]["worst"] = {str(n): min(r[n]["rps"] / r[base]["rps"] for r in rows) for n in counts[1:]}
        res["get"]["pairs"] = {str(n): [round(r[n]["rps"] / r[base]["rps"], 3) for r in rows] for n in counts[1:]}
        res["get"]["shares"] = {str(n): [r[n]["shares"] for r in rows] for n in counts}
        res["get"]["errors"] = {str(n): [r[n]["errors"] for r in rows if r[n]["errors"] or r[n]["non2xx"]] for n in counts}

        # A new connection per request: what the hand-off costs the supervisor per connection.
        res["close"] = {}
        for n in counts:
            runs = [get(n, {"Connection": "close"}) for _ in range(repeats)]
            res["close"][str(n)] = {"rps": statistics.median(r["rps"] for r in runs),
                                    "cpu_us": statistics.median(r["cpu_us"] for r in runs)}
            if n > 1:
                res["close"][str(n)]["supervisor_us"] = statistics.median(r["supervisor_us"] for r in runs)

        body = json.dumps({"user": "bench", "pwd": PASSWORD})
        res["login"] = {}
        for n in counts:
            runs = []
            for _ in range(repeats):
                core = one_core_bcrypt_rate(12)
                run = Load(servers[n].port, "POST", "/auth", {"Content-Type": "application/json"}, body, conns=2 * (os.cpu_count() or 2),
                           seconds=max(2 * seconds, 8), scratch=scratch).run()
                runs.append({"rps": run["rps"], "core": core, "ratio": run["rps"] / core})
            res["login"][str(n)] = {"rps": statistics.median(r["rps"] for r in runs), "one_core": statistics.median(r["core"] for r in runs),
                                    "ratio": statistics.median(r["ratio"] for r in runs), "ratios": [round(r["ratio"], 2) for r in runs]}
        res["exit_codes"] = {str(n): s.stop()[0] for n, s in servers.items()}
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)
    return res


def table(res: dict[str, Any]) -> str:
    lines = ["| workers | protected GET /employees, wrk -t1 -c32 | CPU per GET (all processes) | GET / 1 worker: median of pairs, worst pair | "
             "connections each worker held, per run | new connection per request | logins/s at cost 12 | logins / one core's bcrypt rate |",
             "|---|---|---|---|---|---|---|---|"]
    for n in res["counts"]:
        g, l, c = res["get"][str(n)], res["login"][str(n)], res["close"][str(n)]
        ratio = res["get"]["ratios"].get(str(n))
        if ratio:
            worst = res["get"]["worst"][str(n)]
            met = ratio >= WORKER_TARGETS["get"] and worst >= WORKER_TARGETS["get_worst"]
            get_verdict = (f"{ratio:.2f}, worst {worst:.2f} (pairs {res['get']['pairs'][str(n)]}); >= {WORKER_TARGETS['get']} and "
                           f">= {WORKER_TARGETS['get_worst']}: {'met' if met else 'MISSED'}")
        else:
            get_verdict = "1 (baseline)"
        shares = " ".join("/".join(str(x) for x in run) for run in res["get"]["shares"][str(n)])
        close = f"{c['rps']:.0f} req/s, CPU {c['cpu_us']:.0f} us" + (f" (supervisor {c['supervisor_us']:.0f} us)" if "supervisor_us" in c else "")
        login_verdict = f"{l['ratio']:.2f} (runs {l['ratios']}); >= {WORKER_TARGETS['login']}: {'met' if l['ratio'] >= WORKER_TARGETS['login'] else 'MISSED'}"
        lines.append(f"| {n} | {g['rps']:.0f} req/s, p50 {g['p50_ms']:.2f} ms, p99 {g['p99_ms']:.2f} ms | {g['cpu_us']:.0f} us | {get_verdict} | "
                     f"{shares} | {close} | {l['rps']:.2f} (one core {l['one_core']:.2f}/s) | {login_verdict} |")
    errors = {n: e for n, e in res["get"]["errors"].items() if e}
    if errors:
        lines.append(f"\nErrors or non-2xx answers during GET runs: {errors}")
    return "\n".join(lines)
