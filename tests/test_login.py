"""POST /auth: credentials, the access token, and the refresh cookie."""

import pytest

from core.pytest_plugin import DEFAULT_PASSWORD
from core.security import token_digest
from core.signing import ACCESS, REFRESH


@pytest.mark.gen_test
@pytest.mark.parametrize("body", [{}, {"user": "alice"}, {"pwd": DEFAULT_PASSWORD}])
async def test_missing_fields_are_400(api, body):
    response = await api.post("/auth", json=body)
    assert response.code == 400
    assert response.json()["message"] == "Username and password are required."


@pytest.mark.gen_test
async def test_unknown_user_is_401(api):
    response = await api.post("/auth", json={"user": "nobody", "pwd": DEFAULT_PASSWORD})
    assert response.code == 401
    assert not response.set_cookies()


@pytest.mark.gen_test
async def test_wrong_password_is_401(api, make_user):
    await make_user("alice")
    response = await api.post("/auth", json={"user": "alice", "pwd": "wrong password"})
    assert response.code == 401
    assert not response.set_cookies()


@pytest.mark.gen_test
async def test_success_returns_access_token_and_refresh_cookie(api, app, make_user, tokens, turnstile_settings):
    await make_user("alice")
    response = await api.post("/auth", json={"user": "alice", "pwd": DEFAULT_PASSWORD})
    assert response.code == 200
    access = response.json()["accessToken"]
    claims = tokens.verify(ACCESS, access)
    assert claims["username"] == "alice" and claims["typ"] == "access"
    assert claims["exp"] - claims["iat"] == turnstile_settings.access_ttl

    [cookie] = response.set_cookies()
    parts = [p.strip() for p in cookie.split(";")]
    name, _, refresh = parts[0].partition("=")
    assert name == "jwt" and refresh
    for attribute in ("HttpOnly", "Secure", "SameSite=None", "Path=/", f"Max-Age={turnstile_settings.refresh_ttl}"):
        assert attribute in parts
    assert tokens.verify(REFRESH, refresh)["typ"] == "refresh"

    sessions = app.services.store.collection("auth.sessions")
    assert (await sessions.get(token_digest(refresh)))["username"] == "alice"


@pytest.mark.gen_test
async def test_two_logins_keep_two_sessions(api, app, make_user):
    await make_user("alice")
    await api.login("alice")
    await api.login("alice")
    sessions = app.services.store.collection("auth.sessions")
    assert len(await sessions.find(username="alice")) == 2
