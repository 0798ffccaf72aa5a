"""Sessions: one per login, logout ends one, logout-all and a password change end all, only digests stored."""

import time

import pytest

from core.app import create_app
from core.pytest_plugin import DEFAULT_PASSWORD, ApiClient
from core.security import token_digest


def device(http_client, base_url):
    return ApiClient(http_client, base_url)


@pytest.mark.gen_test
async def test_second_login_keeps_the_first_session(http_client, base_url, make_user):
    await make_user("alice")
    laptop, phone = device(http_client, base_url), device(http_client, base_url)
    await laptop.login("alice")
    await phone.login("alice")
    assert (await laptop.get("/refresh")).code == 200
    assert (await phone.get("/refresh")).code == 200


@pytest.mark.gen_test
async def test_logout_ends_only_its_own_session(http_client, base_url, make_user):
    await make_user("alice")
    laptop, phone = device(http_client, base_url), device(http_client, base_url)
    await laptop.login("alice")
    await phone.login("alice")
    laptop_token = laptop.cookies["jwt"]
    assert (await laptop.get("/logout")).code == 204
    assert (await laptop.get("/refresh", headers={"Cookie": f"jwt={laptop_token}"}, cookies=False)).code == 403
    assert (await phone.get("/refresh")).code == 200


@pytest.mark.gen_test
async def test_logout_with_a_retired_token_ends_the_whole_family(api, app, make_user):
    await make_user("alice")
    await api.login("alice")
    first = api.cookies["jwt"]
    assert (await api.get("/refresh")).code == 200
    assert (await api.get("/logout", headers={"Cookie": f"jwt={first}"}, cookies=False)).code == 204
    assert (await api.get("/refresh")).code == 403
    assert await app.services.store.collection("auth.sessions").count() == 0


@pytest.mark.gen_test
async def test_logout_all_ends_every_session(http_client, base_url, make_user):
    await make_user("alice")
    await make_user("bob")
    laptop, phone, other = (device(http_client, base_url) for _ in range(3))
    access = await laptop.login("alice")
    await phone.login("alice")
    await other.login("bob")
    response = await laptop.post("/logout-all", headers={"Authorization": f"Bearer {access}"})
    assert response.code == 204
    assert response.set_cookies()[0].startswith("jwt=;")
    assert (await phone.get("/refresh")).code == 403
    assert (await laptop.get("/refresh")).code == 401  # its cookie was cleared
    assert (await other.get("/refresh")).code == 200  # other users are untouched


@pytest.mark.gen_test
async def test_logout_all_needs_an_access_token(api):
    assert (await api.post("/logout-all")).code == 401


@pytest.mark.gen_test
async def test_password_change_ends_every_session(http_client, base_url, make_user):
    await make_user("alice")
    laptop, phone = device(http_client, base_url), device(http_client, base_url)
    access = await laptop.login("alice")
    await phone.login("alice")
    headers = {"Authorization": f"Bearer {access}"}
    response = await laptop.post("/password", json={"pwd": DEFAULT_PASSWORD, "newPwd": "a brand new secret"}, headers=headers)
    assert response.code == 204
    assert (await phone.get("/refresh")).code == 403
    assert (await phone.post("/auth", json={"user": "alice", "pwd": DEFAULT_PASSWORD})).code == 401
    assert (await phone.post("/auth", json={"user": "alice", "pwd": "a brand new secret"})).code == 200


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "body, status",
    [
        ({"pwd": "not my password", "newPwd": "a brand new secret"}, 403),
        ({"pwd": DEFAULT_PASSWORD, "newPwd": "short"}, 400),
        ({"pwd": DEFAULT_PASSWORD, "newPwd": "x" * 73}, 400),
        ({"pwd": DEFAULT_PASSWORD}, 400),
        ({"newPwd": "a brand new secret"}, 400),
    ],
)
async def test_password_change_refusals_keep_the_sessions(api, make_user, body, status):
    await make_user("alice")
    access = await api.login("alice")
    response = await api.post("/password", json=body, headers={"Authorization": f"Bearer {access}"})
    assert response.code == status
    assert response.json()["message"]
    assert (await api.get("/refresh")).code == 200


@pytest.mark.gen_test
async def test_password_change_needs_an_access_token(api):
    response = await api.post("/password", json={"pwd": DEFAULT_PASSWORD, "newPwd": "a brand new secret"})
    assert response.code == 401


