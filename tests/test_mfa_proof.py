"""Adding a factor takes a recent sign-in or the current password: a refresh cookie lasts a day, and with it alone
someone could add their own passkey (and sign in without a password ever after) or an authenticator the owner lacks."""

from __future__ import annotations

import time

import pytest

from core.plugin import ACCESS
from core.pytest_plugin import DEFAULT_PASSWORD

NEEDED = {"message": "Your sign-in is not recent: give your current password ('pwd'), or sign in again."}


def stale(tokens, settings, name: str = "ann") -> dict[str, str]:
    """The header of a token whose sign-in is older than REAUTH_WINDOW (as refreshes of an old session give)."""
    token = tokens.issue(ACCESS, name, roles=[2001], amr=["pwd"], auth_time=int(time.time()) - settings.reauth_window - 5)
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("path", ["/mfa/totp", "/webauthn/register/options"])
async def test_a_recent_sign_in_needs_nothing_more(logged_in, path):
    ann = await logged_in("ann")
    assert (await ann.post(path, json={})).code == 200


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("path", ["/mfa/totp", "/webauthn/register/options"])
async def test_an_old_sign_in_needs_the_password(api, make_user, tokens, turnstile_settings, path):
    await make_user("ann")
    headers = stale(tokens, turnstile_settings)
    missing = await api.post(path, json={}, headers=headers)
    assert (missing.code, missing.json()) == (400, NEEDED)
    wrong = await api.post(path, json={"pwd": "not the password"}, headers=headers)
    assert (wrong.code, wrong.json()) == (400, {"message": "Current password is incorrect."})
    assert (await api.post(path, json={"pwd": DEFAULT_PASSWORD}, headers=headers)).code == 200


@pytest.mark.gen_test(timeout=30)
@pytest.mark.settings(login_max_failures=2)
async def test_wrong_passwords_are_throttled(api, make_user, tokens, turnstile_settings):
    await make_user("ann")
    headers = stale(tokens, turnstile_settings)
    codes = [(await api.post("/webauthn/register/options", json={"pwd": f"guess {i}"}, headers=headers)).code for i in range(3)]
    assert codes == [400, 400, 429]


@pytest.mark.gen_test(timeout=30)
async def test_refresh_keeps_the_time_of_the_sign_in(api, app, make_user, tokens):
    """A session refreshed for hours still dates from its sign-in: refreshing does not make it recent."""
    await make_user("ann")
    first = await api.post("/auth", json={"user": "ann", "pwd": DEFAULT_PASSWORD})
    signed_in = tokens.verify(ACCESS, first.json()["accessToken"])["auth_time"]
    sessions = app.services.store.collection("auth.sessions")
    for key, doc in await sessions.items():
        await sessions.update(key, {"auth_time": doc["auth_time"] - 3600})  # as if signed in an hour ago
    refreshed = tokens.verify(ACCESS, (await api.get("/refresh")).json()["accessToken"])
    assert refreshed["auth_time"] == signed_in - 3600
    api.use_token((await api.get("/refresh")).json()["accessToken"])
    assert (await api.post("/mfa/totp", json={})).json() == NEEDED
