"""Login and input hardening: dummy-hash timing, password and username rules, lockouts."""

import asyncio

import pytest

from core.pytest_plugin import DEFAULT_PASSWORD, make_settings


@pytest.fixture
def turnstile_settings(tmp_path, request):
    return make_settings(tmp_path, **getattr(request, "param", {}))


def settings(**overrides):
    return pytest.mark.parametrize("turnstile_settings", [overrides], indirect=True)


async def login(api, user, pwd=DEFAULT_PASSWORD, **kw):
    return await api.post("/auth", json={"user": user, "pwd": pwd}, cookies=False, **kw)


@pytest.mark.gen_test
async def test_unknown_user_costs_a_bcrypt_check_and_looks_like_a_wrong_password(api, app, make_user, monkeypatch):
    await make_user("alice")
    hasher = app.settings["services"].passwords
    checked = []
    real = hasher._check_sync
    monkeypatch.setattr(hasher, "_check_sync", lambda p, h: checked.append(h) or real(p, h))
    unknown = await login(api, "nobody")
    wrong = await login(api, "alice", "wrong password")
    assert unknown.code == wrong.code == 401
    assert unknown.json() == wrong.json()
    assert len(checked) == 2
    dummy, real_hash = checked
    assert dummy.startswith("$2b$04$") and len(dummy) == len(real_hash) == 60 and dummy != real_hash


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/register", "/auth"])
async def test_password_over_72_bytes_is_400(api, path):
    response = await api.post(path, json={"user": "alice", "pwd": "é" * 37})  # 74 bytes
    assert response.code == 400
    assert "72 bytes" in response.json()["message"]


@pytest.mark.gen_test
async def test_72_bytes_exactly_is_fine(api):
    assert (await api.post("/register", json={"user": "alice", "pwd": "p" * 72})).code == 201
    assert (await login(api, "alice", "p" * 72)).code == 200


@pytest.mark.gen_test
@settings(password_min_length=10)
async def test_minimum_password_length_on_register(api, turnstile_settings):
    short = await api.post("/register", json={"user": "alice", "pwd": "123456789"})
    assert short.code == 400 and short.json()["message"] == "Password must be at least 10 characters."
    assert (await api.post("/register", json={"user": "alice", "pwd": "1234567890"})).code == 201


def test_default_minimum_password_length_is_8(turnstile_settings):
    assert turnstile_settings.password_min_length == 8


@pytest.mark.gen_test
@pytest.mark.parametrize("name", ["bad name", "a/b", "../x", "x" * 33, "ö", "-dash", ".dot", "<script>", "a\u0000b"])
async def test_unsafe_usernames_are_400(api, name):
    for path in ("/register", "/auth"):
        response = await api.post(path, json={"user": name, "pwd": DEFAULT_PASSWORD})
        assert response.code == 400, path
        assert "Username must be" in response.json()["message"]


@pytest.mark.gen_test
@pytest.mark.parametrize("name", ["a", "walt1", "Dave.Gray", "x_y-z", "9" * 32])
async def test_safe_usernames_register(api, name):
    assert (await api.post("/register", json={"user": name, "pwd": DEFAULT_PASSWORD})).code == 201


@pytest.mark.gen_test
@settings(login_max_failures=3, login_lockout=60)
async def test_username_lockout_refuses_even_the_right_password(api, make_user, turnstile_settings):
    await make_user("alice")
    await make_user("bob")
    for _ in range(3):
        assert (await login(api, "alice", "wrong password")).code == 401
    locked = await login(api, "alice")
    assert locked.code == 429
    assert 0 < int(locked.headers["Retry-After"]) <= 60
    assert locked.json()["message"]
    assert (await login(api, "bob")).code == 200  # another user from the same address is fine


