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
