"""Requests Tornado refuses before the application runs get a JSON answer, on a real server process."""

import json
import socket

import pytest

from bench.harness import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("raw")) as proc:
        yield proc


def exchange(server, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server may answer and close before taking it all
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return out
            if not chunk:
                return out
            out += chunk


def parse(reply: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GARBAGE\r\n\r\n", id="bad request line"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", id="bad header line"),
        pytest.param(b"POST /register HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", id="negative Content-Length"),
        pytest.param(b"POST /register HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", id="non-numeric Content-Length"),
        pytest.param(
            b"POST /register HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            id="bad chunk size",
        ),
        pytest.param(
            b"POST /register HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 100 + b"\r\n",
            id="over-long chunk size line",
        ),
    ],
)
def test_a_malformed_request_is_a_json_400(server, request_bytes):
    status, headers, body = parse(exchange(server, request_bytes))
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    assert body == {"message": "Malformed HTTP request: the request line, a header or the body framing could not be read."}
    assert server.request("GET", "/healthz")[0] == 200  # the server is unharmed


def test_over_long_headers_are_a_json_431(server):
    """Tornado's limit is 64 KiB of header block; it used to close the connection without a word."""
    status, headers, body = parse(exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"))
    assert status == 431
    assert body == {"message": "Request headers are too large."}
    assert headers["Connection"] == "close"


def test_a_well_formed_request_is_untouched(server):
    reply = exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ")


def test_workers_answer_the_same(tmp_path):
    """With WORKERS=2 the connections are handed to worker processes: the same answers."""
    with ServerProcess(tmp_path, WORKERS="2") as proc:
        assert parse(exchange(proc, b"GARBAGE\r\n\r\n"))[0] == 400
        assert parse(exchange(proc, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"))[0] == 431
