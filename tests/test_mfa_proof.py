"""Adding a factor with a sign-in by password alone takes the current password: a leaked access token alone must not
add a passkey (and sign in without a password ever after) or an authenticator the owner does not have."""

from __future__ import annotations

import time

import pytest
from mfa_kit import code_at
from webauthn_kit import SoftAuthenticator

from core.pytest_plugin import DEFAULT_PASSWORD

NEEDED = {"message": "Give your current password ('pwd') to add a factor to a sign-in by password alone."}


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("path", ["/mfa/totp", "/webauthn/register/options"])
async def test_a_password_only_token_needs_the_password(logged_in, path):
    ann = await logged_in("ann")
    missing = await ann.post(path, json={})
    assert (missing.code, missing.json()) == (400, NEEDED)
    wrong = await ann.post(path, json={"pwd": "not the password"})
    assert (wrong.code, wrong.json()) == (400, {"message": "Current password is incorrect."})
    assert (await ann.post(path, json={"pwd": DEFAULT_PASSWORD})).code == 200


@pytest.mark.gen_test(timeout=30)
@pytest.mark.settings(login_max_failures=2)
async def test_wrong_passwords_are_throttled(logged_in):
    ann = await logged_in("ann")
    codes = [(await ann.post("/webauthn/register/options", json={"pwd": f"guess {i}"})).code for i in range(3)]
    assert codes == [400, 400, 429]


@pytest.mark.gen_test(timeout=30)
async def test_a_sign_in_with_a_second_factor_needs_nothing_more(api, logged_in, turnstile_settings):
    ann = await logged_in("ann")
    secret = (await ann.post("/mfa/totp", json={"pwd": DEFAULT_PASSWORD})).json()["secret"]
    assert (await ann.post("/mfa/totp/confirm", json={"code": code_at(secret)})).code == 200
    step = (await api.post("/auth", json={"user": "ann", "pwd": DEFAULT_PASSWORD}, cookies=False)).json()
    done = await api.post("/auth/mfa", json={"mfaToken": step["mfaToken"], "code": code_at(secret, time.time() + 30)})
    api.use_token(done.json()["accessToken"])
    options = await api.post("/webauthn/register/options", json={})  # amr has "mfa": no password asked
    assert options.code == 200
    device = SoftAuthenticator(f"http://localhost:{turnstile_settings.port}")
    assert (await api.post("/webauthn/register", json={"credential": device.create(options.json())})).code == 201
