"""Login and input hardening: dummy-hash timing, password and username rules, lockouts."""

import asyncio
from typing import Any

import pytest

from core.pytest_plugin import DEFAULT_PASSWORD
from core.security import HashingBusy


async def login(api, user, pwd=DEFAULT_PASSWORD, **kw):
    return await api.post("/auth", json={"user": user, "pwd": pwd}, cookies=False, **kw)


@pytest.mark.gen_test
async def test_unknown_user_costs_a_bcrypt_check_and_looks_like_a_wrong_password(api, app, make_user, monkeypatch):
    await make_user("alice")
    hasher = app.services.passwords
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
@pytest.mark.settings(password_min_length=10)
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
@pytest.mark.settings(login_max_failures=3, login_lockout=60)
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
@pytest.mark.settings(login_max_failures=3, login_lockout=1)
async def test_lockout_ends(api, make_user, turnstile_settings):
    await make_user("alice")
    for _ in range(3):
        await login(api, "alice", "wrong password")
    assert (await login(api, "alice")).code == 429
    await asyncio.sleep(1.1)
    assert (await login(api, "alice")).code == 200


@pytest.mark.gen_test
@pytest.mark.settings(login_max_failures=3)
async def test_success_resets_the_username_count(api, make_user, turnstile_settings):
    await make_user("alice")
    for attempt in ["wrong 1", "wrong 2", DEFAULT_PASSWORD, "wrong 3", "wrong 4"]:
        await login(api, "alice", attempt)
    assert (await login(api, "alice")).code == 200


@pytest.mark.gen_test
@pytest.mark.settings(login_max_failures=100, login_max_failures_per_address=3, login_lockout=30)
async def test_address_lockout_spans_usernames(api, make_user, turnstile_settings):
    await make_user("carol")
    for name in ("alice", "bob", "dave"):
        assert (await login(api, name, "guess")).code == 401
    locked = await login(api, "carol")
    assert locked.code == 429 and 0 < int(locked.headers["Retry-After"]) <= 30


@pytest.mark.gen_test
@pytest.mark.settings(login_max_failures=0, login_max_failures_per_address=0)
async def test_zero_turns_lockout_off(api, make_user, turnstile_settings):
    await make_user("alice")
    for _ in range(8):
        assert (await login(api, "alice", "wrong password")).code == 401
    assert (await login(api, "alice")).code == 200


@pytest.mark.gen_test(timeout=30)
@pytest.mark.settings(login_max_failures=5)
async def test_a_parallel_burst_gets_only_the_allowed_guesses(api, make_user, turnstile_settings):
    """Attempts are counted before the slow bcrypt check, so a burst cannot outrun the lock."""
    await make_user("alice")
    responses = await asyncio.gather(*(login(api, "alice", f"guess {i}") for i in range(20)))
    codes = [r.code for r in responses]
    assert codes.count(401) == 5 and codes.count(429) == 15


@pytest.mark.gen_test
@pytest.mark.settings(login_max_failures=2)
async def test_wrong_current_password_counts_towards_the_lock(api, make_user, auth_headers, turnstile_settings):
    await make_user("alice")
    headers = await auth_headers("alice")
    for _ in range(2):
        response = await api.post("/password", json={"pwd": "not it at all", "newPwd": "whatever-new-1"}, headers=headers)
        assert response.code == 403
    assert (await login(api, "alice")).code == 429


@pytest.mark.gen_test
async def test_openapi_documents_the_lockout(api):
    doc = (await api.get("/openapi.json")).json()
    locked = doc["paths"]["/auth"]["post"]["responses"]["429"]
    assert locked["headers"]["Retry-After"]["required"] is True
    assert "429" in doc["paths"]["/password"]["post"]["responses"]


def fail_checks(monkeypatch, app, error: Exception) -> None:
    """Make every password check raise ``error`` before any verdict, like a full bcrypt queue or a broken store."""

    async def check(password, hashed):
        raise error

    monkeypatch.setattr(app.services.passwords, "check", check)


@pytest.mark.gen_test
@pytest.mark.settings(login_max_failures=3, login_max_failures_per_address=3)
@pytest.mark.parametrize("error, code", [(HashingBusy(), 503), (OSError("disk gone"), 500)])
async def test_a_login_that_raises_does_not_count_towards_the_lock(
    api, app, make_user, monkeypatch, turnstile_settings, error, code
):
    """A 503 (queue full) or a 500 gave no verdict on the password, so it must not lock the user or address out."""
    await make_user("alice")
    with monkeypatch.context() as patch:
        fail_checks(patch, app, error)
        for _ in range(5):
            assert (await login(api, "alice")).code == code
    assert (await login(api, "alice")).code == 200


