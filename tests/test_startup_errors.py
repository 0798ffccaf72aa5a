"""A setting the server cannot start with: ``python server.py`` exits 1 with one line naming it, and no traceback.

Each case runs the real server as an operator does, in a fresh working
directory with a controlled environment, and checks that it stops before it
serves, says why on one line, and leaves ``.env`` as it was.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parent.parent / "server.py"
ACCESS, REFRESH = "a" * 64, "r" * 64
GOOD_ENV_FILE = f"ACCESS_TOKEN_SECRET={ACCESS}\nREFRESH_TOKEN_SECRET={REFRESH}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cwd: Path, env_file: str | bytes | None = GOOD_ENV_FILE, **settings: str) -> subprocess.CompletedProcess[str]:
    """``python server.py`` in ``cwd`` with ``.env`` holding ``env_file`` and only ``settings`` in the environment."""
    if isinstance(env_file, str):
        (cwd / ".env").write_text(env_file)
    elif isinstance(env_file, bytes):
        (cwd / ".env").write_bytes(env_file)
    env = {"PATH": "/usr/bin:/bin", "HOST": "127.0.0.1", "PORT": str(free_port()), "BCRYPT_ROUNDS": "4", **settings}
    return subprocess.run([sys.executable, str(SERVER)], cwd=cwd, env=env, capture_output=True, text=True, timeout=30)


def one_line_error(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """The single stderr line of a refused start-up; it names each of ``names``."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("turnstile: "), lines
    for name in names:
        assert name in lines[0], lines
    assert "Server running" not in result.stdout
    return lines[0]


# -- secrets: an existing key is never written again ------------------------------------------------


@pytest.mark.parametrize(
    "env_file, environ, names",
    [
        # What ``ACCESS_TOKEN_SECRET=$UNSET ./bin/serve`` gives: the environment's empty value would hide .env's.
        (GOOD_ENV_FILE, {"ACCESS_TOKEN_SECRET": ""}, ["ACCESS_TOKEN_SECRET", "empty", "environment"]),
        (GOOD_ENV_FILE, {"REFRESH_TOKEN_SECRET": ""}, ["REFRESH_TOKEN_SECRET", "empty", "environment"]),
        (f'ACCESS_TOKEN_SECRET="{ACCESS}\nREFRESH_TOKEN_SECRET={REFRESH}\n', {}, [".env line 1", "ACCESS_TOKEN_SECRET", "quote"]),
        (f"ACCESS_TOKEN_SECRET={ACCESS}\nREFRESH_TOKEN_SECRET='{REFRESH}\nPORT=1\n", {}, [".env line 2", "REFRESH_TOKEN_SECRET"]),
        (f"ACCESS_TOKEN_SECRET=\nREFRESH_TOKEN_SECRET={REFRESH}\n", {}, ["ACCESS_TOKEN_SECRET", "empty", ".env"]),
        (f"ACCESS_TOKEN_SECRET\nREFRESH_TOKEN_SECRET={REFRESH}\n", {}, ["ACCESS_TOKEN_SECRET", ".env"]),
    ],
    ids=["empty-access-in-environment", "empty-refresh-in-environment", "open-double-quote", "open-single-quote",
         "empty-in-env-file", "no-value-in-env-file"],
)
def test_an_empty_or_unparsable_secret_stops_start_up_and_leaves_env_file_alone(tmp_path, env_file, environ, names):
    result = start(tmp_path, env_file, **environ)
    line = one_line_error(result, *names)
    assert (tmp_path / ".env").read_text() == env_file  # no second line for the secret, which would win from then on
    assert ACCESS not in line and REFRESH not in line


def test_an_unparsable_line_that_holds_no_secret_is_named_too(tmp_path):
    result = start(tmp_path, GOOD_ENV_FILE + "this is not a setting\n")
    one_line_error(result, ".env line 3", "NAME=value")


# -- the port ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["69648", "65536", "0", "-1"])
def test_a_port_outside_1_to_65535_stops_start_up(tmp_path, port):
    # 69648 used to be announced as "running on port 69648" while the socket listened on 69648 - 65536 = 4112.
    line = one_line_error(start(tmp_path, PORT=port), "PORT", port, "65535")
    assert "between 1 and 65535" in line
