"""Passkeys (plugins/mfa/passkeys.py and passkey_handlers.py): register, sign in without a password, refusals.

Real WebAuthn responses come from the software authenticator in webauthn_kit;
the routes are the mfa plugin's own.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from clock_kit import Clock
from instance_kit import instance
from webauthn_kit import SoftAuthenticator, b64url, unb64url

from core.config import Settings
from core.plugin import ACCESS, REFRESH_COOKIE, APIError, Namespace
from core.pytest_plugin import DEFAULT_PASSWORD, ApiClient
from plugins.mfa.passkeys import Passkeys

@pytest.fixture
def origin(turnstile_settings: Settings) -> str:
    return f"http://localhost:{turnstile_settings.port}"


@pytest.fixture
def device(origin) -> SoftAuthenticator:
    return SoftAuthenticator(origin)


async def register(client: ApiClient, device: SoftAuthenticator, name: str | None = None, **create: Any) -> dict[str, Any]:
    """Register a passkey of ``client``'s user on ``device``; the 201 body."""
    options = await client.post("/webauthn/register/options", json={"pwd": DEFAULT_PASSWORD})
    assert options.code == 200, options.text
    body = {"credential": device.create(options.json(), **create), **({"name": name} if name else {})}
    response = await client.post("/webauthn/register", json=body)
    assert response.code == 201, response.text
    return response.json()


async def login_options(api: ApiClient) -> dict[str, Any]:
    response = await api.post("/webauthn/login/options", json={})
    assert response.code == 200, response.text
    return response.json()


async def passkey_login(api: ApiClient, device: SoftAuthenticator, **get: Any):
    return await api.post("/webauthn/login", json={"credential": device.get(await login_options(api), **get)})


def assert_refused(response, status: int) -> None:
    assert response.code == status, response.text
    assert "accessToken" not in response.json() and isinstance(response.json()["message"], str)
    assert not response.set_cookies()


# -- register and sign in ---------------------------------------------------------------------


@pytest.mark.gen_test
async def test_register_then_sign_in_without_a_password(app, api, logged_in, device, tokens):
    alice = await logged_in("alice")
    options = await alice.post("/webauthn/register/options", json={"pwd": DEFAULT_PASSWORD})
    assert options.code == 200 and options.headers["Content-Type"].startswith("application/json")
    creation = options.json()
    assert creation["rp"] == {"id": "localhost", "name": "Turnstile"} and creation["user"]["name"] == "alice"
    assert creation["authenticatorSelection"]["residentKey"] == "required"
    assert creation["authenticatorSelection"]["userVerification"] == "required"
    assert creation["excludeCredentials"] == [] and len(unb64url(creation["challenge"])) >= 16
    credential = device.create(creation)
    added = await alice.post("/webauthn/register", json={"credential": credential, "name": "Laptop"})
    assert added.code == 201 and added.json() == {"id": credential["id"], "name": "Laptop"}

    request = await login_options(api)
    assert request["allowCredentials"] == [] and request["userVerification"] == "required" and request["rpId"] == "localhost"
    response = await api.post("/webauthn/login", json={"credential": device.get(request)})
    assert response.code == 200, response.text
    body = response.json()
    assert body["roles"] == [2001]
    claims = tokens.verify(ACCESS, body["accessToken"])
    assert claims["username"] == "alice" and claims["amr"] == ["hwk", "user"]
    assert REFRESH_COOKIE in api.cookies
    assert tokens.verify(ACCESS, (await api.refresh()).json()["accessToken"])["amr"] == ["hwk", "user"]

    [stored] = (await app.services.accounts.factors("alice"))["passkeys"]
    assert stored["id"] == credential["id"] and stored["name"] == "Laptop" and stored["sign_count"] == 1
    assert stored["device_type"] == "single_device" and stored["backed_up"] is False
    assert stored["transports"] == ["internal", "hybrid"] and stored["lastUsed"] >= stored["created"] > 0


@pytest.mark.gen_test
async def test_a_synced_passkey_signs_in_as_a_software_key(app, api, logged_in, origin, tokens):
    phone = SoftAuthenticator(origin, synced=True)
    await register(await logged_in("alice"), phone)
    for _ in range(2):  # a synced passkey's counter stays 0: no clone check, the challenge stops replays
        response = await passkey_login(api, phone)
        assert response.code == 200, response.text
        assert tokens.verify(ACCESS, response.json()["accessToken"])["amr"] == ["swk", "user"]
    [stored] = (await app.services.accounts.factors("alice"))["passkeys"]
    assert stored["device_type"] == "multi_device" and stored["backed_up"] is True and stored["sign_count"] == 0


