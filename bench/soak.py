"""Soak: many mixed requests against the real server, then resident memory growth and open descriptors.

    python bench/soak.py [--requests 50000] [--workers 4]

The mix per round of 20 requests: 12 protected GET /employees, 2 GET
/employees/<id>, a POST /employees and the DELETE of that row (so the data
stays the same size), and a session's life: login, refresh, another refresh,
logout. Memory and descriptors are read from /proc after a warm-up and again
at the end; tests/test_soak.py runs a bounded version with the same bounds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import PASSWORD, ServerProcess

ROUND = 20
RSS_BOUND_KB = 16 * 1024  # growth allowed after warm-up
FD_BOUND = 4  # descriptors allowed above the warm-up count


def proc_stats(pid: int) -> tuple[int, int]:
    """(resident set size in KiB, open file descriptors) of process ``pid``."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss, len(list(Path(f"/proc/{pid}/fd").iterdir()))


def mixed_load(server: ServerProcess, total: int, workers: int = 4) -> dict[int, int]:
    """Send about ``total`` requests in rounds of the mix from ``workers`` threads; returns status counts."""
    counts: dict[int, int] = {}
    lock = threading.Lock()
    rounds = max(1, total // ROUND // workers)

    def worker(n: int) -> None:
        user = f"soak{n}"
        server.request("POST", "/register", {"user": user, "pwd": PASSWORD})
        conn = server.connect()
        seen: dict[int, int] = {}

        def call(method: str, path: str, body: object = None, headers: dict[str, str] | None = None) -> tuple[int, object, bytes]:
            status, head, data = server.request(method, path, body, headers, conn)
            seen[status] = seen.get(status, 0) + 1
            return status, head, data

        for _ in range(rounds):
            status, head, data = call("POST", "/auth", {"user": user, "pwd": PASSWORD})
            assert status == 200, data
            bearer = {"Authorization": "Bearer " + json.loads(data)["accessToken"]}
            cookie = {"Cookie": head["Set-Cookie"].split(";", 1)[0]}
            for _ in range(2):
                status, head, _ = call("GET", "/refresh", headers=cookie)
                if status == 200 and head.get("Set-Cookie"):  # with rotation, follow the new cookie
                    cookie = {"Cookie": head["Set-Cookie"].split(";", 1)[0]}
            for _ in range(12):
                call("GET", "/employees", headers=bearer)
            call("GET", "/employees/1", headers=bearer)
            call("GET", "/employees/2", headers=bearer)
            status, _, data = call("POST", "/employees", {"firstname": user, "lastname": "soak"}, bearer)
            new_id = max(e["id"] for e in json.loads(data) if e["firstname"] == user)  # ours, not another worker's
            call("DELETE", "/employees", {"id": new_id}, bearer)
            call("GET", "/logout", headers=cookie)
            call("GET", "/healthz")
        with lock:
            for status, count in seen.items():
                counts[status] = counts.get(status, 0) + count
        conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


def soak(total: int, workers: int = 4, warmup: int = 2000) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as root, ServerProcess(Path(root)) as server:
        mixed_load(server, warmup, workers)
        rss0, fds0 = proc_stats(server.pid)
        started = time.monotonic()
        counts = mixed_load(server, total, workers)
        elapsed = time.monotonic() - started
        rss1, fds1 = proc_stats(server.pid)
        code, _ = server.stop()
    return {
        "requests": sum(counts.values()), "statuses": counts, "seconds": round(elapsed, 1),
        "rss_kb_before": rss0, "rss_kb_after": rss1, "rss_growth_kb": rss1 - rss0,
        "fds_before": fds0, "fds_after": fds1, "exit_code": code,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    result = soak(args.requests, args.workers)
    print(json.dumps(result, indent=1))
    ok = result["rss_growth_kb"] <= RSS_BOUND_KB and result["fds_after"] <= result["fds_before"] + FD_BOUND
    print(f"bounds: RSS growth <= {RSS_BOUND_KB // 1024} MiB, fds <= warm-up + {FD_BOUND}: {'OK' if ok else 'EXCEEDED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
