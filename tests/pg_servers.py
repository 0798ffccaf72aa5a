"""Real ``python server.py`` processes on one PostgreSQL database, and an HTTP client for them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

PROJECT = Path(__file__).resolve().parent.parent
SECRETS = {"ACCESS_TOKEN_SECRET": "a1" * 32, "REFRESH_TOKEN_SECRET": "b2" * 32}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """One server process; ``url`` is its base URL."""

    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log.read_text()


def start_server(database_url: str, workdir: Path, name: str, **env: str) -> Server:
    """Start ``server.py`` on ``database_url`` and wait until it answers."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.out"
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.endswith("_TOKEN_SECRET")},
        **SECRETS,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "BCRYPT_ROUNDS": "4",
        "COOKIE_SECURE": "false",
        "DATA_DIR": str(workdir / f"{name}-data"),
        "LOG_DIR": str(workdir / f"{name}-logs"),
        "LOGIN_MAX_FAILURES": "1000",
        "LOGIN_MAX_FAILURES_PER_ADDRESS": "100000",
        **env,
    }
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(PROJECT / "server.py")], cwd=workdir, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(proc, port, log)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"server {name} exited: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=2):
                return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise AssertionError(f"server {name} did not start: {log.read_text()}") from None
            time.sleep(0.1)


@dataclass
class Reply:
    code: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    cookie: str | None = None  # the refresh token set, if any


async def call(base: str, method: str, path: str, body: Any = None, cookie: str | None = None, token: str | None = None) -> Reply:
    """One request; never raises for an HTTP status."""
    import json

    headers = {"Content-Type": "application/json"}
    if cookie:
        headers["Cookie"] = f"jwt={cookie}"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = HTTPRequest(
        base + path,
        method=method,
        headers=headers,
        body=json.dumps(body) if body is not None else (None if method in ("GET", "DELETE") else ""),
        request_timeout=30,
        allow_nonstandard_methods=True,
    )
    response = await AsyncHTTPClient().fetch(request, raise_error=False)
    if response.code == 599:
        raise AssertionError(f"{method} {path}: no answer ({response.error})")
    cookie_out = None
    for header in response.headers.get_list("Set-Cookie"):
        if header.startswith("jwt="):
            cookie_out = header.split(";", 1)[0][4:] or None
    try:
        parsed = json.loads(response.body) if response.body else None
    except ValueError:
        parsed = response.body.decode(errors="replace")
    return Reply(response.code, parsed, dict(response.headers.get_all()), cookie_out)