@pytest.mark.gen_test
async def test_a_passkey_gets_a_default_name_and_the_user_keeps_one_handle(app, logged_in, device, origin):
    alice = await logged_in("alice")
    assert (await register(alice, device))["name"] == "Passkey 1"
    assert (await register(alice, SoftAuthenticator(origin)))["name"] == "Passkey 2"
    handles = {c.user_handle for c in device.credentials.values()}
    assert len(handles) == 1 and b"alice" not in next(iter(handles))
    second = (await alice.post("/webauthn/register/options", json={"pwd": DEFAULT_PASSWORD})).json()
    assert unb64url(second["user"]["id"]) in handles


@pytest.mark.gen_test
async def test_the_users_passkeys_are_excluded_from_a_new_registration(logged_in, device, origin):
    alice = await logged_in("alice")
    first = await register(alice, device)
    second = await register(alice, SoftAuthenticator(origin, synced=True))
    excluded = (await alice.post("/webauthn/register/options", json={"pwd": DEFAULT_PASSWORD})).json()["excludeCredentials"]
    assert sorted(c["id"] for c in excluded) == sorted([first["id"], second["id"]])
    assert all(c["type"] == "public-key" and c["transports"] == ["internal", "hybrid"] for c in excluded)
    with pytest.raises(ValueError, match="InvalidStateError"):
        device.create((await alice.post("/webauthn/register/options", json={"pwd": DEFAULT_PASSWORD})).json())
    bob = await logged_in("bob")
    assert (await bob.post("/webauthn/register/options", json={"pwd": DEFAULT_PASSWORD})).json()["excludeCredentials"] == []


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize("synced", [False, True], ids=["counting", "synced"])
async def test_the_same_assertion_twice_is_refused(api, logged_in, origin, synced):
    """A synced passkey's counter stays 0: the used-up challenge alone must stop the replay."""
    device = SoftAuthenticator(origin, synced=synced)
    await register(await logged_in("alice"), device)
    assertion = device.get(await login_options(api))
    assert (await api.post("/webauthn/login", json={"credential": assertion}, cookies=False)).code == 200
    assert_refused(await api.post("/webauthn/login", json={"credential": assertion}), 401)


@pytest.mark.gen_test
async def test_a_wrong_origin_is_refused(api, logged_in, device):
    alice = await logged_in("alice")
    options = (await alice.post("/webauthn/register/options", json={"pwd": DEFAULT_PASSWORD})).json()
    elsewhere = SoftAuthenticator(device.origin)
    refused = await alice.post("/webauthn/register", json={"credential": elsewhere.create(options, origin="https://evil.example")})
    assert refused.code == 400 and "accessToken" not in refused.json()
    await register(alice, device)
    assert_refused(await passkey_login(api, device, origin="https://evil.example"), 401)
    assert_refused(await passkey_login(api, device, origin="http://localhost:1"), 401)
    assert (await passkey_login(api, device)).code == 200


@pytest.mark.gen_test
async def test_a_counter_that_does_not_go_up_is_refused_as_a_cloned_authenticator(app, api, logged_in, device):
    await register(await logged_in("alice"), device)
    assert (await passkey_login(api, device, sign_count=5)).code == 200
    assert_refused(await passkey_login(api, device, sign_count=3), 401)
    assert_refused(await passkey_login(api, device, sign_count=5), 401)
    assert_refused(await passkey_login(api, device, sign_count=0), 401)
    [stored] = (await app.services.accounts.factors("alice"))["passkeys"]
    assert stored["sign_count"] == 5
    assert (await passkey_login(api, device, sign_count=6)).code == 200


@pytest.mark.gen_test
async def test_user_verification_is_required(api, logged_in, device):
    alice = await logged_in("alice")
    options = (await alice.post("/webauthn/register/options", json={"pwd": DEFAULT_PASSWORD})).json()
    unverified = SoftAuthenticator(device.origin).create(options, user_verified=False)
    assert (await alice.post("/webauthn/register", json={"credential": unverified})).code == 400
    await register(alice, device)
    assert_refused(await passkey_login(api, device, user_verified=False), 401)


@pytest.mark.gen_test
async def test_a_registration_challenge_cannot_sign_in_nor_one_of_another_user_register(api, logged_in, device):
    alice, bob = await logged_in("alice"), await logged_in("bob")
    await register(alice, device)
    creation = (await alice.post("/webauthn/register/options", json={"pwd": DEFAULT_PASSWORD})).json()
    request = {**await login_options(api), "challenge": creation["challenge"]}
    assert_refused(await api.post("/webauthn/login", json={"credential": device.get(request)}), 401)
    bobs = (await bob.post("/webauthn/register/options", json={"pwd": DEFAULT_PASSWORD})).json()
    other = SoftAuthenticator(device.origin)
    assert (await alice.post("/webauthn/register", json={"credential": other.create(bobs)})).code == 400


