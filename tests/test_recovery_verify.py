"""An account's email address: set, change, and verify it through a link that arrives by SMTP."""

from __future__ import annotations

import time

import pytest
from recovery_kit import settled, token_in, with_smtp

from core.plugin import ACCESS
from core.pytest_plugin import DEFAULT_PASSWORD


@pytest.fixture
def turnstile_settings(turnstile_settings, smtp_server):
    return with_smtp(turnstile_settings, smtp_server.port)


@pytest.mark.gen_test(timeout=30)
async def test_register_with_email_then_verify_through_the_mailed_link(api, make_user, logged_in, smtp_server):
    await make_user("ann", email="Ann@Example.com")
    ann = await logged_in("ann")
    assert (await ann.get("/email")).json() == {"email": "ann@example.com", "email_verified": False}
    response = await ann.post("/email/verify-request", json={})
    assert response.code == 202
    (mail,) = await smtp_server.wait_for(1)
    assert (mail["To"], mail["Subject"]) == ("ann@example.com", "Confirm your email address")
    assert smtp_server.deliveries[0].rcpt_tos == ["ann@example.com"]
    token = token_in(mail, "verify")
    assert len(token) >= 43  # 32 random bytes, base64url
    assert (await api.post("/email/verify", json={"token": token})).code == 204
    assert (await ann.get("/email")).json() == {"email": "ann@example.com", "email_verified": True}


@pytest.mark.gen_test(timeout=30)
async def test_a_verify_token_works_once(api, make_user, logged_in, smtp_server):
    await make_user("ann", email="ann@example.com")
    ann = await logged_in("ann")
    await ann.post("/email/verify-request", json={})
    token = token_in((await smtp_server.wait_for(1))[0], "verify")
    assert (await api.post("/email/verify", json={"token": token})).code == 204
    second = await api.post("/email/verify", json={"token": token})
    assert (second.code, second.json()) == (400, {"message": "This link is invalid or has expired; ask for a new one."})


@pytest.mark.gen_test(timeout=30)
async def test_an_expired_or_unknown_verify_token_is_400(api, app, make_user, logged_in, smtp_server):
    await make_user("ann", email="ann@example.com")
    ann = await logged_in("ann")
    await ann.post("/email/verify-request", json={})
    token = token_in((await smtp_server.wait_for(1))[0], "verify")
    tokens = app.services.store.collection("recovery.tokens")
    for key, doc in await tokens.items():
        await tokens.update(key, {"expires": doc["created"] - 1})
    assert (await api.post("/email/verify", json={"token": token})).code == 400
    assert (await api.post("/email/verify", json={"token": "A" * 43})).code == 400
    assert (await ann.get("/email")).json()["email_verified"] is False


@pytest.mark.gen_test(timeout=30)
async def test_a_link_for_an_address_since_changed_verifies_nothing(api, make_user, logged_in, smtp_server):
    await make_user("ann", email="ann@example.com")
    ann = await logged_in("ann")
    await ann.post("/email/verify-request", json={})
    token = token_in((await smtp_server.wait_for(1))[0], "verify")
    assert (await ann.put("/email", json={"email": "ann@elsewhere.example", "pwd": DEFAULT_PASSWORD})).json() == {"email": "ann@elsewhere.example", "email_verified": False}
    assert (await api.post("/email/verify", json={"token": token})).code == 400
    assert (await ann.get("/email")).json() == {"email": "ann@elsewhere.example", "email_verified": False}


@pytest.mark.gen_test(timeout=30)
async def test_put_email_sets_and_changes_the_address(api, make_user, logged_in):
    await make_user("bob", email="bob@example.com")
    ann = await logged_in("ann")
    assert (await ann.get("/email")).json() == {"email": None, "email_verified": False}
    set_ = await ann.put("/email", json={"email": "ANN@example.com"})  # a sign-in moments ago: nothing more asked
    assert set_.json() == {"email": "ann@example.com", "email_verified": False}
    other = await ann.put("/email", json={"email": "Bob@Example.com"})
    assert other.json() == {"email": "bob@example.com", "email_verified": False}  # no refusal: an unverified address is nobody's
    bad = await ann.put("/email", json={"email": "not an address"})
    assert bad.code == 400 and bad.json()["message"].startswith("Invalid email address")
    wrong = await ann.put("/email", json={"email": "ann@example.com", "pwd": "not the password"})
    assert (wrong.code, wrong.json()) == (400, {"message": "Current password is incorrect."})  # a password given is checked
    assert (await ann.get("/email")).json()["email"] == "bob@example.com"
    assert (await api.put("/email", json={"email": "x@example.com"})).code == 401


