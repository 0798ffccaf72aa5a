"""A setting the server cannot start with: ``python server.py`` exits 1 with one line naming it, and no traceback.

Each case runs the real server as an operator does, in a fresh working
directory with a controlled environment, and checks that it stops before it
serves, says why on one line, and leaves ``.env`` as it was.
"""

from __future__ import annotations

import os
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


def test_a_secret_set_twice_with_different_values_stops_start_up(tmp_path):
    """What the old bug left in a deployment's .env: the second line won silently, and instances disagreed."""
    env_file = GOOD_ENV_FILE + "ACCESS_TOKEN_SECRET=" + "f" * 128 + "\n"
    line = one_line_error(start(tmp_path, env_file), "ACCESS_TOKEN_SECRET", "twice", "lines 1 and 3")
    assert ACCESS not in line and "f" * 16 not in line
    assert (tmp_path / ".env").read_text() == env_file


def test_a_secret_repeated_with_the_same_value_is_harmless(tmp_path):
    from core.config import env_file_names

    names = env_file_names(tmp_path / ".env", GOOD_ENV_FILE + f"ACCESS_TOKEN_SECRET={ACCESS}\n")
    assert names["ACCESS_TOKEN_SECRET"] == ACCESS


def test_an_unparsable_line_that_holds_no_secret_is_named_too(tmp_path):
    result = start(tmp_path, GOOD_ENV_FILE + "this is not a setting\n")
    one_line_error(result, ".env line 3", "NAME=value")


# -- the port ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["69648", "65536", "0", "-1"])
def test_a_port_outside_1_to_65535_stops_start_up(tmp_path, port):
    # 69648 used to be announced as "running on port 69648" while the socket listened on 69648 - 65536 = 4112.
    line = one_line_error(start(tmp_path, PORT=port), "PORT", port, "65535")
    assert "between 1 and 65535" in line


# -- the port in use, HOST, the directories, .env's encoding: with one worker and with a supervisor --------------


@pytest.fixture
def taken_port():
    """A port another process listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield str(taken.getsockname()[1])


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory no file can be created in (for root too: immutable, where the file system allows it)."""
    path = tmp_path / "read-only"
    path.mkdir()
    path.chmod(0o555)
    immutable = os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    try:
        try:
            (path / "probe").touch()
        except OSError:
            yield path
        else:
            pytest.skip("cannot make a directory read-only here")
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o755)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_stops_start_up(tmp_path, taken_port, workers):
    line = one_line_error(start(tmp_path, PORT=taken_port, WORKERS=workers), f"PORT={taken_port}", "HOST='127.0.0.1'")
    assert "in use" in line


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_host_that_does_not_resolve_stops_start_up(tmp_path, workers):
    one_line_error(start(tmp_path, HOST="no-such-host.invalid", WORKERS=workers), "HOST='no-such-host.invalid'", "cannot be resolved")


@pytest.mark.parametrize("name", ["DATA_DIR", "LOG_DIR"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_directory_setting_that_names_a_file_stops_start_up(tmp_path, name, workers):
    (tmp_path / "a-file").write_text("")
    one_line_error(start(tmp_path, WORKERS=workers, **{name: "a-file"}), f"{name}='a-file'", "not a directory")


@pytest.mark.parametrize("name", ["DATA_DIR", "LOG_DIR"])
def test_a_directory_setting_whose_parent_is_a_file_stops_start_up(tmp_path, name):
    (tmp_path / "a-file").write_text("")
    one_line_error(start(tmp_path, **{name: "a-file/sub"}), f"{name}='a-file/sub'", "cannot be created", "is a file")


@pytest.mark.parametrize("name", ["DATA_DIR", "LOG_DIR"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_read_only_directory_setting_stops_start_up(tmp_path, read_only_dir, name, workers):
    one_line_error(start(tmp_path, WORKERS=workers, **{name: str(read_only_dir)}), f"{name}='{read_only_dir}'", "not writable")


def test_data_dir_is_not_checked_when_postgresql_holds_the_data(tmp_path):
    (tmp_path / "a-file").write_text("")
    result = start(tmp_path, DATA_DIR="a-file", DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing")
    line = one_line_error(result, "PostgreSQL")  # it got as far as the database
    assert "DATA_DIR" not in line


def test_an_env_file_that_is_not_utf8_stops_start_up(tmp_path):
    result = start(tmp_path, GOOD_ENV_FILE.encode() + b"GREETING=caf\xe9\n")
    one_line_error(result, ".env line 3", "not UTF-8", "0xe9")


# -- ALLOWED_ORIGINS ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["*", "null", "app.example.com", "https://app.example.com/app", "https://*.example.com",
                                   "https://a.example https://b.example"])
def test_an_allowed_origin_that_matches_nothing_or_is_unsafe_stops_start_up(tmp_path, value):
    one_line_error(start(tmp_path, ALLOWED_ORIGINS=value), "ALLOWED_ORIGINS", repr(value))


# -- WORKERS ------------------------------------------------------------------------------------------


def test_a_workers_value_that_is_no_number_names_auto(tmp_path):
    one_line_error(start(tmp_path, WORKERS="lots"), "WORKERS='lots'", "auto")
