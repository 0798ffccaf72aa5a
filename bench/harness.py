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
            stragglers = child_pids(self.proc.pid)  # workers: one whose loop is blocked would outlive its supervisor
            self.proc.kill()
            for pid in stragglers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
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


def connections_by_pid(port: int, pids: list[int]) -> dict[int, int]:
    """Established TCP connections on local ``port`` that each of ``pids`` holds (Linux /proc)."""
    inodes: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # ESTABLISHED
                inodes[fields[9]] = 0
    counts = {}
    for pid in pids:
        held = 0
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    held += 1
        except OSError:
            pass
        counts[pid] = held
    return counts


def child_pids(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)