@pytest.mark.gen_test
@settings(login_max_failures=3, login_lockout=1)
async def test_lockout_ends(api, make_user, turnstile_settings):
    await make_user("alice")
    for _ in range(3):
        await login(api, "alice", "wrong password")
    assert (await login(api, "alice")).code == 429
    await asyncio.sleep(1.1)
    assert (await login(api, "alice")).code == 200


@pytest.mark.gen_test
@settings(login_max_failures=3)
async def test_success_resets_the_username_count(api, make_user, turnstile_settings):
    await make_user("alice")
    for attempt in ["wrong 1", "wrong 2", DEFAULT_PASSWORD, "wrong 3", "wrong 4"]:
        await login(api, "alice", attempt)
    assert (await login(api, "alice")).code == 200


@pytest.mark.gen_test
@settings(login_max_failures=100, login_max_failures_per_address=3, login_lockout=30)
async def test_address_lockout_spans_usernames(api, make_user, turnstile_settings):
    await make_user("carol")
    for name in ("alice", "bob", "dave"):
        assert (await login(api, name, "guess")).code == 401
    locked = await login(api, "carol")
    assert locked.code == 429 and 0 < int(locked.headers["Retry-After"]) <= 30


@pytest.mark.gen_test
@settings(login_max_failures=0, login_max_failures_per_address=0)
async def test_zero_turns_lockout_off(api, make_user, turnstile_settings):
    await make_user("alice")
    for _ in range(8):
        assert (await login(api, "alice", "wrong password")).code == 401
    assert (await login(api, "alice")).code == 200


@pytest.mark.gen_test(timeout=30)
@settings(login_max_failures=5)
async def test_a_parallel_burst_gets_only_the_allowed_guesses(api, make_user, turnstile_settings):
    """Attempts are counted before the slow bcrypt check, so a burst cannot outrun the lock."""
    await make_user("alice")
    responses = await asyncio.gather(*(login(api, "alice", f"guess {i}") for i in range(20)))
    codes = [r.code for r in responses]
    assert codes.count(401) == 5 and codes.count(429) == 15


@pytest.mark.gen_test
@settings(login_max_failures=2)
async def test_wrong_current_password_counts_towards_the_lock(api, make_user, auth_headers, turnstile_settings):
    await make_user("alice")
    headers = await auth_headers("alice")
    for _ in range(2):
        response = await api.post("/password", json={"pwd": "not it at all", "newPwd": "whatever-new-1"}, headers=headers)
        assert response.code == 403
    assert (await login(api, "alice")).code == 429


def test_failures_older_than_the_window_do_not_count():
    from plugins.auth.throttle import LoginThrottle

    now = [1000.0]
    throttle = LoginThrottle(window=60, lockout=300, clock=lambda: now[0])
    limits = {"user:alice": 3}
    for _ in range(2):
        throttle.begin(limits)
        throttle.failed(limits)
    now[0] += 61
    throttle.begin(limits)
    throttle.failed(limits)
    assert throttle.retry_after(limits) == 0
    for _ in range(2):
        throttle.begin(limits)
        throttle.failed(limits)
    assert throttle.retry_after(limits) == 300
    now[0] += 299.5
    assert throttle.retry_after(limits) == 1
    now[0] += 1
    assert throttle.retry_after(limits) == 0


def test_memory_is_bounded(monkeypatch):
    from plugins.auth import throttle as module

    monkeypatch.setattr(module, "MAX_KEYS", 100)
    throttle = module.LoginThrottle(window=60, lockout=60)
    for i in range(1000):
        limits = {f"user:u{i}": 5}
        throttle.begin(limits)
        throttle.failed(limits)
    assert len(throttle._entries) <= 100


@pytest.mark.gen_test
async def test_openapi_documents_the_lockout(api):
    doc = (await api.get("/openapi.json")).json()
    locked = doc["paths"]["/auth"]["post"]["responses"]["429"]
    assert locked["headers"]["Retry-After"]["required"] is True
    assert "429" in doc["paths"]["/password"]["post"]["responses"]
