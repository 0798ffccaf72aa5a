"""Data survives a restart on the same DATA_DIR, and concurrent writes lose nothing."""

import asyncio

import pytest

from core.app import create_app
from core.pytest_plugin import DEFAULT_PASSWORD


@pytest.mark.gen_test
async def test_users_sessions_and_employees_survive_a_restart(api, app, make_user, auth_headers, turnstile_settings):
    await make_user("alice")
    headers = await auth_headers("alice")
    await api.post("/employees", json={"firstname": "Ada", "lastname": "Lovelace"}, headers=headers)
    await api.login("alice")
    cookie = api.cookies["jwt"]

    restarted = await create_app(turnstile_settings)
    try:
        store = restarted.services.store
        assert (await store.collection("auth.users").get("alice"))["username"] == "alice"
        assert [e["firstname"] for e in await store.collection("employees.employees").all()] == ["Dave", "John", "Ada"]
        sessions = await store.collection("auth.sessions").find(username="alice")
        assert len(sessions) == 2
        # A restart must not re-seed the sample rows either.
        assert await store.collection("employees.employees").count() == 3
    finally:
        await restarted.services.close()
    assert cookie


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_registrations_lose_no_user(api, app):
    names = [f"user{i}" for i in range(50)]
    responses = await asyncio.gather(*(api.post("/register", json={"user": n, "pwd": DEFAULT_PASSWORD}, cookies=False) for n in names))
    assert [r.code for r in responses] == [201] * len(names)
    store = app.services.store
    assert sorted(u["username"] for u in await store.collection("auth.users").all()) == sorted(names)
    reopened = await create_app(app.services.settings)
    try:
        assert await reopened.services.store.collection("auth.users").count() == len(names)
    finally:
        await reopened.services.close()


@pytest.mark.gen_test(timeout=60)
async def test_same_username_registered_concurrently_is_created_once(api, app):
    responses = await asyncio.gather(*(api.post("/register", json={"user": "dup", "pwd": DEFAULT_PASSWORD}, cookies=False) for _ in range(20)))
    codes = sorted(r.code for r in responses)
    assert codes == [201] + [409] * 19
