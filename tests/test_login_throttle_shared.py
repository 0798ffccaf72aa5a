"""The login throttle is shared: two instances on one store (one DATA_DIR, or one PostgreSQL database) count together."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from instance_kit import instance

from core.config import Settings
from core.pytest_plugin import DEFAULT_PASSWORD, ApiClient, make_settings


@pytest.fixture(params=["json", "postgres"])
def shared_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings two instances share: the same DATA_DIR, or the same (emptied) PostgreSQL database."""
    overrides: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("settings"))):
        overrides.update(marker.kwargs)
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    return make_settings(tmp_path, **overrides)


async def login(api: ApiClient, user: str, pwd: str = DEFAULT_PASSWORD) -> int:
    return (await api.post("/auth", json={"user": user, "pwd": pwd}, cookies=False)).code


@pytest.mark.gen_test(timeout=60)
@pytest.mark.settings(login_max_failures=3, login_lockout=60)
async def test_failures_on_one_instance_lock_the_name_on_the_other(shared_settings, http_client):
    async with instance(shared_settings, http_client) as a, instance(shared_settings, http_client) as b:
        for name in ("alice", "bob"):
            assert (await a.post("/register", json={"user": name, "pwd": DEFAULT_PASSWORD})).code == 201
        assert await login(a, "alice", "wrong 1") == 401
        assert await login(b, "alice", "wrong 2") == 401
        assert await login(a, "alice", "wrong 3") == 401
        for api in (a, b):
            response = await api.post("/auth", json={"user": "alice", "pwd": DEFAULT_PASSWORD}, cookies=False)
            assert response.code == 429 and 0 < int(response.headers["Retry-After"]) <= 60
        assert await login(b, "bob") == 200


@pytest.mark.gen_test(timeout=60)
@pytest.mark.settings(login_max_failures=2)
async def test_a_success_on_one_instance_resets_the_count_on_the_other(shared_settings, http_client):
    async with instance(shared_settings, http_client) as a, instance(shared_settings, http_client) as b:
        assert (await a.post("/register", json={"user": "alice", "pwd": DEFAULT_PASSWORD})).code == 201
        assert await login(a, "alice", "wrong 1") == 401
        assert await login(b, "alice") == 200
        assert await login(a, "alice", "wrong 2") == 401
        assert await login(a, "alice") == 200  # one failure since the success on the other: not locked


@pytest.mark.gen_test(timeout=60)
@pytest.mark.settings(login_max_failures=5, login_max_failures_per_address=100)
@pytest.mark.parametrize("earlier_failures", [0, 2])
async def test_a_burst_spread_over_two_instances_gets_only_the_allowed_guesses(shared_settings, http_client, earlier_failures):
    """On a clean name (verdicts checked) and on one with failures (attempts counted as they start), in parallel."""
    async with instance(shared_settings, http_client) as a, instance(shared_settings, http_client) as b:
        assert (await a.post("/register", json={"user": "alice", "pwd": DEFAULT_PASSWORD})).code == 201
        for i in range(earlier_failures):
            assert await login(b, "alice", f"earlier {i}") == 401
        codes = await asyncio.gather(*(login((a, b)[i % 2], "alice", f"guess {i}") for i in range(20)))
        assert codes.count(401) == 5 - earlier_failures and codes.count(429) == 15 + earlier_failures
        assert await login(a, "alice") == 429 and await login(b, "alice") == 429


@pytest.mark.gen_test(timeout=60)
@pytest.mark.settings(login_max_failures=5, login_max_failures_per_address=4)
async def test_a_spray_of_clean_names_from_one_address_gets_only_the_address_quota(shared_settings, http_client):
    """Clean names write nothing as they start: the address's quota holds through the verdict check."""
    async with instance(shared_settings, http_client) as a, instance(shared_settings, http_client) as b:
        codes = await asyncio.gather(*(login((a, b)[i % 2], f"user{i}", "guess") for i in range(16)))
        assert codes.count(401) == 4 and codes.count(429) == 12
        assert (await a.post("/register", json={"user": "carol", "pwd": DEFAULT_PASSWORD})).code == 201
        assert await login(b, "carol") == 429
