"""WORKERS=2: each worker's request log, rotated by size, holds every request once, in whole lines, after SIGTERM."""

from __future__ import annotations

import json
import re
from collections import Counter

from bench.harness import ServerProcess
from worker_kit import install_probe, probe_env, rewrite_probe

MAX_BYTES, BACKUPS, REQUESTS = 3000, 40, 400
LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\tINFO\tturnstile\.access\tGET\t-\t(/probe/\d{5}|/healthz)\t(?:404|200)\t\d+\.\dms")


def test_two_workers_log_every_request_once_in_whole_lines_and_rotate_by_size(tmp_path):
    with ServerProcess(tmp_path, WORKERS="2", LOG_MAX_BYTES=str(MAX_BYTES), LOG_BACKUPS=str(BACKUPS)) as server:
        for i in range(REQUESTS):  # a fresh connection each: the kernel spreads them over both workers
            assert server.request("GET", f"/probe/{i:05d}?token=secret-{i}")[0] == 404
        code, output = server.stop()
    assert code == 0, output

    logs = tmp_path / "logs"
    seen: Counter[str] = Counter()
    for worker in (0, 1):
        files = sorted(logs.glob(f"reqLog.{worker}.txt*"))
        old = [f for f in files if f.name != f"reqLog.{worker}.txt"]
        assert 2 <= len(old) <= BACKUPS, [f.name for f in files]  # rotated, and no more old files than kept
        assert {f.name for f in old} == {f"reqLog.{worker}.txt.{n}" for n in range(1, len(old) + 1)}
        worker_paths = 0
        for file in files:
            text = file.read_text()
            assert text.endswith("\n"), file.name  # no truncated last line
            lines = text.splitlines()
            longest = max(len(line) + 1 for line in lines)
            assert file.stat().st_size <= MAX_BYTES + longest, file.name
            for line in lines:
                match = LINE.fullmatch(line)
                assert match, (file.name, line)  # nothing interleaved, and the query string (a token) never logged
                if match.group(1) != "/healthz":  # the start-up probes
                    seen[match.group(1)] += 1
                    worker_paths += 1
        assert worker_paths > 0, f"worker {worker} logged nothing"
    assert seen == Counter({f"/probe/{i:05d}": 1 for i in range(REQUESTS)})


def test_the_harness_waits_for_every_worker_before_the_test_starts(tmp_path):
    """The cause of this file's old flakiness: the server counted as started once one worker answered.

    Until the second is ready the first takes every connection, so on a busy machine one worker logged too
    few requests to rotate twice. Here the second worker is held back on purpose: the very first two
    requests after start-up must still reach both.
    """
    module = install_probe(tmp_path)
    rewrite_probe(module, "v1", extra=SLOW_SECOND_WORKER)
    with ServerProcess(tmp_path, WORKERS="2", **probe_env(tmp_path)) as server:
        workers = {json.loads(server.request("GET", "/healthz")[2])["worker"]["index"] for _ in range(2)}
    assert workers == {0, 1}


SLOW_SECOND_WORKER = """
async def setup(plugin):
    if plugin.settings.worker_index == 1:
        await asyncio.sleep(2)  # a worker slow to start, as on a loaded machine or a fresh clone compiling bytecode
"""
