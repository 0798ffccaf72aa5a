import pytest

pytest_plugins = ["core.pytest_plugin"]


@pytest.fixture
def headers(io_loop, make_user, auth_headers):
    """Bearer headers of a freshly registered user, alice."""

    async def login():
        await make_user("alice")
        return await auth_headers("alice")

    return io_loop.run_sync(login)