@pytest.mark.gen_test
@pytest.mark.settings(login_max_failures=3)
async def test_raised_attempts_are_taken_back_but_wrong_passwords_still_lock(
    api, app, make_user, monkeypatch, turnstile_settings
):
    """Taking back a 503 must not forgive the wrong guesses around it."""
    await make_user("alice")
    for round_ in range(3):
        assert (await login(api, "alice", f"wrong {round_}")).code == 401
        if round_ < 2:
            with monkeypatch.context() as patch:
                fail_checks(patch, app, HashingBusy())
                assert (await login(api, "alice")).code == 503
    assert (await login(api, "alice")).code == 429


@pytest.mark.gen_test
@pytest.mark.settings(login_max_failures=2)
async def test_a_password_change_that_raises_does_not_count_towards_the_lock(
    api, app, make_user, auth_headers, monkeypatch, turnstile_settings
):
    await make_user("alice")
    headers = await auth_headers("alice")
    change = {"pwd": DEFAULT_PASSWORD, "newPwd": "a new password 1"}
    with monkeypatch.context() as patch:
        fail_checks(patch, app, HashingBusy())
        for _ in range(4):
            assert (await api.post("/password", json=change, headers=headers)).code == 503
    assert (await api.post("/password", json=change, headers=headers)).code == 204
    assert (await login(api, "alice", "a new password 1")).code == 200


@pytest.mark.gen_test(timeout=30)
@pytest.mark.settings(login_max_failures=2, login_max_failures_per_address=0, login_lockout=60)
async def test_flooding_new_usernames_does_not_evict_a_lock(api, app, make_user, turnstile_settings):
    """Nothing is evicted early: a flood of fresh names adds entries (each costing a bcrypt check), never drops a lock."""
    await make_user("alice")
    for _ in range(2):
        assert (await login(api, "alice", "wrong password")).code == 401
    assert (await login(api, "alice")).code == 429
    for i in range(40):
        assert (await login(api, f"flood{i}", "guess")).code == 401
    assert (await login(api, "alice")).code == 429
    assert len(await app.services.store.collection("auth.throttle").all()) == 41


def fake_clock_throttle(app, window: int = 60, lockout: int = 300):
    """A throttle on the app's store (either backend), with a clock the test moves."""
    from core.store import Namespace
    from core.throttle import Throttle

    now = [1_000_000.0]
    return Throttle(Namespace(app.services.store, "auth"), window=window, lockout=lockout, clock=lambda: now[0]), now


async def fail(throttle, limits) -> int:
    """One wrong password: the seconds of the 429 it got, or 0 for a 401."""
    wait, attempt = await throttle.begin(limits, next(iter(limits)))
    return wait or await throttle.failed(attempt)


@pytest.mark.gen_test
async def test_failures_older_than_the_window_do_not_count(app):
    throttle, now = fake_clock_throttle(app, window=60, lockout=300)
    limits = {"user:alice": 3}
    for _ in range(2):
        assert await fail(throttle, limits) == 0
    now[0] += 61
    assert await fail(throttle, limits) == 0
    assert await throttle.retry_after(limits) == 0
    for _ in range(2):
        assert await fail(throttle, limits) == 0
    assert await throttle.retry_after(limits) == 300
    now[0] += 299.5
    assert await throttle.retry_after(limits) == 1
    now[0] += 1
    assert await throttle.retry_after(limits) == 0


@pytest.mark.gen_test
async def test_abandoning_takes_back_only_that_attempt(app):
    """An abandoned attempt leaves other requests' failures and in-flight attempts counted, with their own times."""
    throttle, now = fake_clock_throttle(app, window=60)
    start = now[0]
    limits = {"user:alice": 3, "addr:1.2.3.4": 3}
    assert await fail(throttle, limits) == 0  # t=0
    now[0] = start + 1
    _, busy = await throttle.begin(limits, "user:alice")  # t=1, will get no verdict
    now[0] = start + 2
    _, in_flight = await throttle.begin(limits, "user:alice")  # t=2, still checking
    assert busy.marked == in_flight.marked == set(limits)  # the keys have state: counted as they start
    await throttle.abandoned(busy)
    assert await throttle.retry_after(limits) == 0  # two counted: the failure and the one in flight
    now[0] = start + 61.5  # the t=0 failure has left the window; the t=2 attempt has not
    assert await fail(throttle, limits) == 0
    assert await throttle.retry_after(limits) == 0
    assert await fail(throttle, limits) == 0
    assert await throttle.retry_after(limits) == 300  # t=2 and the two new failures
    await throttle.abandoned(in_flight)  # cleared by the lock: nothing to take back, the lock holds
    assert await throttle.retry_after(limits) == 300


