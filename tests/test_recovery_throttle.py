"""Mails per hour per username, address and client IP: 429 with Retry-After, shared by every instance on the store."""

from __future__ import annotations

from typing import Any

import pytest
from instance_kit import instance
from recovery_kit import settled, token_in, with_smtp

LIMITS = {"TURNSTILE_RECOVERY_MAILS_PER_USER": "2", "TURNSTILE_RECOVERY_MAILS_PER_ADDRESS": "2", "TURNSTILE_RECOVERY_MAILS_PER_IP": "4"}


@pytest.fixture
def turnstile_settings(turnstile_settings, smtp_server):
    return with_smtp(turnstile_settings, smtp_server.port, **LIMITS)


def refused(response: Any) -> bool:
    if response.code != 429:
        return False
    assert response.json() == {"message": "Too many mails asked for. Try again later."}
    assert 3590 <= int(response.headers["Retry-After"]) <= 3600
    return True


@pytest.mark.gen_test(timeout=30)
async def test_per_username_whether_or_not_the_account_exists(api, app, make_user):
    await make_user("ann", email="ann@example.com")
    await app.services.accounts.mark_email_verified("ann", "ann@example.com")
    for who in ("ann", "nobody"):
        answers = [await api.post("/password/forgot", json={"user": who}) for _ in range(3)]
        assert [a.code for a in answers[:2]] == [202, 202]
        assert refused(answers[2]), who  # the same for an account that does not exist: a 429 tells nothing
    assert (await api.post("/password/forgot", json={"user": "ANN"})).code == 429  # usernames fold


@pytest.mark.gen_test(timeout=30)
async def test_per_address(api):
    answers = [await api.post("/password/forgot", json={"email": "x@example.com"}) for _ in range(3)]
    assert [a.code for a in answers[:2]] == [202, 202] and refused(answers[2])
    assert (await api.post("/password/forgot", json={"email": "X@Example.com"})).code == 429


@pytest.mark.gen_test(timeout=30)
async def test_per_client_ip(api):
    answers = [await api.post("/password/forgot", json={"user": f"user{i}"}) for i in range(5)]
    assert [a.code for a in answers[:4]] == [202] * 4 and refused(answers[4])


@pytest.mark.gen_test(timeout=30)
async def test_verify_requests_per_user(app, make_user, logged_in, smtp_server):
    await make_user("ann", email="ann@example.com")
    ann = await logged_in("ann")
    answers = [await ann.post("/email/verify-request", json={}) for _ in range(3)]
    assert [a.code for a in answers[:2]] == [202, 202] and refused(answers[2])
    await settled(app)
    assert len(smtp_server.messages) == 2


@pytest.mark.gen_test(timeout=30)
async def test_one_mailbox_gets_its_limit_however_it_is_asked_for(api, app, make_user, smtp_server):
    """Asking by username and by address alternately passes both request limits, but the mailbox is capped."""
    await make_user("ann", email="ann@example.com")
    await app.services.accounts.mark_email_verified("ann", "ann@example.com")
    codes = [(await api.post("/password/forgot", json=who)).code for who in ({"user": "ann"}, {"email": "ann@example.com"}, {"user": "ann"})]
    assert codes == [202, 202, 202]
    await settled(app)
    assert len(smtp_server.messages) == 2


@pytest.mark.gen_test(timeout=60)
async def test_two_instances_share_the_limits_and_the_tokens(turnstile_settings, http_client, smtp_server):
    """A second instance on the same store: the counts are the same counts, and a link mailed by one works on the other."""
    async with instance(turnstile_settings, http_client) as one, instance(turnstile_settings, http_client) as two:
        assert (await one.post("/register", json={"user": "ann", "pwd": "long-enough-1", "email": "ann@example.com"})).code == 201
        codes = [(await client.post("/password/forgot", json={"email": "nobody@example.com"})).code for client in (one, two, one)]
        assert codes == [202, 202, 429]
        token = await one.login("ann", "long-enough-1")
        one.use_token(token)
        assert (await one.post("/email/verify-request", json={})).code == 202
        (mail,) = await smtp_server.wait_for(1)
        assert (await two.post("/email/verify", json={"token": token_in(mail, "verify")})).code == 204
        assert (await one.get("/email")).json()["email_verified"] is True
