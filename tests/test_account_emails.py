"""Email addresses on accounts: optional at registration, validated, lower-cased, owned once verified, shown to admins."""

from __future__ import annotations

import asyncio

import pytest

from core.plugin import ADMIN, check_email


@pytest.mark.gen_test
async def test_register_with_an_email_stores_it_lower_cased_and_unverified(api, app):
    response = await api.post("/register", json={"user": "ann", "pwd": "long-enough-1", "email": "Ann.Lee@Example.COM"})
    assert response.code == 201
    user = await app.services.accounts.user("ann")
    assert (user["email"], user["email_verified"]) == ("ann.lee@example.com", False)
    assert await app.services.accounts.user_by_email("ann.lee@example.com") is None  # nobody's until verified
    assert await app.services.accounts.mark_email_verified("ann", "ann.lee@example.com")
    assert (await app.services.accounts.user_by_email("ann.lee@example.com"))["username"] == "ann"


@pytest.mark.gen_test
async def test_register_without_an_email_is_as_before(api, app):
    assert (await api.post("/register", json={"user": "bob", "pwd": "long-enough-1"})).code == 201
    assert (await api.post("/register", json={"user": "cy", "pwd": "long-enough-1", "email": ""})).code == 201
    assert (await app.services.accounts.user("bob")).get("email") is None
    assert (await app.services.accounts.user("cy")).get("email") is None


@pytest.mark.gen_test
@pytest.mark.parametrize("address", ["no-at-sign", "two@@example.com", "a@b", "x@-example.com", "ann@example.com\n"])
async def test_an_invalid_address_is_400_naming_it_and_creates_nobody(api, app, address):
    response = await api.post("/register", json={"user": "ann", "pwd": "long-enough-1", "email": address})
    assert response.code == 400
    assert response.json()["message"].startswith("Invalid email address: ")
    assert await app.services.accounts.user("ann") is None


@pytest.mark.gen_test
async def test_an_unverified_address_claims_nothing_and_tells_nothing(api, app, make_user):
    """Registering with an address another account has is no refusal: nothing says who has it, and nobody can squat
    an address they cannot read mail at. It belongs to whoever verifies it first."""
    accounts = app.services.accounts
    await make_user("ann", email="ann@example.com")
    response = await api.post("/register", json={"user": "mallory", "pwd": "long-enough-1", "email": "ANN@example.com"})
    assert response.code == 201
    assert await accounts.mark_email_verified("ann", "ann@example.com")
    assert not await accounts.mark_email_verified("mallory", "ann@example.com")  # verified by ann first
    assert (await accounts.user_by_email("ann@example.com"))["username"] == "ann"
    assert (await accounts.user("mallory"))["email_verified"] is False


@pytest.mark.gen_test(timeout=30)
async def test_racing_verifications_give_an_address_to_one_account(app, make_user):
    accounts = app.services.accounts
    for i in range(6):
        await make_user(f"racer{i}", email="same@example.com")
    results = await asyncio.gather(*(accounts.mark_email_verified(f"racer{i}", "same@example.com") for i in range(6)))
    assert sorted(results) == [False] * 5 + [True]
    owners = [u["username"] for u in await accounts.users() if u["email"] == "same@example.com" and u["email_verified"]]
    assert len(owners) == 1 and (await accounts.user_by_email("same@example.com"))["username"] == owners[0]


@pytest.mark.gen_test
async def test_an_international_domain_is_kept_as_punycode_and_a_non_ascii_local_part_refused(api, app):
    assert check_email("Ann@Bücher.example") == "ann@xn--bcher-kva.example"
    response = await api.post("/register", json={"user": "ix", "pwd": "long-enough-1", "email": "İx@example.com"})
    assert response.code == 400 and "Internationalized characters before the @-sign" in response.json()["message"]


@pytest.mark.gen_test
async def test_no_dns_lookup_is_needed(app):
    """Syntax only: a domain that does not exist is accepted, so a check never waits on the network."""
    assert check_email("Someone@No-Such-Domain-zq9x7.com") == "someone@no-such-domain-zq9x7.com"


@pytest.mark.gen_test
async def test_changing_an_address_frees_the_old_one_and_unverifies(app, make_user):
    accounts = app.services.accounts
    await make_user("ann", email="ann@example.com")
    await make_user("bob")
    assert await accounts.mark_email_verified("ann", "ann@example.com")
    assert (await accounts.set_email("ann", "ann@example.com"))["email_verified"] is True  # the same address: unchanged
    changed = await accounts.set_email("ann", "ann@new.example.com")
    assert (changed["email"], changed["email_verified"]) == ("ann@new.example.com", False)
    assert await accounts.user_by_email("ann@example.com") is None
    await accounts.set_email("bob", "ann@example.com")
    assert await accounts.mark_email_verified("bob", "ann@example.com")  # freed, so bob may own it now
    assert not await accounts.mark_email_verified("ann", "ann@example.com")  # a link to an address no longer hers


@pytest.mark.gen_test
async def test_deleting_a_user_frees_the_address(api, app, make_user):
    accounts = app.services.accounts
    await make_user("ann", email="ann@example.com")
    assert await accounts.mark_email_verified("ann", "ann@example.com")
    assert await accounts.delete_user("ann") == 0
    assert await accounts.user_by_email("ann@example.com") is None
    await make_user("zed", email="ann@example.com")
    assert await accounts.mark_email_verified("zed", "ann@example.com")


@pytest.mark.gen_test
async def test_admins_see_email_and_verification(api, app, make_user, logged_in):
    await make_user("ann", email="ann@example.com")
    await app.services.accounts.mark_email_verified("ann", "ann@example.com")
    boss = await logged_in("boss", roles=[ADMIN])
    users = {u["username"]: u for u in (await boss.get("/users")).json()}
    assert (users["ann"]["email"], users["ann"]["email_verified"]) == ("ann@example.com", True)
    assert (users["boss"]["email"], users["boss"]["email_verified"]) == (None, False)
    assert "password" not in users["ann"]


@pytest.mark.gen_test(timeout=60)
async def test_user_list_shows_email_and_verification(app, make_user, run_cli):
    await make_user("ann", email="ann@example.com")
    await make_user("bob")
    code, out, err = await run_cli("user", "list")
    assert code == 0, err
    lines = {line.split("\t")[0]: line for line in out.splitlines()}
    assert "\temail=ann@example.com (unverified)\t" in lines["ann"]
    assert "\temail=-\t" in lines["bob"]
