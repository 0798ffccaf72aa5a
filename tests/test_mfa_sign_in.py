"""The second step of a sign-in with the mfa plugin: mfaRequired from /auth, /auth/mfa with a TOTP code or a
recovery code, the mfaToken's rules, amr through refresh, @require_mfa, throttling, and mfa-reset. Both backends."""

from __future__ import annotations

import time

import pytest
from mfa_kit import code_at
from webauthn_kit import SoftAuthenticator

from core.plugin import ACCESS
from core.pytest_plugin import DEFAULT_PASSWORD

STEP = 30
TOKEN_REFUSED = {"message": "This sign-in has expired or was used up; sign in again."}


async def with_totp(logged_in, name: str = "ann") -> tuple[str, list[str]]:
    """``name`` signed up with TOTP on (confirmed with the current step's code): the secret and the recovery codes."""
    client = await logged_in(name)
    secret = (await client.post("/mfa/totp", json={"pwd": DEFAULT_PASSWORD})).json()["secret"]
    confirmed = await client.post("/mfa/totp/confirm", json={"code": code_at(secret)})
    assert confirmed.code == 200, confirmed.text
    return secret, confirmed.json()["recoveryCodes"]


def next_code(secret: str, steps: int = 1) -> str:
    """A code of a later step (inside the ±1 window for steps=1): the confirming step is spent."""
    return code_at(secret, time.time() + steps * STEP)


async def first_step(api, name: str = "ann", pwd: str = DEFAULT_PASSWORD) -> dict:
    response = await api.post("/auth", json={"user": name, "pwd": pwd}, cookies=False)
    assert response.code == 200, response.text
    return response.json()


@pytest.mark.gen_test(timeout=30)
async def test_a_user_with_totp_gets_the_second_step_and_no_token(api, logged_in):
    await with_totp(logged_in)
    response = await api.post("/auth", json={"user": "ann", "pwd": DEFAULT_PASSWORD})
    body = response.json()
    assert body["mfaRequired"] is True and body["methods"] == ["totp", "recovery_code"]
    assert len(body["mfaToken"]) >= 43 and "accessToken" not in body
    assert "jwt" not in api.cookies and not response.set_cookies()


@pytest.mark.gen_test(timeout=30)
async def test_a_user_without_a_factor_signs_in_as_before(api, make_user, tokens):
    await make_user("bob")
    response = await api.post("/auth", json={"user": "bob", "pwd": DEFAULT_PASSWORD})
    assert set(response.json()) == {"roles", "accessToken"} and "jwt" in api.cookies
    assert tokens.verify(ACCESS, response.json()["accessToken"])["amr"] == ["pwd"]


@pytest.mark.gen_test(timeout=30)
async def test_a_totp_code_finishes_the_sign_in_and_amr_survives_refresh(api, logged_in, tokens):
    secret, _ = await with_totp(logged_in)
    step = await first_step(api)
    done = await api.post("/auth/mfa", json={"mfaToken": step["mfaToken"], "code": next_code(secret)})
    assert done.code == 200 and set(done.json()) == {"roles", "accessToken"} and "jwt" in api.cookies
    assert tokens.verify(ACCESS, done.json()["accessToken"])["amr"] == ["pwd", "otp", "mfa"]
    refreshed = await api.get("/refresh")
    assert tokens.verify(ACCESS, refreshed.json()["accessToken"])["amr"] == ["pwd", "otp", "mfa"]


@pytest.mark.gen_test(timeout=30)
async def test_a_code_used_once_is_refused_the_second_time(api, logged_in):
    secret, _ = await with_totp(logged_in)
    code = next_code(secret)
    first = await first_step(api)
    assert (await api.post("/auth/mfa", json={"mfaToken": first["mfaToken"], "code": code}, cookies=False)).code == 200
    second = await first_step(api)
    replay = await api.post("/auth/mfa", json={"mfaToken": second["mfaToken"], "code": code}, cookies=False)
    assert (replay.code, replay.json()) == (401, {"message": "Wrong code."})
    confirming = await api.post("/auth/mfa", json={"mfaToken": second["mfaToken"], "code": code_at(secret)}, cookies=False)
    assert confirming.code == 401  # the step that confirmed the enrolment is spent as well


@pytest.mark.gen_test(timeout=30)
async def test_recovery_codes_work_once(api, logged_in, tokens):
    _, codes = await with_totp(logged_in)
    step = await first_step(api)
    done = await api.post("/auth/mfa", json={"mfaToken": step["mfaToken"], "recoveryCode": codes[0].upper()}, cookies=False)
    assert done.code == 200
    assert tokens.verify(ACCESS, done.json()["accessToken"])["amr"] == ["pwd", "otp", "mfa"]
    step = await first_step(api)
    again = await api.post("/auth/mfa", json={"mfaToken": step["mfaToken"], "recoveryCode": codes[0]}, cookies=False)
    assert again.code == 401


@pytest.mark.gen_test(timeout=30)
async def test_forged_expired_and_spent_tokens_are_401(api, app, logged_in):
    secret, _ = await with_totp(logged_in)
    forged = await api.post("/auth/mfa", json={"mfaToken": "A" * 43, "code": next_code(secret)}, cookies=False)
    assert (forged.code, forged.json()) == (401, TOKEN_REFUSED)
    step = await first_step(api)
    assert (await api.post("/auth/mfa", json={"mfaToken": step["mfaToken"], "code": next_code(secret)}, cookies=False)).code == 200
    spent = await api.post("/auth/mfa", json={"mfaToken": step["mfaToken"], "code": next_code(secret, 2)}, cookies=False)
    assert (spent.code, spent.json()) == (401, TOKEN_REFUSED)
    step = await first_step(api)
    pending = app.services.store.collection("mfa.pending")
    for key, doc in await pending.items():
        await pending.update(key, {"expires": doc["expires"] - 301})
    expired = await api.post("/auth/mfa", json={"mfaToken": step["mfaToken"], "code": next_code(secret, -1)}, cookies=False)
    assert (expired.code, expired.json()) == (401, TOKEN_REFUSED)


