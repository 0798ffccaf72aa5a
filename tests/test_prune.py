"""Expired session records are pruned, so the store does not grow without bound."""

import time

import pytest

from core.app import create_app


def expired(username="alice", family="old"):
    past = int(time.time()) - 10
    return {"username": username, "family": family, "created": past - 100, "expires": past, "retired": None, "successor": None}


@pytest.mark.gen_test
async def test_prune_removes_expired_current_and_retired_records(app):
    store = app.services.store
    sessions = store.collection("auth.sessions")
    await sessions.put("a" * 64, expired())
    await sessions.put("b" * 64, {**expired(), "retired": int(time.time()) - 20})
    assert await app.services.accounts.prune() == 2
    assert await sessions.count() == 0
    assert await app.services.accounts.prune() == 0


@pytest.mark.gen_test
async def test_prune_keeps_live_retired_records_for_reuse_detection(app, make_user, api):
    await make_user("alice")
    await api.login("alice")
    await api.get("/refresh")
    store = app.services.store
    await store.collection("auth.sessions").put("c" * 64, expired())
    assert await app.services.accounts.prune() == 1
    assert await store.collection("auth.sessions").count() == 2  # the retired token and its successor


@pytest.mark.gen_test
async def test_start_up_prunes(app, turnstile_settings):
    await app.services.store.collection("auth.sessions").put("d" * 64, expired())
    restarted = await create_app(turnstile_settings)
    try:
        assert await restarted.services.store.collection("auth.sessions").get("d" * 64) is None
    finally:
        await restarted.services.close()


@pytest.mark.gen_test
async def test_running_server_prunes_periodically(tmp_path, monkeypatch):
    import asyncio
    import importlib

    from core.pytest_plugin import make_settings

    monkeypatch.setattr(importlib.import_module("plugins.auth"), "PRUNE_EVERY", 0.05)
    app = await create_app(make_settings(tmp_path))
    try:
        sessions = app.services.store.collection("auth.sessions")
        await sessions.put("e" * 64, expired())
        for _ in range(50):
            await asyncio.sleep(0.05)
            if await sessions.get("e" * 64) is None:
                break
        assert await sessions.get("e" * 64) is None
    finally:
        await app.services.close()
