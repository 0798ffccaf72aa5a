"""Concurrent requests in one process: no lost user, exactly one winner, ids that never repeat."""

from __future__ import annotations

import asyncio

import pytest

from core.app import create_app
from core.pytest_plugin import DEFAULT_PASSWORD
from core.backends import opened


@pytest.mark.gen_test(timeout=120)
async def test_200_concurrent_registrations_create_200_users(api, app):
    names = [f"user{i:03d}" for i in range(200)]
    responses = await asyncio.gather(*(api.post("/register", json={"user": n, "pwd": DEFAULT_PASSWORD}, cookies=False) for n in names))
    assert [r.code for r in responses] == [201] * 200
    assert await app.services.store.collection("auth.users").count() == 200
    async with opened(app.services.settings) as reopened:
        assert sorted(u["username"] for u in await reopened.collection("auth.users").all()) == names


@pytest.mark.gen_test(timeout=60)
async def test_same_username_concurrently_gives_one_201_and_409_for_the_rest(api, app):
    responses = await asyncio.gather(*(api.post("/register", json={"user": "dup", "pwd": DEFAULT_PASSWORD}, cookies=False) for _ in range(40)))
    assert sorted(r.code for r in responses) == [201] + [409] * 39


@pytest.mark.gen_test(timeout=60)
async def test_employee_ids_never_repeat_after_deletes_and_restarts(api, app, make_user, auth_headers, turnstile_settings):
    await make_user("alice")
    headers = await auth_headers("alice")
    created = await api.post("/employees", json={"firstname": "Ada", "lastname": "Lovelace"}, headers=headers)
    newest = max(e["id"] for e in created.json())
    await api.delete("/employees", json={"id": newest}, headers=headers)
    seen = {newest}
    for _ in range(2):
        restarted = await create_app(turnstile_settings)
        try:
            store = restarted.services.store
            if store.backend == "json":
                await store.compact()  # the id counter must survive compaction too
            employees = store.collection("employees.employees")
            added = await employees.insert({"firstname": "Next", "lastname": "One"})
            assert added["id"] > max(seen), f"id {added['id']} reused"
            seen.add(added["id"])
            assert await employees.delete(added["id"])
        finally:
            await restarted.services.close()
