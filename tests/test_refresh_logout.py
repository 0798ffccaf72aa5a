"""GET /refresh trades the cookie for an access token; GET /logout ends the session."""

import time

import pytest
from token_kit import foreign

from core.security import token_digest
from core.signing import ACCESS, REFRESH


async def login(api, make_user):
    await make_user("alice")
    await api.login("alice")
    return api.cookies["jwt"]


@pytest.mark.gen_test
async def test_refresh_without_cookie_is_401(api):
    response = await api.get("/refresh")
    assert response.code == 401


@pytest.mark.gen_test
async def test_refresh_with_unknown_token_is_403(api, tokens):
    forged_but_valid = tokens.issue(REFRESH, "alice")
    response = await api.get("/refresh", headers={"Cookie": f"jwt={forged_but_valid}"}, cookies=False)
    assert response.code == 403


@pytest.mark.gen_test
async def test_refresh_with_garbage_is_403(api):
    response = await api.get("/refresh", headers={"Cookie": "jwt=not-a-token"}, cookies=False)
    assert response.code == 403


def session_record(digest, username):
    """A live session record as the accounts store them."""
    now = int(time.time())
    return {"digest": digest, "username": username, "family": digest, "created": now, "expires": 2**40, "retired": None, "successor": None}


@pytest.mark.gen_test
async def test_refresh_with_stored_but_badly_signed_token_is_403(api, app, make_user, tokens):
    """A token whose digest is on record still has to verify with the refresh secret."""
    await make_user("alice")
    token = foreign(tokens, tokens.claims(REFRESH, "alice"), REFRESH)
    await app.services.store.collection("auth.sessions").put(token_digest(token), session_record(token_digest(token), "alice"))
    response = await api.get("/refresh", headers={"Cookie": f"jwt={token}"}, cookies=False)
    assert response.code == 403


@pytest.mark.gen_test
async def test_refresh_with_username_mismatch_is_403(api, app, make_user, tokens):
    await make_user("alice")
    token = tokens.issue(REFRESH, "mallory")
    await app.services.store.collection("auth.sessions").put(token_digest(token), session_record(token_digest(token), "alice"))
    response = await api.get("/refresh", headers={"Cookie": f"jwt={token}"}, cookies=False)
    assert response.code == 403


@pytest.mark.gen_test
async def test_refresh_ok_returns_new_access_token(api, make_user, tokens):
    await login(api, make_user)
    response = await api.get("/refresh")
    assert response.code == 200
    claims = tokens.verify(ACCESS, response.json()["accessToken"])
    assert claims["username"] == "alice" and claims["typ"] == "access"


@pytest.mark.gen_test
async def test_access_token_is_not_a_refresh_token(api, make_user):
    await make_user("alice")
    access = await api.login("alice")
    response = await api.get("/refresh", headers={"Cookie": f"jwt={access}"}, cookies=False)
    assert response.code == 403


@pytest.mark.gen_test
async def test_logout_deletes_session_and_clears_cookie(api, app, make_user, turnstile_settings):
    token = await login(api, make_user)
    response = await api.get("/logout")
    assert response.code == 204
    assert await app.services.store.collection("auth.sessions").get(token_digest(token)) is None
    [cleared] = response.set_cookies()
    parts = [p.strip() for p in cleared.split(";")]
    assert parts[0] == "jwt="
    for attribute in ("HttpOnly", "Secure", "SameSite=None", "Path=/"):
        assert attribute in parts
    assert not any(p.startswith("Max-Age") for p in parts)
    assert any(p.startswith("Expires=Thu, 01 Jan 1970") for p in parts)
    # The old cookie no longer refreshes, even if a client kept it.
    response = await api.get("/refresh", headers={"Cookie": f"jwt={token}"}, cookies=False)
    assert response.code == 403


@pytest.mark.gen_test
@pytest.mark.parametrize("cookie", [None, "jwt=unknown"])
async def test_logout_is_204_without_a_live_session(api, cookie):
    response = await api.get("/logout", headers={"Cookie": cookie} if cookie else {}, cookies=False)
    assert response.code == 204
    assert response.body == b""
