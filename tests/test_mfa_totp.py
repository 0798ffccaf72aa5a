"""TOTP as a second factor (plugins/mfa): enrol, confirm, the ±1-step window, no code accepted twice, disable,
throttled guesses, and the secret kept sealed in the data and out of the logs. Both store backends."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from clock_kit import Clock
from mfa_kit import code_at, data_files_text, secret_of, store_dump

from core.plugin import Accounts, SecretBox
from core.pytest_plugin import DEFAULT_PASSWORD
from plugins.mfa import codes as recovery
from plugins.mfa.totp import NoEnrolment, TOTPAlreadyOn, TOTPFactor, TOTPNotOn

CODE_SHAPE = re.compile(r"^[a-z2-7]{4}(-[a-z2-7]{4}){3}$")
STEP = 30


async def turn_on(client) -> tuple[str, list[str]]:
    """Enrol and confirm TOTP for the client's user: the secret and the recovery codes."""
    begun = await client.post("/mfa/totp", json={"pwd": DEFAULT_PASSWORD})
    assert begun.code == 200, begun.text
    secret = begun.json()["secret"]
    confirmed = await client.post("/mfa/totp/confirm", json={"code": code_at(secret)})
    assert confirmed.code == 200, confirmed.text
    return secret, confirmed.json()["recoveryCodes"]


async def factor(store, clock: Clock, name: str = "ann") -> TOTPFactor:
    accounts = await Accounts.open(store)
    await accounts.create_user(name, "not-a-hash", [2001])
    return TOTPFactor(accounts, store.namespace("mfa"), SecretBox("test secret", "plugin:mfa:totp"), "Turnstile", clock=clock)


async def on_at(totp: TOTPFactor, clock: Clock, name: str = "ann") -> str:
    """TOTP on for ``name``, confirmed with the code of the clock's step: the secret."""
    secret = (await totp.begin(name))["secret"]
    assert await totp.confirm(name, code_at(secret, clock.now)) is not None
    return secret


# -- over HTTP ------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_enrolment_gives_secret_uri_and_qr_and_changes_nothing_until_confirmed(logged_in, app):
    alice = await logged_in("alice")
    begun = await alice.post("/mfa/totp", json={"pwd": DEFAULT_PASSWORD})
    assert begun.code == 200
    body = begun.json()
    assert set(body) == {"secret", "uri", "qr"}
    assert re.fullmatch(r"[A-Z2-7]{32}", body["secret"])
    uri = urlsplit(body["uri"])
    assert (uri.scheme, uri.netloc, uri.path) == ("otpauth", "totp", "/Turnstile:alice")
    assert parse_qs(uri.query) == {"secret": [body["secret"]], "issuer": ["Turnstile"]}
    assert body["qr"].startswith("data:image/svg+xml") and "svg" in body["qr"]
    assert (await alice.get("/mfa")).json() == {"totp": False, "passkeys": [], "recoveryCodesLeft": 0}
    assert await app.services.accounts.factors("alice") == {}
    assert begun.headers["Cache-Control"] == "no-store"


@pytest.mark.gen_test
async def test_confirm_turns_it_on_with_ten_recovery_codes_and_refuses_a_wrong_code(logged_in):
    alice = await logged_in("alice")
    secret = (await alice.post("/mfa/totp", json={"pwd": DEFAULT_PASSWORD})).json()["secret"]
    wrong = str((int(code_at(secret)) + 1) % 1_000_000).zfill(6)
    for bad in (wrong, "abcdef", "12345"):
        answer = await alice.post("/mfa/totp/confirm", json={"code": bad})
        assert answer.code == 400 and answer.json()["message"] == "Wrong or already used code."
    assert (await alice.get("/mfa")).json()["totp"] is False
    confirmed = await alice.post("/mfa/totp/confirm", json={"code": code_at(secret)})
    assert confirmed.code == 200
    codes = confirmed.json()["recoveryCodes"]
    assert len(codes) == 10 == len(set(codes)) and all(CODE_SHAPE.match(c) for c in codes)
    assert (await alice.get("/mfa")).json() == {"totp": True, "passkeys": [], "recoveryCodesLeft": 10}
    again = await alice.post("/mfa/totp", json={"pwd": DEFAULT_PASSWORD})
    assert again.code == 409, "a new secret would replace the one in use without a code from it"
    assert (await alice.post("/mfa/totp/confirm", json={"code": code_at(secret)})).code == 400  # enrolment used up


@pytest.mark.gen_test
async def test_confirm_without_a_pending_enrolment_is_400(logged_in):
    alice = await logged_in("alice")
    answer = await alice.post("/mfa/totp/confirm", json={"code": "123456"})
    assert answer.code == 400 and "POST /mfa/totp" in answer.json()["message"]


@pytest.mark.gen_test
async def test_the_code_that_confirmed_is_never_accepted_again(logged_in):
    alice = await logged_in("alice")
    secret, _ = await turn_on(alice)
    used = code_at(secret)
    assert (await alice.delete("/mfa/totp", json={"code": used})).code == 400
    assert (await alice.get("/mfa")).json()["totp"] is True
    later = code_at(secret, time.time() + STEP)  # the next step: inside the window, not used yet
    assert (await alice.delete("/mfa/totp", json={"code": later})).code == 204
    assert (await alice.get("/mfa")).json() == {"totp": False, "passkeys": [], "recoveryCodesLeft": 0}


