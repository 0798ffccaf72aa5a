"""WORKERS=2: real ``server.py`` processes, a supervisor and two workers sharing one port."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.harness import PASSWORD, SERVER, ServerProcess


def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def healthz(server: ServerProcess, conn: http.client.HTTPConnection | None = None) -> dict[str, int]:
    """The worker that answered ``GET /healthz``: {"index", "pid"}."""
    status, _, body = server.request("GET", "/healthz", conn=conn)
    assert status == 200, body
    return json.loads(body)["worker"]


def worker_pids(server: ServerProcess, count: int = 2, attempts: int = 400) -> dict[int, int]:
    """index -> pid of every worker, seen over fresh connections (bounded)."""
    seen: dict[int, int] = {}
    for _ in range(attempts):
        worker = healthz(server)
        seen[worker["index"]] = worker["pid"]
        if len(seen) == count:
            return seen
    raise AssertionError(f"only workers {seen} answered in {attempts} requests")


def connection_per_worker(server: ServerProcess, count: int = 2, attempts: int = 400) -> dict[int, http.client.HTTPConnection]:
    """One open keep-alive connection to each worker: a request on it lands on that worker."""
    conns: dict[int, http.client.HTTPConnection] = {}
    for _ in range(attempts):
        conn = server.connect()
        index = healthz(server, conn)["index"]
        if index in conns:
            conn.close()
        else:
            conns[index] = conn
        if len(conns) == count:
            return conns
    raise AssertionError(f"only workers {sorted(conns)} accepted connections in {attempts} tries")


def test_with_two_workers_both_answer_and_each_is_a_child_of_the_supervisor(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    with ServerProcess(tmp_path, WORKERS="2", TMPDIR=str(temp)) as server:
        metrics = list(temp.glob("turnstile-metrics-*"))  # PROMETHEUS_MULTIPROC_DIR, made before the workers
        assert len(metrics) == 1 and metrics[0].is_dir()
        pids = worker_pids(server)
        assert sorted(pids) == [0, 1]
        assert len(set(pids.values())) == 2 and server.pid not in pids.values()
        assert set(pids.values()) == children(server.pid)
        # One writer per file: each worker has log files of its own.
        token, _ = server.login("alice")
        assert server.request("GET", "/employees", headers={"Authorization": f"Bearer {token}"})[0] == 200
        code, output = server.stop()
    assert code == 0, output
    assert not metrics[0].exists()  # removed at shutdown
    names = {p.name for p in (tmp_path / "logs").iterdir()}
    assert {"reqLog.0.txt", "reqLog.1.txt", "errLog.0.txt", "errLog.1.txt"} <= names
    assert "reqLog.txt" not in names
    lines = [line for i in (0, 1) for line in (tmp_path / "logs" / f"reqLog.{i}.txt").read_text().splitlines()]
    assert any("/register" in line for line in lines) and any("/employees" in line for line in lines)


def test_a_killed_worker_is_replaced_and_the_service_keeps_answering(tmp_path):
    with ServerProcess(tmp_path, WORKERS="2") as server:
        pids = worker_pids(server)
        victim = pids[1]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        replaced = None
        while time.monotonic() < deadline:
            try:
                worker = healthz(server)
            except (OSError, http.client.HTTPException):
                worker = healthz(server)  # a client may retry once
            if worker["index"] == 1 and worker["pid"] != victim:
                replaced = worker["pid"]
                break
        assert replaced, "worker 1 was not replaced within 10s"
        assert not alive(victim)
        assert children(server.pid) == {pids[0], replaced}
        code, output = server.stop()
    assert code == 0, output
    errors = (tmp_path / "logs" / "errLog.txt").read_text()
    assert f"worker 1 (pid {victim}) killed by signal SIGKILL" in errors
    assert f"worker 1 (pid {victim}) killed by signal SIGKILL" in output  # and on the supervisor's stderr


def test_failed_logins_on_different_workers_lock_the_name_on_every_worker(tmp_path):
    with ServerProcess(tmp_path, WORKERS="2", LOGIN_MAX_FAILURES="3") as server:
        assert server.request("POST", "/register", {"user": "bob", "pwd": PASSWORD})[0] == 201
        conns = connection_per_worker(server)
        for index in (0, 1, 0):  # the failures are split between the workers
            status, _, body = server.request("POST", "/auth", {"user": "bob", "pwd": "wrong password!"}, conn=conns[index])
            assert status in (401, 429), body
        for index in (0, 1):  # the lock holds on both, even for the right password
            status, headers, body = server.request("POST", "/auth", {"user": "bob", "pwd": PASSWORD}, conn=conns[index])
            assert status == 429, (index, body)
            assert int(headers["Retry-After"]) > 0
        for conn in conns.values():
            conn.close()


def send_half_upload(conn: http.client.HTTPConnection, token: str, body: bytes) -> None:
    """A POST /employees on ``conn`` whose headers and first half of the body are sent."""
    head = (
        f"POST /employees HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    assert conn.sock is not None
    conn.sock.sendall(head.encode() + body[: len(body) // 2])


def test_sigterm_drains_requests_in_flight_on_every_worker_and_leaves_no_process(tmp_path):
    with ServerProcess(tmp_path, WORKERS="2", SHUTDOWN_TIMEOUT="10s") as server:
        token, _ = server.login("writer")
        conns = connection_per_worker(server)
        workers = children(server.pid)
        assert len(workers) == 2
        bodies = {i: json.dumps({"firstname": f"first{i}", "lastname": "last"}).encode() for i in conns}
        for index, conn in conns.items():
            send_half_upload(conn, token, bodies[index])
        time.sleep(0.3)  # both workers are reading a body
        server.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        time.sleep(0.5)  # both are draining now
        for index, conn in conns.items():
            body = bodies[index]
            conn.sock.sendall(body[len(body) // 2 :])  # type: ignore[union-attr]
            response = http.client.HTTPResponse(conn.sock)  # type: ignore[arg-type]
            response.begin()
            assert response.status == 201, (index, response.read())
            conn.close()
        output, _ = server.proc.communicate(timeout=30)  # type: ignore[union-attr]
        assert server.proc.returncode == 0, output  # type: ignore[union-attr]
    assert not any(alive(pid) for pid in workers)
    assert "Stopped" in output


def test_a_worker_that_cannot_start_stops_the_server_with_one_line_and_exit_1(tmp_path):
    env = ServerProcess(tmp_path, WORKERS="2", PLUGINS="no_such_plugin").env
    tmp_path.mkdir(exist_ok=True)
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(SERVER)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 30  # it gave up rather than looping
    lines = [line for line in result.stderr.splitlines() if line.startswith("turnstile:")]
    assert len(lines) == 1 and "no_such_plugin" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_stops_the_server_with_one_line_and_exit_1(tmp_path):
    env = ServerProcess(tmp_path, WORKERS="2", DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing").env
    result = subprocess.run([sys.executable, str(SERVER)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("turnstile:")]
    assert len(lines) == 1 and "PostgreSQL" in lines[0], result.stderr


def test_with_one_worker_the_process_started_is_the_one_serving(tmp_path):
    with ServerProcess(tmp_path, WORKERS="1") as server:
        for _ in range(5):
            assert healthz(server) == {"index": 0, "pid": server.pid}
        assert children(server.pid) == set()
        code, output = server.stop()
    assert code == 0, output
    assert (tmp_path / "logs" / "reqLog.txt").exists() and not (tmp_path / "logs" / "reqLog.0.txt").exists()


def test_workers_do_not_outlive_a_killed_supervisor(tmp_path):
    """kill -9 of the supervisor: its workers get SIGTERM from the kernel (PR_SET_PDEATHSIG), drain and exit."""
    with ServerProcess(tmp_path, WORKERS="2") as server:
        workers = set(worker_pids(server).values())
        server.proc.kill()  # type: ignore[union-attr]
        server.proc.communicate(timeout=10)  # type: ignore[union-attr]
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers)


def test_a_second_signal_hurries_every_worker(tmp_path):
    """An upload that never finishes would hold the drain for SHUTDOWN_TIMEOUT; a second SIGINT ends it at once."""
    with ServerProcess(tmp_path, WORKERS="2", SHUTDOWN_TIMEOUT="60s") as server:
        token, _ = server.login("writer")
        conns = connection_per_worker(server)
        for index, conn in conns.items():
            send_half_upload(conn, token, json.dumps({"firstname": f"f{index}", "lastname": "l"}).encode())
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGINT)  # type: ignore[union-attr]
        time.sleep(0.5)
        assert server.proc.poll() is None  # draining: waiting for the uploads  # type: ignore[union-attr]
        started = time.monotonic()
        code, output = server.stop(signal.SIGINT, timeout=20)
        assert code == 0, output
        assert time.monotonic() - started < 10
        for conn in conns.values():
            conn.close()


def test_sigttin_adds_a_worker_and_sigttou_drains_one_but_never_the_last(tmp_path):
    from worker_kit import supervisor_log, wait_for

    with ServerProcess(tmp_path, WORKERS="2") as server:
        first = set(worker_pids(server).values())
        server.proc.send_signal(signal.SIGTTIN)  # type: ignore[union-attr]
        wait_for(lambda: len(children(server.pid)) == 3, 15, "a third worker")
        assert sorted(worker_pids(server, count=3)) == [0, 1, 2]
        for _ in range(2):
            server.proc.send_signal(signal.SIGTTOU)  # type: ignore[union-attr]
            time.sleep(0.3)
        wait_for(lambda: len(children(server.pid)) == 1, 15, "two workers to drain")
        server.proc.send_signal(signal.SIGTTOU)  # type: ignore[union-attr]
        wait_for(lambda: "at least one worker must run" in supervisor_log(server), 10, "the last worker to be kept")
        [last] = children(server.pid)
        assert last in first
        assert all(healthz(server)["pid"] == last for _ in range(5))
        code, output = server.stop()
    assert code == 0, output


def test_more_workers_than_cores_start_with_one_warning_naming_the_core_count(tmp_path):
    cores = len(os.sched_getaffinity(0))
    with ServerProcess(tmp_path, WORKERS=str(cores + 1)) as server:
        assert len(worker_pids(server, count=cores + 1)) == cores + 1  # a warning, not a refusal
        code, output = server.stop()
    assert code == 0, output
    warnings = [line for line in output.splitlines() if f"WORKERS={cores + 1} is more than the {cores} CPU core(s)" in line]
    assert len(warnings) == 1 and "WORKERS=auto" in warnings[0], output
    assert f"WORKERS={cores + 1} is more than" in (tmp_path / "logs" / "errLog.txt").read_text()


def test_as_many_workers_as_cores_start_without_that_warning(tmp_path):
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        pytest.skip("one core: WORKERS=1 runs no supervisor")
    with ServerProcess(tmp_path, WORKERS=str(cores)) as server:
        code, output = server.stop()
    assert code == 0, output
    assert "is more than the" not in output
