import asyncio
import os
import sys
from pathlib import Path

import pytest

from core.logs import setup_logging, teardown_logging

pytest_plugins = ["pytester"]  # the turnstile fixtures come from the installed project (pytest11 entry point)


@pytest.fixture
def headers(io_loop, make_user, auth_headers):
    """Bearer headers of a freshly registered user, alice."""

    async def login():
        await make_user("alice")
        return await auth_headers("alice")

    return io_loop.run_sync(login)


@pytest.fixture
def logs(turnstile_settings):
    """The request and error logs set up under the test's LOG_DIR; call ``.flush()`` before reading them."""
    setup = setup_logging(turnstile_settings.log_dir)
    yield setup
    teardown_logging(setup)


SERVER = Path(__file__).resolve().parent.parent / "server.py"


@pytest.fixture
def run_cli(turnstile_settings, tmp_path):
    """Runs the CLI in its own process on the app's store (DATA_DIR or DATABASE_URL), without blocking the server's loop."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN_SECRET") and k != "DATABASE_URL"}
    env.update(
        ACCESS_TOKEN_SECRET=turnstile_settings.access_secret,
        REFRESH_TOKEN_SECRET=turnstile_settings.refresh_secret,
        DATA_DIR=str(turnstile_settings.data_dir),
        BCRYPT_ROUNDS="4",
        ACCESS_TOKEN_ALGORITHM=turnstile_settings.access_algorithm,
    )
    if turnstile_settings.database_url:
        env["DATABASE_URL"] = turnstile_settings.database_url

    async def run(*args, stdin=""):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SERVER), *args, cwd=tmp_path, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 30)
        return proc.returncode, out.decode(), err.decode()

    return run


@pytest.fixture
def smtp_server():
    """A running in-process SMTP server (tests/smtp_kit.py) on a port of its own; ``stop()``/``start()`` keep the port."""
    from smtp_kit import SMTPServer

    server = SMTPServer()
    server.start()
    yield server
    server.stop()
