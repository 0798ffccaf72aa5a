"""A hung worker does not hang the deployment: heartbeats while serving, a deadline while draining."""

from __future__ import annotations

import http.client

from bench.harness import ServerProcess
from test_workers import alive, children, connection_per_worker, healthz, worker_pids
from worker_kit import install_probe, probe_env, supervisor_log, wait_for


def block_worker(server: ServerProcess) -> tuple[http.client.HTTPConnection, int]:
    """Send GET /probe/block to one worker, whose event loop then sleeps: (its connection, its pid)."""
    conns = connection_per_worker(server)
    pid = healthz(server, conns[1])["pid"]
    conns[0].close()
    conn = conns[1]
    conn.putrequest("GET", "/probe/block?seconds=600")
    conn.endheaders()
    return conn, pid


def test_a_worker_whose_event_loop_is_stuck_is_killed_and_replaced(tmp_path):
    install_probe(tmp_path)
    with ServerProcess(tmp_path, WORKERS="2", WORKER_TIMEOUT="3s", **probe_env(tmp_path)) as server:
        worker_pids(server)
        conn, stuck = block_worker(server)
        wait_for(lambda: not alive(stuck), 30, "the stuck worker to be killed")
        wait_for(lambda: len(children(server.pid)) == 2 and stuck not in worker_pids(server).values(), 15,
                 "its replacement to serve")
        lines = [line for line in supervisor_log(server).splitlines() if f"pid {stuck})" in line]
        assert len(lines) == 1 and "no heartbeat" in lines[0] and "WORKER_TIMEOUT=3s" in lines[0], lines
        conn.close()
        code, output = server.stop()
    assert code == 0, output


def test_a_worker_that_does_not_drain_is_killed_at_the_deadline_and_the_supervisor_exits_0(tmp_path):
    install_probe(tmp_path)
    with ServerProcess(tmp_path, WORKERS="2", WORKER_TIMEOUT="10m", SHUTDOWN_TIMEOUT="1s", **probe_env(tmp_path)) as server:
        worker_pids(server)
        conn, stuck = block_worker(server)  # its loop never sees the SIGTERM
        workers = children(server.pid)
        code, output = server.stop(timeout=60)
        conn.close()
    assert code == 0, output
    assert not any(alive(pid) for pid in workers)
    lines = [line for line in supervisor_log(server).splitlines() if f"pid {stuck})" in line]
    assert len(lines) == 1 and "still draining" in lines[0] and "SIGKILL" in lines[0], lines
