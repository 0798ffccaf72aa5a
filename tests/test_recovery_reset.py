"""Forgotten password: the reset link arrives by SMTP, works once, ends every session; nothing tells who exists."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from recovery_kit import body, settled, token_in, with_smtp

from core.pytest_plugin import DEFAULT_PASSWORD

NEW = "a-brand-new-password"
FORGOT_ANSWER = {"message": "If that account exists and has a verified email address, a link to reset its password is on its way."}
REFUSED = {"message": "This link is invalid or has expired; ask for a new one."}


@pytest.fixture
def turnstile_settings(turnstile_settings, smtp_server):
    return with_smtp(turnstile_settings, smtp_server.port)


async def verified_user(app, make_user, name="ann", email="ann@example.com"):
    await make_user(name, email=email)
    assert await app.services.accounts.mark_email_verified(name, email)


async def reset_token(api, smtp_server, n=1, **who):
    response = await api.post("/password/forgot", json=who)
    assert (response.code, response.json()) == (202, FORGOT_ANSWER)
    return token_in((await smtp_server.wait_for(n))[n - 1], "reset")


@pytest.mark.gen_test(timeout=30)
async def test_forgot_then_reset_changes_the_password_and_ends_every_session(api, app, make_user, logged_in, smtp_server):
    await verified_user(app, make_user)
    ann = await logged_in("ann")  # a session from before the reset
    token = await reset_token(api, smtp_server, user="ann")
    mail = smtp_server.messages[0]
    assert (mail["To"], mail["Subject"]) == ("ann@example.com", "Reset your password")
    assert "30 minutes" in body(mail) and "ann" in body(mail)
    assert (await api.post("/password/reset", json={"token": token, "newPwd": NEW})).code == 204
    assert (await api.post("/auth", json={"user": "ann", "pwd": DEFAULT_PASSWORD})).code == 401
    assert (await api.post("/auth", json={"user": "ann", "pwd": NEW})).code == 200
    assert (await ann.refresh()).code == 403  # the old refresh cookie: its session ended


@pytest.mark.gen_test(timeout=30)
async def test_forgot_by_email_in_any_case(api, app, make_user, smtp_server):
    await verified_user(app, make_user)
    token = await reset_token(api, smtp_server, email="ANN@example.com")
    assert (await api.post("/password/reset", json={"token": token, "newPwd": NEW})).code == 204


@pytest.mark.gen_test(timeout=30)
async def test_a_reset_token_works_once(api, app, make_user, smtp_server):
    await verified_user(app, make_user)
    token = await reset_token(api, smtp_server, user="ann")
    assert (await api.post("/password/reset", json={"token": token, "newPwd": NEW})).code == 204
    again = await api.post("/password/reset", json={"token": token, "newPwd": "yet-another-password"})
    assert (again.code, again.json()) == (400, REFUSED)
    assert (await api.post("/auth", json={"user": "ann", "pwd": NEW})).code == 200


@pytest.mark.gen_test(timeout=30)
async def test_an_expired_reset_token_is_refused(api, app, make_user, smtp_server):
    await verified_user(app, make_user)
    token = await reset_token(api, smtp_server, user="ann")
    tokens = app.services.store.collection("recovery.tokens")
    for key, doc in await tokens.items():
        assert doc["expires"] - doc["created"] == 30 * 60  # RESET_TOKEN_TTL's default
        await tokens.update(key, {"expires": doc["created"] - 1})
    response = await api.post("/password/reset", json={"token": token, "newPwd": NEW})
    assert (response.code, response.json()) == (400, REFUSED)


@pytest.mark.gen_test(timeout=30)
async def test_an_unknown_token_gets_the_same_answer(api):
    for token in ("x", "A" * 43, "not-a-token-at-all"):
        response = await api.post("/password/reset", json={"token": token, "newPwd": NEW})
        assert (response.code, response.json()) == (400, REFUSED)


@pytest.mark.gen_test(timeout=30)
async def test_an_unknown_user_gets_the_same_answer_and_no_mail(api, app, make_user, smtp_server):
    await verified_user(app, make_user)
    known = await api.post("/password/forgot", json={"user": "ann"})
    unknown = await api.post("/password/forgot", json={"user": "nobody"})
    unknown_email = await api.post("/password/forgot", json={"email": "nobody@example.com"})
    assert known.code == unknown.code == unknown_email.code == 202
    assert known.body == unknown.body == unknown_email.body
    assert set(known.headers) == set(unknown.headers)
    await settled(app)
    assert [m["To"] for m in smtp_server.messages] == ["ann@example.com"]


@pytest.mark.gen_test(timeout=30)
async def test_an_unverified_address_gets_no_mail(api, app, make_user, smtp_server):
    await make_user("ann", email="ann@example.com")
    for who in ({"user": "ann"}, {"email": "ann@example.com"}):
        response = await api.post("/password/forgot", json=who)
        assert (response.code, response.json()) == (202, FORGOT_ANSWER)
    await make_user("bob")  # no address at all
    assert (await api.post("/password/forgot", json={"user": "bob"})).code == 202
    await settled(app)
    assert smtp_server.messages == []


@pytest.mark.gen_test(timeout=30)
async def test_a_new_request_voids_the_earlier_link(api, app, make_user, smtp_server):
    await verified_user(app, make_user)
    first = await reset_token(api, smtp_server, 1, user="ann")
    second = await reset_token(api, smtp_server, 2, user="ann")
    assert (await api.post("/password/reset", json={"token": first, "newPwd": NEW})).code == 400
    assert (await api.post("/password/reset", json={"token": second, "newPwd": NEW})).code == 204


@pytest.mark.gen_test(timeout=30)
async def test_a_password_change_voids_the_link(api, app, make_user, logged_in, smtp_server):
    await verified_user(app, make_user)
    token = await reset_token(api, smtp_server, user="ann")
    ann = await logged_in("ann")
    assert (await ann.post("/password", json={"pwd": DEFAULT_PASSWORD, "newPwd": "changed-by-ann"})).code == 204
    assert (await api.post("/password/reset", json={"token": token, "newPwd": NEW})).code == 400
    assert (await api.post("/auth", json={"user": "ann", "pwd": "changed-by-ann"})).code == 200


@pytest.mark.gen_test(timeout=60)
async def test_user_passwd_voids_the_link(api, app, make_user, smtp_server, run_cli):
    await verified_user(app, make_user)
    token = await reset_token(api, smtp_server, user="ann")
    code, _, err = await run_cli("user", "passwd", "ann", stdin="set-by-the-operator\n")
    assert code == 0, err
    assert (await api.post("/password/reset", json={"token": token, "newPwd": NEW})).code == 400


@pytest.mark.gen_test(timeout=30)
async def test_the_new_password_follows_the_registration_rules(api, app, make_user, smtp_server):
    await verified_user(app, make_user)
    token = await reset_token(api, smtp_server, user="ann")
    short = await api.post("/password/reset", json={"token": token, "newPwd": "short"})
    assert (short.code, short.json()) == (400, {"message": "Password must be at least 8 characters."})
    long = await api.post("/password/reset", json={"token": token, "newPwd": "é" * 40})
    assert (long.code, long.json()) == (400, {"message": "Password must be at most 72 bytes."})
    assert (await api.post("/password/reset", json={"token": token, "newPwd": NEW})).code == 204  # not used up by the refusals


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize(
    "payload, message",
    [
        ({}, "Give either 'user' or 'email'."),
        ({"user": "ann", "email": "ann@example.com"}, "Give either 'user' or 'email'."),
        ({"user": ""}, "Field 'user' is required."),
        ({"user": "   "}, "Field 'user' is required."),
        ({"email": "nope"}, None),
        ({"name": "ann"}, "Unknown field 'name'."),
    ],
)
async def test_malformed_forgot_requests_are_400(api, payload, message):
    response = await api.post("/password/forgot", json=payload)
    assert response.code == 400
    if message:
        assert response.json() == {"message": message}
    else:
        assert response.json()["message"].startswith("Invalid email address")


@pytest.mark.gen_test(timeout=30)
async def test_the_store_holds_only_the_tokens_sha256(api, app, make_user, smtp_server):
    await verified_user(app, make_user)
    token = await reset_token(api, smtp_server, user="ann")
    await settled(app)
    stored = await app.services.store.collection("recovery.tokens").items()
    assert [key for key, _ in stored] == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in repr(stored)
    assert await app.services.store.collection("recovery.mail_queue").count() == 0


@pytest.mark.gen_test(timeout=30)
async def test_a_link_dies_when_its_address_is_changed_even_back(api, app, make_user, logged_in, smtp_server):
    """X, then Y, then X again: X is unverified now, so a link mailed to X while it was verified opens nothing."""
    await verified_user(app, make_user)
    token = await reset_token(api, smtp_server, user="ann")
    ann = await logged_in("ann")
    for address in ("ann@elsewhere.example", "ann@example.com"):
        assert (await ann.put("/email", json={"email": address, "pwd": DEFAULT_PASSWORD})).code == 200
    response = await api.post("/password/reset", json={"token": token, "newPwd": NEW})
    assert (response.code, response.json()) == (400, REFUSED)


@pytest.mark.gen_test(timeout=30)
async def test_concurrent_resets_with_one_token_change_the_password_once(api, app, make_user, smtp_server):
    await verified_user(app, make_user)
    token = await reset_token(api, smtp_server, user="ann")
    answers = await asyncio.gather(*(api.post("/password/reset", json={"token": token, "newPwd": f"{NEW}-{i}"}) for i in range(5)))
    assert sorted(a.code for a in answers) == [204, 400, 400, 400, 400]
    winner = next(i for i, a in enumerate(answers) if a.code == 204)
    assert (await api.post("/auth", json={"user": "ann", "pwd": f"{NEW}-{winner}"})).code == 200


@pytest.mark.gen_test(timeout=30)
async def test_a_user_stored_with_capitals_by_an_earlier_build_gets_the_link(api, app, smtp_server):
    """Earlier builds kept the name as typed ("Alice"); asking by name in any case still finds that account."""
    hashed = await app.services.passwords.hash(DEFAULT_PASSWORD)
    await app.services.store.collection("auth.users").insert(
        {"username": "Alice", "password": hashed, "roles": [2001], "created": 1, "email": "alice@example.com", "email_verified": False},
        key="Alice",
    )
    assert await app.services.accounts.mark_email_verified("Alice", "alice@example.com")
    token = await reset_token(api, smtp_server, user="Alice")
    assert (await api.post("/password/reset", json={"token": token, "newPwd": NEW})).code == 204
    assert (await api.post("/auth", json={"user": "Alice", "pwd": NEW})).code == 200