@pytest.mark.gen_test(timeout=30)
async def test_a_sign_in_older_than_the_reauth_window_needs_the_password(api, make_user, tokens, turnstile_settings):
    """The address is where reset links go: a token refreshed long after its sign-in (a stolen refresh cookie) must
    not move it without the password."""
    await make_user("ann")
    old = tokens.issue(ACCESS, "ann", roles=[2001], amr=["pwd"], auth_time=int(time.time()) - turnstile_settings.reauth_window - 5)
    headers = {"Authorization": f"Bearer {old}"}
    refused = await api.put("/email", json={"email": "ann@example.com"}, headers=headers)
    assert (refused.code, refused.json()) == (400, {"message": "Your sign-in is not recent: give your current password ('pwd'), or sign in again."})
    assert (await api.get("/email", headers=headers)).json()["email"] is None
    done = await api.put("/email", json={"email": "ann@example.com", "pwd": DEFAULT_PASSWORD}, headers=headers)
    assert done.json() == {"email": "ann@example.com", "email_verified": False}


@pytest.mark.gen_test(timeout=30)
@pytest.mark.settings(login_max_failures=2)
async def test_wrong_passwords_on_put_email_are_throttled(make_user, logged_in):
    ann = await logged_in("ann")
    codes = [(await ann.put("/email", json={"email": "a@example.com", "pwd": f"guess {i}"})).code for i in range(3)]
    assert codes == [400, 400, 429]
    locked = await ann.put("/email", json={"email": "a@example.com", "pwd": DEFAULT_PASSWORD})
    assert locked.code == 429 and int(locked.headers["Retry-After"]) > 0  # even the right one, while locked


@pytest.mark.gen_test(timeout=30)
async def test_an_address_verified_by_another_account_gets_no_link(app, make_user, logged_in, smtp_server):
    await make_user("bob", email="shared@example.com")
    assert await app.services.accounts.mark_email_verified("bob", "shared@example.com")
    await make_user("ann", email="shared@example.com")
    ann = await logged_in("ann")
    assert (await ann.post("/email/verify-request", json={})).code == 202  # the same answer as ever
    await settled(app)
    assert smtp_server.messages == []


@pytest.mark.gen_test(timeout=30)
async def test_verify_request_needs_an_unverified_address(app, make_user, logged_in, smtp_server):
    ann = await logged_in("ann")
    none = await ann.post("/email/verify-request", json={})
    assert (none.code, none.json()["message"]) == (400, "Your account has no email address; set one with PUT /email first.")
    await ann.put("/email", json={"email": "ann@example.com", "pwd": DEFAULT_PASSWORD})
    await app.services.accounts.mark_email_verified("ann", "ann@example.com")
    done = await ann.post("/email/verify-request", json={})
    assert (done.code, done.json()["message"]) == (400, "Your email address is already verified.")
    await settled(app)
    assert smtp_server.messages == []


@pytest.mark.gen_test(timeout=30)
async def test_leaving_a_verified_address_tells_it(app, make_user, logged_in, smtp_server):
    """Whoever holds a stolen access token could move the account to their own address: the old one hears of it."""
    await make_user("ann", email="ann@example.com")
    await app.services.accounts.mark_email_verified("ann", "ann@example.com")
    ann = await logged_in("ann")
    assert (await ann.put("/email", json={"email": "thief@evil.example", "pwd": DEFAULT_PASSWORD})).code == 200
    (notice,) = await smtp_server.wait_for(1)
    assert (notice["To"], notice["Subject"]) == ("ann@example.com", "Your email address was changed")
    text = notice.get_body(("plain",)).get_content()
    assert "t***f@evil.example" in text and "thief@" not in text and "http" not in text
    assert (await ann.put("/email", json={"email": "again@evil.example", "pwd": DEFAULT_PASSWORD})).code == 200  # from an unverified one: no notice
    await settled(app)
    assert len(smtp_server.messages) == 1