@pytest.mark.gen_test
async def test_disable_with_a_recovery_code_and_refusals(logged_in, app):
    alice = await logged_in("alice")
    assert (await alice.delete("/mfa/totp", json={"code": "123456"})).code == 409  # nothing to turn off
    _, codes = await turn_on(alice)
    assert (await alice.delete("/mfa/totp", json={"code": "aaaa-bbbb-cccc-dddd"})).code == 400
    assert (await alice.get("/mfa")).json()["totp"] is True
    assert (await alice.delete("/mfa/totp", json={"code": codes[3].upper().replace("-", " ")})).code == 204
    assert await app.services.accounts.factors("alice") == {}, "TOTP and the recovery codes are both gone"
    secret, _ = await turn_on(alice)  # and it can be turned on again, with a new secret
    assert (await alice.get("/mfa")).json()["recoveryCodesLeft"] == 10


@pytest.mark.gen_test
async def test_bodies_are_checked_and_a_token_is_needed(logged_in, api):
    alice = await logged_in("alice")
    for body in ({}, {"code": ""}, {"code": "1" * 65}, {"code": 123456}, {"code": "123456", "x": 1}):
        assert (await alice.post("/mfa/totp/confirm", json=body)).code == 400, body
        assert (await alice.delete("/mfa/totp", json=body)).code == 400, body
    assert (await alice.post("/mfa/totp", json={"x": 1})).code == 400
    for method, path in (("GET", "/mfa"), ("POST", "/mfa/totp"), ("POST", "/mfa/totp/confirm"), ("DELETE", "/mfa/totp")):
        assert (await api.request(method, path, json={"code": "123456"} if method != "GET" else None)).code == 401


@pytest.mark.gen_test
@pytest.mark.settings(login_max_failures=3)
async def test_wrong_codes_are_throttled_per_user_with_retry_after(logged_in):
    alice, bob = await logged_in("alice"), await logged_in("bob")
    secret, _ = await turn_on(alice)
    for _ in range(3):
        assert (await alice.delete("/mfa/totp", json={"code": "000000" if code_at(secret) != "000000" else "111111"})).code == 400
    locked = await alice.delete("/mfa/totp", json={"code": code_at(secret, time.time() + STEP)})
    assert locked.code == 429, "while locked even the right code is refused"
    assert int(locked.headers["Retry-After"]) > 0
    assert (await alice.post("/mfa/recovery-codes", json={"code": "123456"})).code == 429
    assert (await alice.get("/mfa")).json()["totp"] is True
    bob_secret = (await bob.post("/mfa/totp", json={"pwd": DEFAULT_PASSWORD})).json()["secret"]  # another user is not locked
    assert (await bob.post("/mfa/totp/confirm", json={"code": code_at(bob_secret)})).code == 200


@pytest.mark.gen_test
@pytest.mark.settings(login_max_failures=3)
async def test_confirm_guesses_are_throttled_too(logged_in):
    alice = await logged_in("alice")
    secret = (await alice.post("/mfa/totp", json={"pwd": DEFAULT_PASSWORD})).json()["secret"]
    wrong = str((int(code_at(secret)) + 500_000) % 1_000_000).zfill(6)
    assert [(await alice.post("/mfa/totp/confirm", json={"code": wrong})).code for _ in range(4)] == [400, 400, 400, 429]


@pytest.mark.gen_test
async def test_the_secret_is_sealed_in_the_data(logged_in, app, turnstile_settings, turnstile_backend):
    alice = await logged_in("alice")
    begun = (await alice.post("/mfa/totp", json={"pwd": DEFAULT_PASSWORD})).json()
    secret = begun["secret"]
    pending = await store_dump(app.services.store)
    assert "mfa.enrolments" in pending and secret not in pending
    confirmed = await alice.post("/mfa/totp/confirm", json={"code": code_at(secret)})
    codes = confirmed.json()["recoveryCodes"]
    stored = await app.services.accounts.factors("alice")
    assert set(stored["totp"]) == {"secret", "last_step", "created"}
    box = SecretBox(turnstile_settings.access_secret, "plugin:mfa:totp")
    assert box.open(stored["totp"]["secret"]).decode() == secret, "what is stored is the secret, sealed"
    everything = await store_dump(app.services.store)
    if turnstile_backend == "json":
        await app.services.store.flush()
        everything += data_files_text(turnstile_settings.data_dir)
    assert secret not in everything and secret.lower() not in everything
    for code in codes:
        assert code not in everything and recovery.normalize(code) not in everything
        assert recovery.hash_code(code) in everything


