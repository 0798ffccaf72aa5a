"""SIGHUP to the supervisor: new workers on the code on disk, old ones drained, and no request fails meanwhile."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time

from bench.harness import ServerProcess
from test_workers import alive, children, worker_pids
from worker_kit import install_probe, probe_env, rewrite_probe, supervisor_log, wait_for


class SteadyLoad:
    """Clients that send GET /probe/version back to back: keep-alive ones, and one that connects for every request.

    No retries: any refused or reset connection, any error reading, and any
    5xx is a failure.
    """

    def __init__(self, server: ServerProcess, keepalive: int = 4) -> None:
        self.server = server
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.failures: list[str] = []
        self.answers: list[tuple[float, str, int]] = []  # (time, version, pid)
        self.threads = [threading.Thread(target=self.client, args=(True,)) for _ in range(keepalive)]
        self.threads.append(threading.Thread(target=self.client, args=(False,)))

    def __enter__(self) -> "SteadyLoad":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def client(self, keepalive: bool) -> None:
        conn = self.server.connect() if keepalive else None
        while not self.stop.is_set():
            try:
                status, _, body = self.server.request("GET", "/probe/version", conn=conn)
            except (OSError, http.client.HTTPException) as exc:
                with self.lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                if conn is not None:
                    conn.close()
                continue
            with self.lock:
                if status >= 500 or status != 200:
                    self.failures.append(f"status {status}: {body[:200]!r}")
                else:
                    answer = json.loads(body)
                    self.answers.append((time.monotonic(), answer["version"], answer["pid"]))

    def served_since(self, moment: float) -> list[tuple[float, str, int]]:
        with self.lock:
            return [a for a in self.answers if a[0] >= moment]


def test_sighup_under_load_replaces_every_worker_with_the_code_on_disk_and_fails_no_request(tmp_path):
    module = install_probe(tmp_path)
    with ServerProcess(tmp_path, WORKERS="2", **probe_env(tmp_path)) as server:
        supervisor = server.pid
        old = set(worker_pids(server).values())
        with SteadyLoad(server) as load:
            wait_for(lambda: len(load.served_since(0)) > 200, 20, "the load to get going")
            rewrite_probe(module, "version-two")  # the deploy: new files, then HUP
            hupped = time.monotonic()
            server.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
            new = wait_for(lambda: (kids := children(server.pid)) and not kids & old and len(kids) == 2 and kids, 30,
                           "the old workers to drain and exit")
            settled = time.monotonic()
            wait_for(lambda: len(load.served_since(settled)) > 200, 20, "load after the restart")
        assert load.failures == [], load.failures[:10]
        during = load.served_since(hupped)
        assert len(during) > 400
        assert server.pid == supervisor and server.proc.poll() is None  # type: ignore[union-attr]
        after = load.served_since(settled)
        assert {version for _, version, _ in after} == {"version-two"}
        assert {pid for _, _, pid in after} == new  # both new workers serve
        assert not old & new
        assert "rolling restart done" in supervisor_log(server)
        code, output = server.stop()
    assert code == 0, output  # TERM after a rolling restart: a clean stop...
    assert not any(alive(pid) for pid in old | new)  # ...with no worker left behind
    assert children(supervisor) == set()


def test_a_plugin_that_fails_to_import_at_sighup_leaves_the_old_workers_serving(tmp_path):
    module = install_probe(tmp_path)
    with ServerProcess(tmp_path, WORKERS="2", **probe_env(tmp_path)) as server:
        old = worker_pids(server)
        rewrite_probe(module, "broken", extra='raise RuntimeError("the probe plugin is broken on purpose")')
        server.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_for(lambda: "rolling restart failed" in supervisor_log(server), 30, "the failure to be logged")
        wait_for(lambda: children(server.pid) == set(old.values()), 15, "the failed new worker to be gone")
        failures = [line for line in supervisor_log(server).splitlines() if "rolling restart failed" in line]
        assert len(failures) == 1, failures
        assert "probe" in failures[0] and "broken on purpose" in failures[0], failures[0]
        assert "the old workers keep serving" in failures[0]
        for _ in range(20):
            status, _, body = server.request("GET", "/probe/version")
            assert status == 200 and json.loads(body)["version"] == "v1"
        assert worker_pids(server) == old
        # Fixed on disk, the next HUP goes through.
        rewrite_probe(module, "fixed")
        server.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_for(lambda: json.loads(server.request("GET", "/probe/version")[2])["version"] == "fixed", 30, "the fixed code")
        code, output = server.stop()
    assert code == 0, output


def test_sighup_reads_env_again_and_a_bad_setting_keeps_the_old_workers(tmp_path):
    install_probe(tmp_path)
    env_file = tmp_path / ".env"
    env_file.write_text("TURNSTILE_PROBE_GREETING=first\n")

    def greeting() -> str:
        return json.loads(server.request("GET", "/probe/version")[2])["greeting"]

    with ServerProcess(tmp_path, WORKERS="2", **probe_env(tmp_path)) as server:
        assert greeting() == "first"
        old = worker_pids(server)
        env_file.write_text("TURNSTILE_PROBE_GREETING=second\nLOGIN_LOCKOUT=forever\n")
        server.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_for(lambda: "rolling restart failed" in supervisor_log(server), 15, "the bad setting to be reported")
        assert "LOGIN_LOCKOUT" in supervisor_log(server)
        assert worker_pids(server) == old and greeting() == "first"
        env_file.write_text("TURNSTILE_PROBE_GREETING=second\n")
        server.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_for(lambda: greeting() == "second" and not set(worker_pids(server).values()) & set(old.values()), 30,
                 "the new .env to be served")
        code, output = server.stop()
    assert code == 0, output


def test_a_data_dir_that_cannot_be_written_at_sighup_starts_no_new_worker(tmp_path):
    install_probe(tmp_path)
    env_file = tmp_path / ".env"
    env_file.write_text("DATA_DIR=data\n")
    (tmp_path / "a-file").write_text("")
    server = ServerProcess(tmp_path, WORKERS="2", **probe_env(tmp_path))
    del server.env["DATA_DIR"]  # from .env, so that SIGHUP reads the new one
    with server:
        old = worker_pids(server)
        env_file.write_text("DATA_DIR=a-file\n")
        server.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_for(lambda: "rolling restart failed" in supervisor_log(server), 15, "the bad DATA_DIR to be reported")
        failures = [line for line in supervisor_log(server).splitlines() if "rolling restart failed" in line]
        assert len(failures) == 1 and "DATA_DIR='a-file' is not a directory" in failures[0], failures
        assert set(children(server.pid)) == set(old.values())  # no new worker was started
        assert worker_pids(server) == old
        code, output = server.stop()
    assert code == 0, output