@pytest.mark.gen_test
async def test_an_abandoned_attempt_leaves_nothing_behind(app):
    """Requests that never got a verdict must not fill the store: clean keys are not even written."""
    throttle, _ = fake_clock_throttle(app)
    for i in range(50):
        wait, attempt = await throttle.begin({f"user:u{i}": 3, "addr:1.2.3.4": 20}, f"user:u{i}")
        assert wait == 0 and not attempt.marked
        await throttle.abandoned(attempt)
    assert await app.services.store.collection("auth.throttle").all() == []
    assert await fail(throttle, {"user:u0": 3, "addr:1.2.3.4": 20}) == 0
    before = await app.services.store.collection("auth.throttle").all()
    wait, attempt = await throttle.begin({"user:u0": 3, "addr:1.2.3.4": 20}, "user:u0")
    assert attempt.marked == {"user:u0", "addr:1.2.3.4"}
    await throttle.abandoned(attempt)
    assert await app.services.store.collection("auth.throttle").all() == before


@pytest.mark.gen_test
async def test_in_flight_attempts_on_a_key_with_failures_are_counted_when_they_start(app):
    throttle, _ = fake_clock_throttle(app, lockout=300)
    limits = {"user:alice": 3}
    assert await fail(throttle, limits) == 0
    started = [await throttle.begin(limits, "user:alice") for _ in range(3)]
    assert [wait for wait, _ in started] == [0, 0, 300]  # one failure and two in flight fill the quota
    for _, attempt in started[:2]:
        assert await throttle.failed(attempt) == 0  # each had its slot: both are told
    assert await throttle.retry_after(limits) == 300


@pytest.mark.gen_test
async def test_a_verdict_past_the_quota_on_a_clean_key_is_not_told(app):
    """Attempts on a clean key are not written when they start; one whose key locked meanwhile gets a 429."""
    throttle, _ = fake_clock_throttle(app, lockout=300)
    limits = {"user:alice": 2}
    attempts = [await throttle.begin(limits, "user:alice") for _ in range(4)]
    assert all(wait == 0 and not attempt.marked for wait, attempt in attempts)
    verdicts = [await throttle.failed(attempt) for _, attempt in attempts[:3]]
    assert verdicts == [0, 0, 300]  # two guesses told, the third one refused
    assert await throttle.succeeded(attempts[3][1]) == 300  # even the right password
    assert await throttle.retry_after(limits) == 300


@pytest.mark.gen_test
async def test_expired_entries_are_pruned(app):
    """`prune` deletes what has nothing live left (old failures, ended locks), and keeps the rest."""
    throttle, now = fake_clock_throttle(app, window=60, lockout=300)
    coll = app.services.store.collection("auth.throttle")
    assert await fail(throttle, {"user:old": 3}) == 0  # live until t+60
    for _ in range(2):
        await fail(throttle, {"user:locked": 2})  # locked until t+300
    now[0] += 30
    assert await fail(throttle, {"user:recent": 3}) == 0  # live until t+90
    assert await throttle.prune() == 0
    now[0] += 31  # t+61
    assert await throttle.prune() == 1
    assert sorted(k for k, _ in await coll.items()) == ["user:locked", "user:recent"]
    assert await throttle.retry_after({"user:locked": 2}) > 0
    now[0] += 240  # t+301
    assert await throttle.prune() == 2
    assert await coll.all() == []


@pytest.mark.gen_test
@pytest.mark.settings(login_max_failures=3, login_lockout=60)
async def test_the_auth_plugin_prunes_at_start(turnstile_settings):
    """The periodic sweep (first run at start-up) deletes throttle entries that expired."""
    from core.app import create_app
    from core.backends import opened

    async with opened(turnstile_settings) as store:
        await store.collection("auth.throttle").put("user:gone", {"failures": [1.0], "pending": {}, "locked_until": 0, "expires": 61.0})
        await store.collection("auth.throttle").put("user:kept", {"failures": [], "pending": {}, "locked_until": 9e12, "expires": 9e12})
    application = await create_app(turnstile_settings)
    try:
        keys = [k for k, _ in await application.services.store.collection("auth.throttle").items()]
    finally:
        await application.services.close()
    assert keys == ["user:kept"]


