"""Second factors on the user record: changed in one transaction, shown to admins, removed by `user mfa-reset`."""

from __future__ import annotations

import asyncio

import pytest

from core.plugin import ADMIN


@pytest.mark.gen_test
async def test_update_factors_is_read_modify_write_in_one_transaction(app, make_user):
    accounts = app.services.accounts
    await make_user("ann")

    def add_one(factors):
        factors["counter"] = {"n": (factors.get("counter") or {"n": 0})["n"] + 1}
        return factors

    await asyncio.gather(*(accounts.update_factors("ann", add_one) for _ in range(12)))
    assert (await accounts.factors("ann"))["counter"] == {"n": 12}
    assert await accounts.update_factors("nobody", add_one) is None
    assert await accounts.update_factors("ann", lambda f: None) == {"counter": {"n": 12}}  # None: unchanged


@pytest.mark.gen_test
async def test_admins_see_which_factors_a_user_has(make_user, logged_in, app):
    await make_user("ann")
    await app.services.accounts.update_factors("ann", lambda f: {"totp": {"secret": "sealed"}, "passkeys": [{"id": "x"}], "recovery_codes": {}})
    boss = await logged_in("boss", roles=[ADMIN])
    users = {u["username"]: u for u in (await boss.get("/users")).json()}
    assert users["ann"]["factors"] == ["passkeys", "totp"]  # an empty entry is no factor
    assert users["boss"]["factors"] == []
    assert "sealed" not in str(users)
    assert (await boss.get("/users/ann")).json()["factors"] == ["passkeys", "totp"]


@pytest.mark.gen_test(timeout=60)
async def test_mfa_reset_removes_every_factor_and_keeps_the_rest(app, make_user, logged_in, run_cli):
    await make_user("ann")
    ann = await logged_in("ann")
    await app.services.accounts.update_factors("ann", lambda f: {"totp": {"secret": "sealed"}, "passkeys": [{"id": "x"}]})
    code, out, err = await run_cli("user", "list")
    assert code == 0 and "\tfactors=passkeys,totp" in out, err
    code, out, err = await run_cli("user", "mfa-reset", "ann")
    assert (code, out) == (0, "ann: second factors removed (passkeys, totp); password and sessions unchanged\n"), err
    assert await app.services.accounts.factors("ann") == {}
    assert (await ann.refresh()).code == 200  # the session stays
    code, _, err = await run_cli("user", "mfa-reset", "nobody")
    assert (code, err) == (1, "turnstile: no user nobody\n")
