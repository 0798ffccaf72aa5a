"""`Services` lifetimes: whatever opened is closed, in reverse order, on failure as on a normal stop."""

from __future__ import annotations

import asyncio

import pytest

from core import services as services_module
from core.app import create_app
from core.config import ConfigError, Settings
from core.security import PasswordHasher


@pytest.fixture
def recorded(monkeypatch):
    """Record when the store opens, and when it and the hashing threads close."""
    events: list[str] = []
    real_open = services_module.open_store

    async def open_store(settings: Settings):
        store = await real_open(settings)
        events.append("store opened")
        real_close = store.close

        async def close() -> None:
            events.append("store closed")
            await real_close()

        store.close = close  # type: ignore[method-assign]
        return store

    real_hasher_close = PasswordHasher.close

    def hasher_close(self: PasswordHasher) -> None:
        events.append("hashing closed")
        real_hasher_close(self)

    monkeypatch.setattr(services_module, "open_store", open_store)
    monkeypatch.setattr(PasswordHasher, "close", hasher_close)
    return events


def test_close_runs_plugin_stops_newest_first_then_store_then_hashing(turnstile_settings, recorded):
    async def run() -> None:
        async with await services_module.make_services(turnstile_settings) as services:
            services.on_close(lambda: recorded.append("first stop"))

            async def second() -> None:
                await asyncio.sleep(0)
                recorded.append("second stop")

            services.on_close(second)
        assert services.closed
        await services.close()  # idempotent: nothing runs twice

    asyncio.run(run())
    assert recorded == ["store opened", "second stop", "first stop", "store closed", "hashing closed"]


def test_a_failure_after_the_store_opened_closes_it_and_the_hashing_threads(turnstile_settings, recorded, monkeypatch):
    async def broken_open(store):
        raise RuntimeError("accounts cannot start")

    monkeypatch.setattr(services_module.Accounts, "open", broken_open)
    with pytest.raises(RuntimeError, match="accounts cannot start"):
        asyncio.run(services_module.make_services(turnstile_settings))
    assert recorded == ["store opened", "store closed", "hashing closed"]


def test_a_store_that_cannot_open_still_stops_the_hashing_threads(turnstile_settings, recorded, monkeypatch):
    async def no_store(settings):
        raise OSError("disk gone")

    monkeypatch.setattr(services_module, "open_store", no_store)
    with pytest.raises(OSError, match="disk gone"):
        asyncio.run(services_module.make_services(turnstile_settings))
    assert recorded == ["hashing closed"]


def test_a_plugin_setup_failure_closes_what_create_app_opened(turnstile_settings, recorded, tmp_path):
    plugin = tmp_path / "plugins" / "broken"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text(
        "routes = []\n"
        "def setup(plugin):\n"
        "    plugin.services.on_close(lambda: CLOSED.append(True))\n"
        "    raise RuntimeError('setup failed')\n"
        "CLOSED = []\n"
    )

    async def run() -> None:
        await create_app(turnstile_settings, plugins_dir=tmp_path / "plugins", installed_plugins=False)

    with pytest.raises(Exception, match="setup failed"):
        asyncio.run(run())
    assert recorded == ["store opened", "store closed", "hashing closed"]


def test_a_server_that_cannot_listen_opens_nothing(turnstile_settings, recorded):
    """The port is bound before the app is built: a port in use stops start-up before any store or plugin opens."""
    import socket

    from core.serve import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = turnstile_settings.with_changes(host="127.0.0.1", port=taken.getsockname()[1])
        with pytest.raises(ConfigError, match="cannot listen on PORT"):
            asyncio.run(serve(settings))
    assert recorded == []