@pytest.mark.gen_test
@pytest.mark.settings(login_max_failures=3)
async def test_no_secret_uri_or_code_is_logged(logged_in, caplog):
    caplog.set_level(logging.DEBUG)
    alice = await logged_in("alice")
    begun = (await alice.post("/mfa/totp", json={"pwd": DEFAULT_PASSWORD})).json()
    secret = begun["secret"]
    wrong = str((int(code_at(secret)) + 500_000) % 1_000_000).zfill(6)
    await alice.post("/mfa/totp/confirm", json={"code": wrong})
    right = code_at(secret)
    codes = (await alice.post("/mfa/totp/confirm", json={"code": right})).json()["recoveryCodes"]
    await alice.delete("/mfa/totp", json={"code": right})  # replayed: refused
    renewed = (await alice.post("/mfa/recovery-codes", json={"code": codes[0]})).json()["recoveryCodes"]
    await alice.delete("/mfa/totp", json={"code": wrong})
    await alice.delete("/mfa/totp", json={"code": wrong})  # locked: 429
    logged = caplog.text
    assert "TOTP turned on for alice" in logged, "the check reads the plugin's log"
    for value in [secret, begun["uri"], right, wrong, *codes, *renewed]:
        assert value not in logged
    assert secret.lower() not in logged


# -- the factor itself, on a controlled clock ----------------------------------------------------


@pytest.mark.gen_test
async def test_one_step_either_side_is_accepted_two_are_not(open_store):
    clock = Clock(1_700_000_000.0)
    async with open_store() as store:
        totp = await factor(store, clock)
        secret = await on_at(totp, clock)  # confirmed at step s
        clock.now += 10 * STEP  # now at s + 10, nothing used since s
        now = clock.now
        assert not await totp.check("ann", code_at(secret, now - 2 * STEP))
        assert not await totp.check("ann", code_at(secret, now + 2 * STEP))
        assert await totp.check("ann", code_at(secret, now - STEP))
        assert await totp.check("ann", code_at(secret, now))
        assert await totp.check("ann", code_at(secret, now + STEP))


@pytest.mark.gen_test
async def test_a_code_is_accepted_once_and_an_earlier_one_never_after(open_store):
    clock = Clock(1_700_000_000.0)
    async with open_store() as store:
        totp = await factor(store, clock)
        secret = await on_at(totp, clock)
        assert not await totp.check("ann", code_at(secret, clock.now)), "the confirming code is used"
        clock.now += STEP
        code = code_at(secret, clock.now)
        assert await totp.check("ann", code)
        assert not await totp.check("ann", code), "RFC 6238 §5.2: never accepted twice"
        clock.now += STEP / 2  # the same code still within the window: still refused
        assert not await totp.check("ann", code)
        assert await totp.check("ann", code_at(secret, clock.now + STEP))  # the next step...
        assert not await totp.check("ann", code_at(secret, clock.now)), "...makes the one before it unusable"
        assert (await totp.accounts.factors("ann"))["totp"]["last_step"] == int((clock.now + STEP) // STEP)


@pytest.mark.gen_test(timeout=30)
async def test_one_code_sent_at_once_on_two_instances_passes_once(open_store):
    clock = Clock(1_700_000_000.0)
    async with open_store() as one, open_store() as two:
        first = await factor(one, clock)
        second = TOTPFactor(await Accounts.open(two), two.namespace("mfa"), first.box, "Turnstile", clock=clock)
        secret = await on_at(first, clock)
        clock.now += STEP
        code = code_at(secret, clock.now)
        results = await asyncio.gather(*((first, second)[i % 2].check("ann", code) for i in range(8)))
        assert sum(results) == 1


@pytest.mark.gen_test
async def test_enrolment_expires_and_is_pruned(open_store):
    clock = Clock(1_700_000_000.0)
    async with open_store() as store:
        totp = await factor(store, clock)
        secret = (await totp.begin("ann"))["secret"]
        clock.now += 601
        with pytest.raises(NoEnrolment):
            await totp.confirm("ann", code_at(secret, clock.now))
        assert await totp.prune() == 1
        assert await store.collection("mfa.enrolments").count() == 0


@pytest.mark.gen_test
async def test_state_errors(open_store):
    clock = Clock(1_700_000_000.0)
    async with open_store() as store:
        totp = await factor(store, clock)
        with pytest.raises(TOTPNotOn):
            await totp.disable("ann", "123456")
        assert not await totp.check("ann", "123456")
        with pytest.raises(TOTPNotOn):
            await totp.regenerate_codes("ann", "123456")
        secret = await on_at(totp, clock)
        with pytest.raises(TOTPAlreadyOn):
            await totp.begin("ann")
        assert await totp.check("ann", code_at(secret, clock.now + STEP))


@pytest.mark.gen_test
async def test_a_secret_sealed_under_another_server_secret_checks_nothing(open_store, caplog):
    clock = Clock(1_700_000_000.0)
    async with open_store() as store:
        totp = await factor(store, clock)
        secret = await on_at(totp, clock)
        moved = TOTPFactor(totp.accounts, store.namespace("mfa"), SecretBox("rotated", "plugin:mfa:totp"), "Turnstile", clock=clock)
        assert not await moved.check("ann", code_at(secret, clock.now + STEP))
        assert "cannot be opened" in caplog.text and secret not in caplog.text