@pytest.mark.gen_test
@pytest.mark.parametrize("turnstile_settings", [{"refresh_reuse_grace": 0}], indirect=True)
async def test_raw_refresh_tokens_are_nowhere_on_disk(api, app, make_user, turnstile_settings, logs):
    """The store keys sessions by SHA-256; neither data files nor logs contain a token."""
    await make_user("alice")
    await api.login("alice")
    tokens = [api.cookies["jwt"]]
    await api.get("/refresh")
    tokens.append(api.cookies["jwt"])
    sessions = app.services.store.collection("auth.sessions")
    assert (await sessions.get(token_digest(tokens[0])))["retired"] is not None
    assert (await sessions.get(token_digest(tokens[1])))["retired"] is None
    reuse = await api.get("/refresh", headers={"Cookie": f"jwt={tokens[0]}"}, cookies=False)
    assert reuse.code == 403
    logs.flush()
    assert "reused" in (logs.log_dir / "errLog.txt").read_text()
    files = [p for d in (turnstile_settings.data_dir, logs.log_dir) for p in d.rglob("*") if p.is_file()]
    for token in tokens:
        for path in files:
            assert token not in path.read_text(errors="replace"), path


async def restart(settings) -> None:
    """Start (and stop) a second instance on the same store: what a deploy of a new build does."""
    other = await create_app(settings)
    await other.services.close()


# Early builds wrote only the JSON store; PostgreSQL's sessions table cannot even hold such records.
only_in_data_dir = pytest.mark.backends("json")


def early_record(username: str, now: int, family: str | None = None) -> dict:
    """A session record as builds before 099584a wrote it (no ``digest``); before 5708930 also without ``family``."""
    record = {"username": username, "created": now, "expires": now + 60}
    if family is not None:
        record.update(family=family, retired=None, successor=None)
    return record


@only_in_data_dir
@pytest.mark.gen_test
async def test_session_records_of_early_builds_are_brought_up_to_date_at_start(app, turnstile_settings):
    now = int(time.time())
    sessions = app.services.store.collection("auth.sessions")
    await sessions.put("a" * 64, early_record("alice", now))
    await sessions.put("b" * 64, early_record("alice", now, family="f1"))
    await restart(turnstile_settings)
    assert await sessions.get("a" * 64) == {
        "digest": "a" * 64, "family": "a" * 64, "username": "alice", "created": now, "expires": now + 60, "retired": None, "successor": None
    }
    assert await sessions.get("b" * 64) == {**early_record("alice", now, family="f1"), "digest": "b" * 64}
    assert await sessions.count(digest=None) == 0


@only_in_data_dir
@pytest.mark.gen_test
async def test_records_from_before_session_families_end_alone(api, app, make_user, turnstile_settings):
    """A session stored without a family (older data) is its own family: logging it out ends nothing else."""
    await make_user("alice")
    await api.login("alice")
    services = app.services
    legacy = services.tokens.issue("refresh", "alice")
    now = int(time.time())
    sessions = services.store.collection("auth.sessions")
    await sessions.put(token_digest(legacy), early_record("alice", now))
    await sessions.put("f" * 64, early_record("bob", now))
    await restart(turnstile_settings)
    response = await api.get("/logout", headers={"Cookie": f"jwt={legacy}"}, cookies=False)
    assert response.code == 204
    assert await sessions.get(token_digest(legacy)) is None
    assert await sessions.get("f" * 64) is not None
    assert (await api.get("/refresh")).code == 200


@only_in_data_dir
@pytest.mark.gen_test
async def test_a_legacy_session_rotates_into_a_family_of_its_own(api, app, make_user, turnstile_settings):
    await make_user("alice")
    services = app.services
    legacy = services.tokens.issue("refresh", "alice")
    await services.store.collection("auth.sessions").put(token_digest(legacy), early_record("alice", int(time.time())))
    await restart(turnstile_settings)
    response = await api.get("/refresh", headers={"Cookie": f"jwt={legacy}"})
    assert response.code == 200
    assert (await api.get("/refresh")).code == 200  # the successor works
    assert (await api.get("/logout")).code == 204
    assert await services.store.collection("auth.sessions").count() == 0


@only_in_data_dir
@pytest.mark.gen_test
async def test_records_without_a_digest_end_with_their_user(api, app, make_user, turnstile_settings):
    await make_user("alice")
    now = int(time.time())
    sessions = app.services.store.collection("auth.sessions")
    await sessions.put("c" * 64, early_record("alice", now, family="f2"))
    await restart(turnstile_settings)
    assert await app.services.accounts.revoke_all("alice") == 1
    assert await sessions.count() == 0
