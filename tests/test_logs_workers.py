"""WORKERS=2: each worker's request log, rotated by size, holds every request once, in whole lines, after SIGTERM."""

from __future__ import annotations

import re
from collections import Counter

from bench.harness import ServerProcess

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
