"""Email addresses on accounts: optional at registration, validated, lower-cased, unique, shown to admins."""

from __future__ import annotations

import asyncio

import pytest

from core.plugin import ADMIN, EmailInUse, check_email


@pytest.mark.gen_test
async def test_register_with_an_email_stores_it_lower_cased_and_unverified(api, app):
    response = await api.post("/register", json={"user": "ann", "pwd": "long-enough-1", "email": "Ann.Lee@Example.COM"})
    assert response.code == 201
    user = await app.services.accounts.user("ann")
    assert (user["email"], user["email_verified"]) == ("ann.lee@example.com", False)
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
async def test_an_address_is_unique_in_any_case(api, make_user):
    await make_user("ann", email="ann@example.com")
    response = await api.post("/register", json={"user": "ann2", "pwd": "long-enough-1", "email": "ANN@example.com"})
    assert (response.code, response.json()) == (409, {"message": "Email address is already in use."})


@pytest.mark.gen_test(timeout=30)
async def test_racing_registrations_give_an_address_to_one_account(api, app):
    responses = await asyncio.gather(
        *(api.post("/register", json={"user": f"racer{i}", "pwd": "long-enough-1", "email": "same@example.com"}) for i in range(6))
    )
    assert sorted(r.code for r in responses) == [201] + [409] * 5
    owners = [u["username"] for u in await app.services.accounts.users() if u["email"] == "same@example.com"]
    assert len(owners) == 1


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
    assert (await accounts.set_email("bob", "ann@example.com"))["email"] == "ann@example.com"  # freed
    with pytest.raises(EmailInUse):
        await accounts.set_email("bob", "ann@new.example.com")
    assert not await accounts.mark_email_verified("ann", "ann@example.com")  # a link to an address no longer hers


@pytest.mark.gen_test
async def test_deleting_a_user_frees_the_address(api, app, make_user):
    await make_user("ann", email="ann@example.com")
    assert await app.services.accounts.delete_user("ann") == 0
    assert (await api.post("/register", json={"user": "zed", "pwd": "long-enough-1", "email": "ann@example.com"})).code == 201


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
