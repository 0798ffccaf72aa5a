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

SERVER = Path(__file__).resolve().parent.parent / "server.py"


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