class ThrottleWriteSpy:
    """Records every write to ``auth.throttle`` on ``store``, in or out of a transaction (both backends)."""

    WRITES = ("insert", "put", "update", "delete", "delete_where")

    def __init__(self, store, monkeypatch) -> None:
        import contextlib

        self.writes: list[tuple[str, Any]] = []
        self.reads = 0
        real_collection, real_transaction = store.collection, store.transaction

        @contextlib.asynccontextmanager
        async def transaction(prefix: str = ""):
            async with real_transaction(prefix) as tx:
                yield SpiedTransaction(tx, prefix, self)

        monkeypatch.setattr(store, "collection", lambda name: self.wrap(real_collection(name), name))
        monkeypatch.setattr(store, "transaction", transaction)

    def wrap(self, coll, name: str):
        return SpiedCollection(coll, self) if name == "auth.throttle" else coll


class SpiedTransaction:
    def __init__(self, tx, prefix: str, spy: ThrottleWriteSpy) -> None:
        self.tx, self.prefix, self.spy = tx, prefix, spy

    def collection(self, name: str):
        return self.spy.wrap(self.tx.collection(name), self.prefix + name)


class SpiedCollection:
    def __init__(self, coll, spy: ThrottleWriteSpy) -> None:
        self.coll, self.spy = coll, spy

    def __getattr__(self, attr: str):
        method = getattr(self.coll, attr)

        async def call(*args, **kwargs):
            if attr in ThrottleWriteSpy.WRITES:
                self.spy.writes.append((attr, args[0] if args else kwargs))
            elif attr == "get":
                self.spy.reads += 1
            return await method(*args, **kwargs)

        return call


@pytest.mark.gen_test
@pytest.mark.settings(login_max_failures=3)
async def test_a_successful_login_of_a_clean_name_writes_nothing_to_the_throttle(api, app, make_user, monkeypatch, turnstile_settings):
    await make_user("alice")
    spy = ThrottleWriteSpy(app.services.store, monkeypatch)
    for _ in range(3):
        assert (await login(api, "alice")).code == 200
    assert spy.writes == []
    assert spy.reads == 3 * 4  # per login: one keyed read per key (user, address) before bcrypt, and after it
    assert await app.services.store.collection("auth.throttle").all() == []

    assert (await login(api, "alice", "wrong password")).code == 401
    assert [op for op, _ in spy.writes] == ["put", "put"]  # the failure, on the name and on the address
    del spy.writes[:]
    assert (await login(api, "alice")).code == 200
    # A name with failures: counted in flight on both keys, then taken back, and the name's failures forgotten.
    assert spy.writes == [("put", "addr:127.0.0.1"), ("put", "user:alice"), ("put", "addr:127.0.0.1"), ("delete", "user:alice")]
    del spy.writes[:]
    assert (await login(api, "alice")).code == 200  # the name is clean again (the address keeps its failure)
    assert spy.writes == []
    assert [k for k, _ in await app.services.store.collection("auth.throttle").items()] == ["addr:127.0.0.1"]


@pytest.mark.gen_test
@pytest.mark.settings(login_max_failures=2, login_max_failures_per_address=0)
async def test_a_throttle_store_outage_is_a_503_and_counts_nothing(api, app, make_user, monkeypatch, turnstile_settings):
    """When the throttle cannot write its count, the verdict is not told, and nothing is counted."""
    import contextlib

    from core.store import StoreUnavailable

    await make_user("alice")
    store = app.services.store
    real = store.transaction

    @contextlib.asynccontextmanager
    async def failing(prefix: str = ""):
        if prefix == "auth.":  # the throttle's transactions (the accounts' have no prefix)
            raise StoreUnavailable("database restarting", retry_after=2)
        async with real(prefix) as tx:
            yield tx

    assert (await login(api, "alice", "wrong 1")).code == 401
    with monkeypatch.context() as patch:
        patch.setattr(store, "transaction", failing)
        for pwd in ("wrong 2", "wrong 3", DEFAULT_PASSWORD):
            response = await login(api, "alice", pwd)
            assert response.code == 503 and response.headers["Retry-After"] == "2"
    assert (await login(api, "alice")).code == 200  # still one failure short of the lock
    assert await store.collection("auth.throttle").all() == []
