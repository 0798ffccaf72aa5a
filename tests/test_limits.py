"""Overload limits: body size (413), the bounded bcrypt pool (503 + Retry-After), header/body/idle timeouts."""

import asyncio
import socket
import time

import pytest

from bench.harness import ServerProcess

pytestmark = pytest.mark.settings(max_body_size=1024, hash_workers=1, hash_queue=1, bcrypt_rounds=11)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real server for the socket-level tests: 64 KiB bodies, 1 s timeouts."""
    with ServerProcess(tmp_path_factory.mktemp("limits"), MAX_BODY_SIZE="64k", IDLE_TIMEOUT="1s", BODY_TIMEOUT="1s") as proc:
        yield proc


def raw(server, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(data)
    return sock


def read_all(sock: socket.socket) -> bytes:
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk


@pytest.mark.gen_test
async def test_body_over_the_limit_is_413_json_with_cors(api):
    response = await api.post(
        "/register", body=b'{"user": "' + b"x" * 2000 + b'"}', headers={"Origin": "http://localhost:5500"}
    )
    assert response.code == 413
    assert "1024 bytes" in response.json()["message"]
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:5500"
    assert (await api.post("/register", json={"user": "small", "pwd": "fits in the limit"})).code == 201


def test_client_still_sending_a_big_body_reads_the_413_not_a_reset(server):
    """2 MiB against a 64 KiB limit: the server answers at once, then drains the rest before closing."""
    body = b"a" * (2 * 1024 * 1024)
    sock = raw(server, b"POST /register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body))
    sock.sendall(body)  # would fail with a reset if the server closed on unread data
    reply = read_all(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:80]
    assert b'"message"' in reply


@pytest.mark.gen_test(timeout=30)
async def test_full_hashing_queue_answers_503_with_retry_after(api, make_user):
    """One bcrypt thread, one waiting slot: of six simultaneous logins, the overflow is refused at once."""
    await make_user("alice")
    responses = await asyncio.gather(
        *(api.post("/auth", json={"user": "alice", "pwd": "correct horse battery staple"}, cookies=False) for _ in range(6))
    )
    codes = sorted(r.code for r in responses)
    assert codes.count(200) >= 2 and 503 in codes, codes
    for response in responses:
        if response.code == 503:
            assert response.headers["Retry-After"] == "1"
            assert response.json()["message"]
    # Once the pool has drained, logins work again.
    assert (await api.post("/auth", json={"user": "alice", "pwd": "correct horse battery staple"})).code == 200


def test_slow_headers_and_slow_bodies_are_cut_off_without_blocking_others(server):
    """Clients that stall mid-headers or mid-body are closed after the timeouts; others are served meanwhile."""
    stalled = [raw(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n") for _ in range(20)]
    stalled += [raw(server, b"POST /register HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"us") for _ in range(20)]
    started = time.monotonic()
    status, _, _ = server.request("GET", "/healthz")
    assert status == 200 and time.monotonic() - started < 0.9
    for sock in stalled:
        assert sock.recv(1024) in (b"", b"HTTP/1.1 400 Bad Request\r\n\r\n")  # closed by the server
        sock.close()
    assert time.monotonic() - started < 5


def test_idle_keep_alive_connections_are_closed(server):
    conn = server.connect()
    assert server.request("GET", "/healthz", conn=conn)[0] == 200
    time.sleep(1.5)
    with pytest.raises((ConnectionError, OSError)):
        server.request("GET", "/healthz", conn=conn)
