"""How three ways of sharing a port spread a burst of keep-alive connections over two processes.

``python bench/balance.py [--runs 6]`` opens 8, 32 and 64 connections in one
burst from one thread (as ``wrk -t1`` or a proxy's pool does), then asks on
each which process holds it, and prints, per run, the smaller process's
share. The mechanisms:

- ``shared``: one listening socket inherited by both processes (Turnstile
  before the hand-off; Tornado's ``fork_processes``);
- ``reuseport``: one ``SO_REUSEPORT`` socket per process (nginx's
  ``reuse_port``): the kernel picks by a hash of the connection's addresses;
- ``handoff``: Turnstile today, ``WORKERS=2``: the supervisor accepts and
  hands connections out in turn.

The first two run a minimal Tornado app that answers with its pid, so only
the mechanism differs.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench.harness import ServerProcess, free_port  # noqa: E402

COUNTS = (8, 32, 64)


def serve_pid(sockets: list[socket.socket]) -> None:
    """In a child: answer every request with this process's pid, forever."""
    import asyncio

    from tornado.httpserver import HTTPServer
    from tornado.web import Application, RequestHandler

    class Pid(RequestHandler):
        def get(self) -> None:
            self.finish({"worker": {"index": os.getpid()}})

    async def main() -> None:
        HTTPServer(Application([(r"/healthz", Pid)])).add_sockets(sockets)
        await asyncio.Event().wait()

    asyncio.run(main())


def start_plain(mechanism: str, port: int) -> list[int]:
    """Two children sharing ``port`` by ``mechanism``; their pids."""
    from tornado.netutil import bind_sockets

    shared = bind_sockets(port, "127.0.0.1") if mechanism == "shared" else None
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                serve_pid(shared or bind_sockets(port, "127.0.0.1", reuse_port=True))
            finally:
                os._exit(0)
        pids.append(pid)
    for sock in shared or []:
        sock.close()
    time.sleep(1.0)
    return pids


def smaller_shares(port: int, runs: int) -> dict[int, list[int]]:
    from worker_kit import burst

    out: dict[int, list[int]] = {}
    for count in COUNTS:
        out[count] = []
        for _ in range(runs):
            shares: collections.Counter[int] = burst(port, count)
            out[count].append(min(shares.values()) if len(shares) == 2 else 0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    results: dict[str, dict[int, list[int]]] = {}
    for mechanism in ("shared", "reuseport"):
        port = free_port()
        pids = start_plain(mechanism, port)
        try:
            results[mechanism] = smaller_shares(port, args.runs)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    with tempfile.TemporaryDirectory() as scratch, ServerProcess(Path(scratch), WORKERS="2") as server:
        time.sleep(1.0)
        results["handoff"] = smaller_shares(server.port, args.runs)
        server.stop()
    print(f"# Spreading a burst of connections over two processes\n\nWritten by `python bench/balance.py --runs {args.runs}` on "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; see bench/balance.py for the method.\n")
    print(f"The smaller of two processes' share of a burst, in each of {args.runs} runs (floor: a quarter; 1 for 8)\n")
    print("| mechanism | " + " | ".join(f"{c} connections" for c in COUNTS) + " |")
    print("|---|" + "---|" * len(COUNTS))
    for mechanism, by_count in results.items():
        cells = []
        for count in COUNTS:
            floor = 1 if count == 8 else count // 4
            held = sum(1 for share in by_count[count] if share >= floor)
            cells.append(f"{' '.join(map(str, by_count[count]))} ({held}/{args.runs} runs at the floor)")
        print(f"| {mechanism} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
