"""Graceful shutdown of the real server process: drain, flush, exit 0, and nothing acknowledged is lost."""

import asyncio
import http.client
import json
import signal
import socket
import threading
import time

from bench.harness import ServerProcess
from core.pytest_plugin import make_settings
from core.backends import opened
from worker_kit import read_message, read_response


def stored_firstnames(server: ServerProcess) -> set[str]:
    """The employees' first names in the store the server used, read after it stopped."""

    async def read() -> set[str]:
        async with opened(make_settings(server.data_dir).with_changes(data_dir=server.data_dir)) as store:
            return {e["firstname"] for e in await store.collection("employees.employees").all()}

    return asyncio.run(read())


def start_upload(server: ServerProcess, token: str, body: bytes) -> socket.socket:
    """A POST /employees whose headers and first half of the body are sent; the rest is up to the caller."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = (
        f"POST /employees HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body[: len(body) // 2])
    return sock


def read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data else 0


def test_sigterm_during_write_load_keeps_every_acknowledged_write(tmp_path):
    """Writers hammer POST /employees; SIGTERM lands mid-load and mid-upload; every 201 must be on disk."""
    acknowledged: set[str] = set()
    with ServerProcess(tmp_path, SHUTDOWN_TIMEOUT="10s") as server:
        token, _ = server.login("writer")
        headers = {"Authorization": f"Bearer {token}"}
        stop_writing = threading.Event()

        failures: list[str] = []

        def writer(n: int) -> None:
            conn = server.connect()
            for i in range(100000):
                if stop_writing.is_set():
                    return
                name = f"w{n}-{i}"
                try:
                    status, _, _ = server.request("POST", "/employees", {"firstname": name, "lastname": "load"}, headers, conn)
                except ConnectionRefusedError:
                    return  # its connection was closed after a "Connection: close" answer, and the port is closed
                except (OSError, http.client.HTTPException) as exc:
                    failures.append(f"{name}: {exc!r}")  # cut off mid-request
                    return
                if status == 201:
                    acknowledged.add(name)
                else:
                    failures.append(f"{name}: status {status}")  # requests are served until the end

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 15
        while len(acknowledged) < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(acknowledged) >= 40, "write load did not get going"
        body = json.dumps({"firstname": "in-flight", "lastname": "upload"}).encode()
        upload = start_upload(server, token, body)
        time.sleep(0.1)

        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # Draining: new connections are refused...
        try:
            server.request("GET", "/healthz")
            raise AssertionError("server still accepts connections while draining")
        except ConnectionRefusedError:
            pass
        # ...but the upload began before the signal: the server waits for it and answers it.
        upload.sendall(body[len(body) // 2 :])
        assert read_status(upload) == 201
        upload.close()
        output, _ = server.proc.communicate(timeout=20)
        stop_writing.set()
        for thread in threads:
            thread.join(timeout=10)
        assert server.proc.returncode == 0, output
        assert failures == [], failures

    stored = stored_firstnames(server)
    missing = acknowledged - stored
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:5]}"
    assert "in-flight" in stored


def test_a_stalled_request_delays_exit_only_until_the_timeout(tmp_path):
    """A client that never finishes its body cannot hold the shutdown past SHUTDOWN_TIMEOUT."""
    with ServerProcess(tmp_path, SHUTDOWN_TIMEOUT="1s", BODY_TIMEOUT="60s") as server:
        token, _ = server.login("writer")
        upload = start_upload(server, token, b'{"firstname": "never", "lastname": "finished"}')
        time.sleep(0.1)
        started = time.monotonic()
        code, output = server.stop(signal.SIGTERM)
        elapsed = time.monotonic() - started
        upload.close()
    assert code == 0, output
    assert 0.9 <= elapsed < 6, elapsed
    assert "cut off" in output
    stored = stored_firstnames(server)
    assert "never" not in stored


def test_a_request_on_an_open_connection_during_the_drain_is_served_and_its_connection_closed(tmp_path):
    """Not a 503: the request is answered, with ``Connection: close``, and then the server closes the connection."""
    with ServerProcess(tmp_path, SHUTDOWN_TIMEOUT="10s") as server:
        token, _ = server.login("reader")
        upload = start_upload(server, token, b'{"firstname": "slow", "lastname": "upload"}')  # keeps the drain going
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        request = f"GET /employees HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        sock.sendall(request)
        assert read_response(sock)[0] == 200
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(request)
        status, headers, body = read_message(sock)
        assert status == 200, body
        assert headers.get("connection") == "close", headers
        assert sock.recv(1) == b""  # closed by the server after the answer
        upload.close()
        code, output = server.stop()
    assert code == 0, output


def test_a_request_running_when_the_drain_began_leaves_its_client_time_for_one_more(tmp_path):
    """Its answer went out keep-alive (the drain began after its headers), so the next request on it is served too."""
    from worker_kit import install_probe, probe_env

    install_probe(tmp_path)
    with ServerProcess(tmp_path, SHUTDOWN_TIMEOUT="10s", **probe_env(tmp_path)) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"GET /probe/sleep?seconds=1.8 HTTP/1.1\r\nHost: x\r\n\r\n")  # outlasts the keep-alive grace
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        status, headers, _ = read_message(sock)
        assert status == 200 and headers.get("connection") != "close"
        time.sleep(0.2)  # a client's think time: the drain must not close the connection under it
        sock.sendall(b"GET /probe/version HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = read_message(sock)
        assert status == 200, body
        code, output = server.stop()
    assert code == 0, output