@pytest.mark.gen_test(timeout=30)
@pytest.mark.settings(login_max_failures=50)
async def test_a_token_allows_five_tries(api, logged_in):
    secret, _ = await with_totp(logged_in)
    step = await first_step(api)
    wrong = [(await api.post("/auth/mfa", json={"mfaToken": step["mfaToken"], "code": "000000"}, cookies=False)).code for _ in range(5)]
    assert wrong == [401] * 5
    right = await api.post("/auth/mfa", json={"mfaToken": step["mfaToken"], "code": next_code(secret)}, cookies=False)
    assert (right.code, right.json()) == (401, TOKEN_REFUSED)


@pytest.mark.gen_test(timeout=30)
@pytest.mark.settings(login_max_failures=3)
async def test_wrong_codes_are_throttled_per_user_across_tokens(api, logged_in):
    secret, _ = await with_totp(logged_in)
    codes = []
    for _ in range(4):  # a new mfaToken each time: the lock is on the user
        step = await first_step(api)
        response = await api.post("/auth/mfa", json={"mfaToken": step["mfaToken"], "code": "000000"}, cookies=False)
        codes.append(response.code)
    assert codes == [401, 401, 401, 429]
    step = await first_step(api)
    locked = await api.post("/auth/mfa", json={"mfaToken": step["mfaToken"], "code": next_code(secret)}, cookies=False)
    assert locked.code == 429 and int(locked.headers["Retry-After"]) > 0


@pytest.mark.gen_test(timeout=30)
async def test_a_password_changed_meanwhile_voids_the_second_step(api, app, logged_in):
    secret, _ = await with_totp(logged_in)
    step = await first_step(api)
    assert await app.services.accounts.set_password("ann", await app.services.passwords.hash("another password"))
    response = await api.post("/auth/mfa", json={"mfaToken": step["mfaToken"], "code": next_code(secret)}, cookies=False)
    assert (response.code, response.json()) == (401, TOKEN_REFUSED)


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize(
    "body",
    [{}, {"mfaToken": "x"}, {"mfaToken": "x", "code": "1", "recoveryCode": "2"}, {"mfaToken": "x", "pin": "1"}, {"mfaToken": 1, "code": "1"}],
)
async def test_malformed_second_steps_are_400(api, body):
    assert (await api.post("/auth/mfa", json=body)).code == 400


@pytest.mark.gen_test(timeout=60)
async def test_a_password_reset_keeps_the_factors_and_mfa_reset_removes_them(api, app, logged_in, run_cli):
    await with_totp(logged_in)
    code, _, err = await run_cli("user", "passwd", "ann", stdin="a password set by the operator\n")
    assert code == 0, err
    assert (await first_step(api, pwd="a password set by the operator"))["mfaRequired"] is True
    code, out, err = await run_cli("user", "mfa-reset", "ann")
    assert code == 0 and "recovery_codes, totp" in out, err
    assert set(await first_step(api, pwd="a password set by the operator")) == {"roles", "accessToken"}


# -- a passkey as the second factor, through the real plugin's wiring ------------------------------


async def with_passkey(logged_in, origin: str, name: str = "pat") -> SoftAuthenticator:
    client = await logged_in(name)
    device = SoftAuthenticator(origin)
    options = await client.post("/webauthn/register/options", json={"pwd": DEFAULT_PASSWORD})
    assert options.code == 200, options.text
    created = await client.post("/webauthn/register", json={"credential": device.create(options.json())})
    assert created.code == 201, created.text
    return device


@pytest.mark.gen_test(timeout=30)
async def test_a_passkey_as_the_second_factor(api, logged_in, tokens, turnstile_settings):
    device = await with_passkey(logged_in, f"http://localhost:{turnstile_settings.port}")
    step = await first_step(api, "pat")
    assert step["methods"] == ["webauthn"]
    options = await api.post("/webauthn/login/options", json={"mfaToken": step["mfaToken"]}, cookies=False)
    assert options.code == 200 and options.json()["allowCredentials"], options.text  # that user's passkeys
    done = await api.post("/auth/mfa", json={"mfaToken": step["mfaToken"], "credential": device.get(options.json())})
    assert done.code == 200, done.text
    assert tokens.verify(ACCESS, done.json()["accessToken"])["amr"] == ["pwd", "hwk", "user", "mfa"]


@pytest.mark.gen_test(timeout=30)
async def test_another_users_passkey_is_no_second_factor(api, logged_in, turnstile_settings, make_user):
    origin = f"http://localhost:{turnstile_settings.port}"
    mallory_device = await with_passkey(logged_in, origin, "mallory")
    await with_passkey(logged_in, origin, "pat")
    step = await first_step(api, "pat")
    free_options = await api.post("/webauthn/login/options", json={}, cookies=False)  # a challenge bound to no one
    answer = mallory_device.get(free_options.json())
    refused = await api.post("/auth/mfa", json={"mfaToken": step["mfaToken"], "credential": answer}, cookies=False)
    assert refused.code == 401


@pytest.mark.gen_test(timeout=30)
async def test_passkey_options_need_a_live_mfa_token(api):
    response = await api.post("/webauthn/login/options", json={"mfaToken": "A" * 43})
    assert (response.code, response.json()) == (401, TOKEN_REFUSED)