@pytest.mark.gen_test
async def test_a_passkey_removed_by_mfa_reset_no_longer_signs_in(app, api, logged_in, device):
    await register(await logged_in("alice"), device)
    assert await app.services.accounts.reset_factors("alice")
    assert_refused(await passkey_login(api, device), 401)


@pytest.mark.gen_test
async def test_sign_in_failures_are_throttled_per_address(api, logged_in, device):
    await register(await logged_in("alice"), device)
    for _ in range(20):
        assert (await passkey_login(api, device, origin="https://evil.example")).code == 401
    locked = await passkey_login(api, device)
    assert locked.code == 429 and 0 < int(locked.headers["Retry-After"]) <= 900
    assert "accessToken" not in locked.json()


MALFORMED = [
    {},
    {"id": "AAAA", "rawId": "AAAA", "type": "public-key"},
    {"id": 1, "rawId": 2, "type": "public-key", "response": {}},
    {"id": "AAAA", "rawId": "AAAA", "type": "secret-key", "response": {"clientDataJSON": "e30", "authenticatorData": "", "signature": ""}},
    {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {"clientDataJSON": "!!!", "authenticatorData": "AA", "signature": "AA"}},
    {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {"clientDataJSON": b64url(b"not json"), "authenticatorData": "AA", "signature": "AA", "attestationObject": "AA"}},
    {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {"clientDataJSON": b64url(b'{"type": "webauthn.get", "challenge": 5, "origin": []}'), "authenticatorData": "AA", "signature": "AA", "attestationObject": "AA"}},
    {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {"clientDataJSON": b64url(b"[]"), "authenticatorData": 7, "signature": None, "userHandle": 3}},
]


@pytest.mark.gen_test
@pytest.mark.parametrize("credential", [*MALFORMED, "text", 12, [], None, {f"k{i}": i for i in range(17)}])
async def test_malformed_credentials_get_a_4xx_json_answer(api, logged_in, credential):
    alice = await logged_in("alice")
    for client, path in ((api, "/webauthn/login"), (alice, "/webauthn/register")):
        response = await client.post(path, json={"credential": credential})
        assert response.code == 400, (path, response.text)
        assert isinstance(response.json()["message"], str)


@pytest.mark.gen_test
async def test_well_formed_but_wrong_parts_are_refused_not_errors(api, logged_in, device, origin):
    alice = await logged_in("alice")
    options = (await alice.post("/webauthn/register/options", json={"pwd": DEFAULT_PASSWORD})).json()
    created = SoftAuthenticator(origin).create(options)
    junk = {**created, "response": {**created["response"], "attestationObject": b64url(b"\xa1\x63fmt\x64none")}}
    assert (await alice.post("/webauthn/register", json={"credential": junk})).code == 400
    await register(alice, device)
    assertion = device.get(await login_options(api))
    for broken in (
        {**assertion, "response": {**assertion["response"], "signature": b64url(b"\x30\x02\x01\x01")}},
        {**assertion, "response": {**assertion["response"], "authenticatorData": b64url(b"short")}},
        {**assertion, "rawId": b64url(b"someone else")},
        {**assertion, "response": {**assertion["response"], "userHandle": b64url(b"x" * 64)}},
    ):
        request = await login_options(api)
        fresh = json.loads(json.dumps(broken))
        fresh["response"]["clientDataJSON"] = device.get(request)["response"]["clientDataJSON"]
        response = await api.post("/webauthn/login", json={"credential": fresh})
        assert response.code in (400, 401), response.text


# -- removal --------------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_delete_removes_only_the_callers_own_passkey(app, api, logged_in, device, origin):
    alice, bob = await logged_in("alice"), await logged_in("bob")
    first = await register(alice, device)
    bobs_device = SoftAuthenticator(origin)
    bobs = await register(bob, bobs_device)
    assert (await alice.delete(f"/webauthn/credentials/{bobs['id']}")).code == 404
    assert (await alice.delete("/webauthn/credentials/nosuchcredential")).code == 404
    assert (await passkey_login(api, bobs_device)).code == 200
    assert (await alice.delete(f"/webauthn/credentials/{first['id']}")).code == 204
    assert (await alice.delete(f"/webauthn/credentials/{first['id']}")).code == 404
    assert "passkeys" not in await app.services.accounts.factors("alice")
    assert await Namespace(app.services.store, "mfa").collection("credentials").get(first["id"]) is None
    assert_refused(await passkey_login(api, device), 401)
    assert (await api.delete(f"/webauthn/credentials/{bobs['id']}", cookies=False)).code == 401


