"""Run ``server.py`` as a real process on a free loopback port: shared by the benchmarks, the soak run and the tests that need signals, sockets or /proc."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SERVER = Path(__file__).resolve().parent.parent / "server.py"
PASSWORD = "correct horse battery staple"


def cpu_steal_ms() -> float:
    """Time the hypervisor gave this machine's CPUs to others (Linux /proc/stat), in ms; 0 if unknown."""
    try:
        fields = open("/proc/stat").readline().split()
        return int(fields[8]) * 1000 / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python server.py`` on fresh data under ``root``; extra environment from ``env``."""

    def __init__(self, root: Path, **env: str) -> None:
        self.root = root
        self.port = free_port()
        self.data_dir = root / "data"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.endswith("_TOKEN_SECRET")},
            "ACCESS_TOKEN_SECRET": secrets.token_hex(32),
            "REFRESH_TOKEN_SECRET": secrets.token_hex(32),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "DATA_DIR": str(self.data_dir),
            "LOG_DIR": str(root / "logs"),
            "BCRYPT_ROUNDS": "4",
            **env,
        }
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> "ServerProcess":
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER)], cwd=self.root, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            assert self.proc.poll() is None, self.proc.communicate()[0]
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)

    def __exit__(self, *exc: Any) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def connect(self, timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                conn: http.client.HTTPConnection | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One request (on ``conn`` if given, else a fresh connection): status, headers, body."""
        own = conn is None
        conn = conn or self.connect()
        headers = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            if own:
                conn.close()

    def login(self, user: str) -> tuple[str, str]:
        """Register ``user`` and log in: (access token, refresh cookie value)."""
        status, _, body = self.request("POST", "/register", {"user": user, "pwd": PASSWORD})
        assert status == 201, body
        return self.login_again(user)

    def login_again(self, user: str) -> tuple[str, str]:
        """Log in an existing ``user``: (access token, refresh cookie value)."""
        status, headers, body = self.request("POST", "/auth", {"user": user, "pwd": PASSWORD})
        assert status == 200, body
        cookie = headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]
        return json.loads(body)["accessToken"], cookie

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, str]:
        """Send ``sig`` and wait: (exit code, everything it printed)."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        output, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, output
