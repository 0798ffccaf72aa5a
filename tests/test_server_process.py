"""`python server.py` as a new user runs it: first-run secrets, a clear config error, a clean stop."""

import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

SERVER = Path(__file__).resolve().parent.parent / "server.py"
SECRET = "Hunter2-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN_SECRET")}
    env.update(extra)
    return env


def test_first_run_generates_secrets_and_serves(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER)],
        cwd=tmp_path,
        env=clean_env(PORT=str(port), HOST="127.0.0.1", BCRYPT_ROUNDS="4"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        env_file = tmp_path / ".env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        names = [line.split("=", 1)[0] for line in env_file.read_text().splitlines()]
        assert sorted(names) == ["ACCESS_TOKEN_SECRET", "REFRESH_TOKEN_SECRET"]
        assert (tmp_path / "data").is_dir() and (tmp_path / "logs" / "reqLog.txt").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "Generated ACCESS_TOKEN_SECRET and REFRESH_TOKEN_SECRET" in output
    assert f"Server running on port {port}" in output
    secret = env_file.read_text().split("=", 2)[1].split()[0]
    assert secret not in output


def test_short_secret_stops_start_up_with_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SERVER)],
        cwd=tmp_path,
        env=clean_env(ACCESS_TOKEN_SECRET="short", REFRESH_TOKEN_SECRET="r" * 64, PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "ACCESS_TOKEN_SECRET is 5 bytes; at least 32 are required" in result.stderr
    assert "Traceback" not in result.stderr


def start_up_line(tmp_path: Path, **env: str) -> str:
    """The server's "Server running" line, read from its stdout; the server is then stopped."""
    proc = subprocess.Popen(
        [sys.executable, str(SERVER)],
        cwd=tmp_path,
        env=clean_env(PORT=str(free_port()), HOST="127.0.0.1", BCRYPT_ROUNDS="4", **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith("Server running"):
                return line.rstrip("\n")
        raise AssertionError("the server stopped before it said it was running")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_start_up_line_names_the_store_without_a_password(tmp_path, turnstile_settings, workers):
    env = {"WORKERS": str(workers), "DATA_DIR": str(tmp_path / "store")}
    if turnstile_settings.database_url:
        url = urlsplit(turnstile_settings.database_url)
        assert url.password is None  # the test server trusts its users: any password is accepted, and must not be shown
        env["DATABASE_URL"] = urlunsplit(url._replace(netloc=f"{url.username}:{SECRET}@{url.hostname}:{url.port}"))
        where = f"PostgreSQL {url.username}@{url.hostname}:{url.port}{url.path}"
    else:
        where = f"JSON store in {tmp_path / 'store'}"
    line = start_up_line(tmp_path, **env)
    port = int(line.split()[4])
    also = f" with {workers} workers" if workers > 1 else ""
    assert line == f"Server running on port {port}{also} ({where})"
    assert SECRET not in line
