"""WORKERS=2: keep-alive connections opened in one burst are spread over the workers, in every run."""

from __future__ import annotations

import os
import signal
import socket
import threading

from bench.harness import ServerProcess
from test_workers import alive, children, healthz, worker_pids
from worker_kit import burst, read_response, wait_for

RUNS = 5


def test_bursts_of_8_32_and_64_connections_give_each_worker_its_share_in_every_run(tmp_path):
    with ServerProcess(tmp_path, WORKERS="2") as server:
        worker_pids(server)  # both workers serve
        for count in (8, 32, 64):
            floor = 1 if count == 8 else count // 4
            for run in range(RUNS):
                shares = burst(server.port, count)
                assert sorted(shares) == [0, 1] and min(shares.values()) >= floor, (count, run, dict(shares))
        code, output = server.stop()
    assert code == 0, output


def test_a_replaced_worker_gets_its_share_again(tmp_path):
    with ServerProcess(tmp_path, WORKERS="2") as server:
        victim = worker_pids(server)[1]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(children(server.pid)) == 2 and victim not in children(server.pid), 15, "a replacement")
        wait_for(lambda: worker_pids(server).get(1, victim) != victim, 15, "the replacement to serve")
        for _ in range(RUNS):
            shares = burst(server.port, 32)
            assert min(shares.get(0, 0), shares.get(1, 0)) >= 8, dict(shares)


def test_connections_handed_to_a_worker_that_dies_before_taking_them_are_served_by_another(tmp_path):
    """A stopped worker cannot take what it is handed; killed, its untaken connections go to the other worker.

    Every request of the burst is answered: none was lost with the worker.
    """
    with ServerProcess(tmp_path, WORKERS="2") as server:
        pids = worker_pids(server)
        os.kill(pids[1], signal.SIGSTOP)
        try:
            socks = [socket.create_connection(("127.0.0.1", server.port), timeout=20) for _ in range(16)]
            for sock in socks:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answers: dict[int, tuple[int, bytes]] = {}

            def read(i: int, sock: socket.socket) -> None:
                answers[i] = read_response(sock)

            readers = [threading.Thread(target=read, args=(i, s)) for i, s in enumerate(socks)]
            for reader in readers:
                reader.start()
            readers[0].join(1.0)
            stuck = sum(1 for r in readers if r.is_alive())
            assert stuck > 0, "the stopped worker was handed nothing; the test proves nothing"
            os.kill(pids[1], signal.SIGKILL)
            for reader in readers:
                reader.join(20)
            assert len(answers) == 16 and all(status == 200 for status, _ in answers.values()), answers
            for sock in socks:
                sock.close()
        finally:
            if alive(pids[1]):
                os.kill(pids[1], signal.SIGKILL)
        assert healthz(server)["pid"] != pids[1]
        code, output = server.stop()
    assert code == 0, output