# -- the store: challenges and other instances ---------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_a_ceremony_begun_on_one_instance_ends_on_another(turnstile_settings, http_client, origin, tokens):
    device = SoftAuthenticator(origin)
    async with instance(turnstile_settings, http_client) as a, instance(turnstile_settings, http_client) as b:
        assert (await a.post("/register", json={"user": "alice", "pwd": DEFAULT_PASSWORD})).code == 201
        token = await b.login("alice")
        a.use_token(token)
        b.use_token(token)
        creation = (await a.post("/webauthn/register/options", json={"pwd": DEFAULT_PASSWORD})).json()
        added = await b.post("/webauthn/register", json={"credential": device.create(creation)})
        assert added.code == 201, added.text
        a.use_token(None)
        b.use_token(None)
        assertion = device.get(await login_options(b))
        response = await a.post("/webauthn/login", json={"credential": assertion})
        assert response.code == 200, response.text
        assert tokens.verify(ACCESS, response.json()["accessToken"])["amr"] == ["hwk", "user"]
        assert_refused(await b.post("/webauthn/login", json={"credential": assertion}), 401)  # used up on a



def passkeys_on(app, clock: Clock, origin: str) -> Passkeys:
    """A `Passkeys` on the app's store and accounts, with a clock of the test's."""
    return Passkeys(app.services.accounts, Namespace(app.services.store, "mfa"), "localhost", "Turnstile", [origin], clock=clock)


@pytest.mark.gen_test
async def test_an_expired_challenge_is_refused_and_pruned(app, make_user, device, origin):
    clock = Clock(1_000_000.0)
    passkeys = passkeys_on(app, clock, origin)
    await make_user("alice")
    user = await app.services.accounts.user("alice")
    creation = json.loads(await passkeys.registration_options(user))
    clock.now += 301
    with pytest.raises(APIError) as refused:
        await passkeys.register(user, SoftAuthenticator(origin).create(creation), None)
    assert refused.value.status_code == 400
    clock.now -= 301
    await passkeys.register(user, device.create(json.loads(await passkeys.registration_options(user))), None)

    stale = json.loads(await passkeys.authentication_options(None))
    await passkeys.authentication_options(None)
    clock.now += 301
    with pytest.raises(APIError) as refused:
        await passkeys.authenticate(device.get(stale), None)
    assert refused.value.status_code == 401
    fresh = json.loads(await passkeys.authentication_options(None))
    assert await passkeys.prune() == 1  # the other stale one; the used one was deleted when it was read
    user_back, amr = await passkeys.authenticate(device.get(fresh), None)
    assert user_back["username"] == "alice" and amr == ["hwk", "user"]
    assert await Namespace(app.services.store, "mfa").collection("challenges").count() == 0


@pytest.mark.gen_test
async def test_as_a_second_factor_the_passkey_must_be_that_users(app, make_user, device, origin):
    passkeys = passkeys_on(app, Clock(1_000_000.0), origin)
    for name in ("alice", "bob"):
        await make_user(name)
    alice = await app.services.accounts.user("alice")
    mine = await passkeys.register(alice, device.create(json.loads(await passkeys.registration_options(alice))), "Key")
    [alices_key] = device.credentials.values()
    bobs_device = SoftAuthenticator(origin)
    bob = await app.services.accounts.user("bob")
    await passkeys.register(bob, bobs_device.create(json.loads(await passkeys.registration_options(bob))), None)

    request = json.loads(await passkeys.authentication_options("alice"))
    assert [c["id"] for c in request["allowCredentials"]] == [mine["id"]] and request["userVerification"] == "required"
    for credential, username in (
        (bobs_device.get(request, credential=next(iter(bobs_device.credentials.values()))), "alice"),  # bob's passkey for alice's sign-in
        (device.get(json.loads(await passkeys.authentication_options("bob")), credential=alices_key), "bob"),  # alice's for bob's
        (device.get(json.loads(await passkeys.authentication_options("alice"))), None),  # alice's challenge, no user
        (device.get(json.loads(await passkeys.authentication_options(None))), "alice"),  # a passwordless challenge
    ):
        with pytest.raises(APIError) as refused:
            await passkeys.authenticate(credential, username)
        assert refused.value.status_code == 401
    user, amr = await passkeys.authenticate(device.get(json.loads(await passkeys.authentication_options("alice"))), "alice")
    assert user["username"] == "alice" and amr == ["hwk", "user"]
