"""Recovery codes (plugins/mfa/codes.py): 80 random bits each, stored only as hashes, each good once; a new set
voids the old. Both store backends."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time

import pytest
from mfa_kit import code_at, store_dump

from core.plugin import Accounts
from core.pytest_plugin import DEFAULT_PASSWORD
from plugins.mfa import codes as recovery

CODE_SHAPE = re.compile(r"^[a-z2-7]{4}(-[a-z2-7]{4}){3}$")


async def turn_on(client) -> tuple[str, list[str]]:
    secret = (await client.post("/mfa/totp", json={"pwd": DEFAULT_PASSWORD})).json()["secret"]
    confirmed = await client.post("/mfa/totp/confirm", json={"code": code_at(secret)})
    assert confirmed.code == 200, confirmed.text
    return secret, confirmed.json()["recoveryCodes"]


async def with_codes(store, name: str = "ann") -> tuple[Accounts, list[str]]:
    accounts = await Accounts.open(store)
    await accounts.create_user(name, "not-a-hash", [2001])
    return accounts, await recovery.regenerate(accounts, name)


# -- the codes --------------------------------------------------------------------------------


def test_codes_are_80_random_bits_shown_in_groups_and_hashed_normalized():
    codes, hashes = recovery.new_codes()
    assert len(codes) == 10 == len(set(codes))
    assert all(CODE_SHAPE.match(code) for code in codes)
    assert len(recovery.normalize(codes[0])) * 5 == 80
    assert hashes == [hashlib.sha256(code.replace("-", "").upper().encode()).hexdigest() for code in codes]
    typed = "  " + codes[0].upper().replace("-", " ") + "\n"
    assert recovery.hash_code(typed) == hashes[0], "typed in capitals, with spaces for dashes: the same code"
    assert len(recovery.new_codes(3)[0]) == 3


@pytest.mark.gen_test
async def test_a_code_is_good_once(open_store):
    async with open_store() as store:
        accounts, codes = await with_codes(store)
        await accounts.create_user("bob", "not-a-hash", [2001])
        assert not await recovery.use_code(accounts, "bob", codes[0]), "another user's code"
        assert await recovery.use_code(accounts, "ann", codes[0])
        assert not await recovery.use_code(accounts, "ann", codes[0])
        assert recovery.codes_left(await accounts.factors("ann")) == 9
        assert await recovery.use_code(accounts, "ANN", codes[1].upper())
        for bad in ("", "aaaa-bbbb-cccc-dddd", "123456", codes[2][:-1], codes[2] + "a"):
            assert not await recovery.use_code(accounts, "ann", bad)
        assert recovery.codes_left(await accounts.factors("ann")) == 8
        assert not await recovery.use_code(accounts, "nobody", codes[2])


@pytest.mark.gen_test(timeout=30)
async def test_one_code_sent_at_once_on_two_instances_is_spent_once(open_store):
    async with open_store() as one, open_store() as two:
        accounts, codes = await with_codes(one)
        both = [accounts, await Accounts.open(two)]
        results = await asyncio.gather(*(recovery.use_code(both[i % 2], "ann", codes[0]) for i in range(8)))
        assert sum(results) == 1


@pytest.mark.gen_test
async def test_a_new_set_voids_the_old_and_only_hashes_are_stored(open_store):
    async with open_store() as store:
        accounts, old = await with_codes(store)
        new = await recovery.regenerate(accounts, "ann")
        assert len(new) == 10 and not set(new) & set(old)
        assert not await recovery.use_code(accounts, "ann", old[0])
        assert await recovery.use_code(accounts, "ann", new[0])
        dump = await store_dump(store)
        for code in old + new:
            assert code not in dump and recovery.normalize(code) not in dump
        assert await recovery.regenerate(accounts, "nobody") == []


# -- over HTTP ------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_a_recovery_code_renews_the_set_once(logged_in):
    alice = await logged_in("alice")
    _, codes = await turn_on(alice)
    renewed = await alice.post("/mfa/recovery-codes", json={"code": codes[0]})
    assert renewed.code == 200
    new = renewed.json()["recoveryCodes"]
    assert len(new) == 10 and not set(new) & set(codes) and all(CODE_SHAPE.match(c) for c in new)
    assert (await alice.get("/mfa")).json()["recoveryCodesLeft"] == 10
    assert (await alice.post("/mfa/recovery-codes", json={"code": codes[0]})).code == 400, "spent"
    assert (await alice.post("/mfa/recovery-codes", json={"code": codes[1]})).code == 400, "voided by the new set"
    assert (await alice.delete("/mfa/totp", json={"code": codes[2]})).code == 400
    assert (await alice.delete("/mfa/totp", json={"code": new[5]})).code == 204


@pytest.mark.gen_test
async def test_a_totp_code_renews_the_set_and_a_used_recovery_code_is_gone(logged_in):
    alice = await logged_in("alice")
    secret, codes = await turn_on(alice)
    assert (await alice.delete("/mfa/totp", json={"code": "zzzz-zzzz-zzzz-zzzz"})).code == 400
    renewed = await alice.post("/mfa/recovery-codes", json={"code": code_at(secret, time.time() + 30)})
    assert renewed.code == 200
    assert (await alice.get("/mfa")).json() == {"totp": True, "passkeys": [], "recoveryCodesLeft": 10}
    wrong = str((int(code_at(secret)) + 500_000) % 1_000_000).zfill(6)
    assert (await alice.post("/mfa/recovery-codes", json={"code": wrong})).code == 400


@pytest.mark.gen_test
async def test_each_use_counts_down_and_without_totp_there_is_nothing_to_renew(logged_in, app):
    alice = await logged_in("alice")
    assert (await alice.post("/mfa/recovery-codes", json={"code": "123456"})).code == 409
    _, codes = await turn_on(alice)
    accounts = app.services.accounts
    assert await recovery.use_code(accounts, "alice", codes[0])  # as the sign-in step spends one
    assert (await alice.get("/mfa")).json()["recoveryCodesLeft"] == 9
    assert (await alice.delete("/mfa/totp", json={"code": codes[0]})).code == 400
    assert (await alice.delete("/mfa/totp", json={"code": codes[1]})).code == 204
    assert (await alice.post("/mfa/recovery-codes", json={"code": codes[2]})).code == 409
    assert (await alice.get("/mfa")).json()["recoveryCodesLeft"] == 0


@pytest.mark.gen_test
async def test_passkeys_are_listed_from_the_factors(logged_in, app):
    alice = await logged_in("alice")
    key = {"id": "cred-1", "name": "laptop", "created": 1700000000, "lastUsed": None, "publicKey": "not shown", "signCount": 3}
    await app.services.accounts.update_factors("alice", lambda factors: {**factors, "passkeys": [key]})
    assert (await alice.get("/mfa")).json() == {
        "totp": False,
        "passkeys": [{"id": "cred-1", "name": "laptop", "created": 1700000000, "lastUsed": None}],
        "recoveryCodesLeft": 0,
    }
