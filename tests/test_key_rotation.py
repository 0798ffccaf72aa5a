"""Rotating the signing key: staged, published, current, retired and dropped, with no valid token refused.

Times are the keyring's clock, moved by the tests (``keyring.clock``); the
token lifetimes themselves are real. Each test runs under every asymmetric algorithm.
"""

import asyncio
import time

import jwt
import pytest
from clock_kit import Clock

from core.app import create_app
from core.keyring import COLLECTION, RELOAD_EVERY, KeyringError
from core.signing import ACCESS, ASYMMETRIC, TokenInvalid

ALGORITHMS = pytest.mark.parametrize(
    "turnstile_settings", [{"access_algorithm": alg} for alg in ASYMMETRIC], indirect=True, ids=list(ASYMMETRIC)
)



def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


async def published(api) -> list[str]:
    response = await api.get("/.well-known/jwks.json")
    assert response.code == 200
    return [key["kid"] for key in response.json()["keys"]]


async def accepted(api, token: str) -> bool:
    response = await api.get("/employees", headers={"Authorization": f"Bearer {token}"})
    assert response.code in (200, 403), response.text
    return response.code == 200


@pytest.fixture
def clock(app):
    clock = Clock()
    app.services.keyring.clock = clock
    return clock


@ALGORITHMS
@pytest.mark.gen_test
async def test_a_staged_key_is_published_first_signs_after_one_cache_period_and_the_old_one_stays(
    api, app, make_user, clock, turnstile_settings
):
    keyring = app.services.keyring
    await make_user("alice")
    old_token = await api.login("alice")
    old = kid_of(old_token)

    staged = await keyring.rotate()
    assert staged.state == "next" and staged.alg == turnstile_settings.access_algorithm
    assert staged.active_from == round(clock.now, 3) + turnstile_settings.jwks_max_age + keyring.switch_delay
    assert await published(api) == [staged.kid, old]  # published at once, before it signs anything
    assert kid_of(await api.login("alice")) == old

    clock.now = staged.active_from
    new_token = await api.login("alice")
    assert kid_of(new_token) == staged.kid
    assert await accepted(api, old_token) and await accepted(api, new_token)  # the overlap
    assert {e.kid: e.state for e in keyring.entries() if e.alg != "HS256"} == {staged.kid: "current", old: "retired"}

    # The old key stays published until every token it may have signed has expired, then it is dropped.
    clock.now = staged.active_from + turnstile_settings.access_ttl + turnstile_settings.token_leeway + keyring.switch_delay
    assert old in await published(api)
    clock.now += 1
    assert await published(api) == [staged.kid]
    assert not await accepted(api, old_token)
    await keyring.maintain()
    assert [doc["kid"] for doc in await app.services.store.collection(COLLECTION).find(alg=staged.alg)] == [staged.kid]


@ALGORITHMS
@pytest.mark.gen_test
async def test_rotate_now_signs_within_the_reload_interval(api, app, make_user, clock):
    keyring = app.services.keyring
    await make_user("alice")
    old_token = await api.login("alice")
    staged = await keyring.rotate(now_=True)
    assert staged.active_from - round(clock.now, 3) == keyring.switch_delay == int(RELOAD_EVERY) + 1
    clock.now = staged.active_from
    new_token = await api.login("alice")
    assert kid_of(new_token) == staged.kid != kid_of(old_token)
    assert await accepted(api, old_token) and await accepted(api, new_token)


@ALGORITHMS
@pytest.mark.gen_test
async def test_rotating_again_does_not_stage_a_second_key_and_now_brings_the_staged_one_forward(app, clock):
    keyring = app.services.keyring
    first = await keyring.rotate()
    assert (await keyring.rotate()).kid == first.kid
    forward = await keyring.rotate(now_=True)
    assert forward.kid == first.kid and forward.active_from == round(clock.now, 3) + keyring.switch_delay
    assert len(await app.services.store.collection(COLLECTION).all()) == 3  # the HS256 secret's entry, current, next


@ALGORITHMS
@pytest.mark.gen_test
async def test_two_instances_serve_the_same_key_set_and_a_rotation_reaches_the_other(api, app, make_user, turnstile_settings):
    second = await create_app(turnstile_settings)
    try:
        await make_user("alice")
        token = await api.login("alice")
        assert await published(api) == [k["kid"] for k in second.services.keyring.jwks()["keys"]]
        assert second.services.tokens.verify(ACCESS, token)["username"] == "alice"
        assert app.services.tokens.verify(ACCESS, second.services.tokens.issue(ACCESS, "alice"))["username"] == "alice"

        staged = await app.services.keyring.rotate(now_=True)
        # The other instance's own background reload brings the new key, with no restart and no call from here.
        deadline = time.monotonic() + 3 * RELOAD_EVERY
        while staged.kid not in [k["kid"] for k in second.services.keyring.jwks()["keys"]]:
            assert time.monotonic() < deadline, "the second instance did not load the staged key"
            await asyncio.sleep(0.1)
        assert second.services.keyring.jwks() == app.services.keyring.jwks()
    finally:
        await second.services.close()


@ALGORITHMS
@pytest.mark.settings(access_ttl=60, jwks_max_age=10, key_rotation=3600)
@pytest.mark.gen_test
async def test_key_rotation_is_done_by_exactly_one_instance(app, turnstile_settings):
    instances = [app] + [await create_app(turnstile_settings) for _ in range(2)]
    try:
        current = app.services.keyring.signing_key().kid
        [entry] = [e for e in app.services.keyring.entries() if e.kid == current]
        clock = Clock()
        for instance in instances:
            instance.services.keyring.clock = clock
        clock.now = entry.active_from + 3600 - app.services.keyring.stage_delay - 1
        await asyncio.gather(*(i.services.keyring.maintain() for i in instances))
        assert [e.state for e in app.services.keyring.entries()].count("next") == 0  # not due yet

        clock.now += 1
        await asyncio.gather(*(i.services.keyring.maintain() for i in instances))
        for instance in instances:
            states = {e.kid: e.state for e in instance.services.keyring.entries()}
            assert list(states.values()).count("next") == 1 and states[current] == "current"
        [staged] = [e for e in app.services.keyring.entries() if e.state == "next"]
        assert staged.active_from == entry.active_from + 3600  # it takes over when the rotation period is up
    finally:
        for instance in instances[1:]:
            await instance.services.close()


@pytest.mark.gen_test
async def test_changing_the_algorithm_keeps_every_unexpired_token_valid(app, make_user, turnstile_settings):
    """HS256, then EdDSA, ES256, RS256 and HS256 again, on one store: each instance accepts every earlier token."""
    await make_user("alice")
    issued = []
    instances = []
    try:
        for alg in ("HS256", "EdDSA", "ES256", "RS256", "HS256"):
            instance = await create_app(turnstile_settings.with_changes(access_algorithm=alg))
            instances.append(instance)
            token = instance.services.tokens.issue(ACCESS, "alice", roles=[2001])
            assert jwt.get_unverified_header(token)["alg"] == alg
            issued.append(token)
            for earlier in issued:
                assert instance.services.tokens.verify(ACCESS, earlier)["username"] == "alice"
        # Once their lifetime is over, the retired keys no longer verify anything.
        last = instances[-1].services.keyring
        last.clock = lambda: time.time() + turnstile_settings.access_ttl + turnstile_settings.token_leeway + last.switch_delay + 5
        assert [e.alg for e in last.entries()] == ["HS256"]
        with pytest.raises(TokenInvalid, match="unknown kid"):
            instances[-1].services.tokens.verify(ACCESS, issued[1])
    finally:
        for instance in instances:
            await instance.services.close()


@pytest.mark.settings(access_algorithm="HS256")
@pytest.mark.gen_test
async def test_hs256_writes_no_keyring_and_rotation_is_refused(api, app, make_user):
    await make_user("alice")
    token = await api.login("alice")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert await app.services.store.collection(COLLECTION).all() == []
    assert await published(api) == []
    with pytest.raises(KeyringError, match="asymmetric ACCESS_TOKEN_ALGORITHM"):
        await app.services.keyring.rotate()


@pytest.mark.settings(access_algorithm="RS256")
@pytest.mark.gen_test
async def test_keys_are_made_off_the_event_loop(app, monkeypatch):
    """An RSA key takes a tenth of a second to make: never on the thread that serves requests."""
    import threading

    import core.keyring

    made_on = []
    real = core.keyring.generate_private_key

    def spy(alg):
        made_on.append(threading.current_thread())
        return real(alg)

    monkeypatch.setattr(core.keyring, "generate_private_key", spy)
    await app.services.keyring.rotate()
    assert made_on and threading.main_thread() not in made_on


@pytest.mark.settings(access_algorithm="HS256")
@pytest.mark.gen_test
async def test_a_key_staged_on_an_hs256_store_leaves_its_tokens_good_until_it_takes_over(api, app, make_user, turnstile_settings):
    """``keys rotate`` run with EdDSA before the HS256 servers restart: their tokens, old and new, stay accepted."""
    from core.keyring import Keyring

    await make_user("alice")
    before = await api.login("alice")
    cli = Keyring(app.services.store, turnstile_settings.with_changes(access_algorithm="EdDSA"))
    staged = await cli.rotate()
    await app.services.keyring.load()  # what the running server's reload does
    assert staged.state == "next"
    assert await accepted(api, before)
    assert await accepted(api, await api.login("alice"))


@ALGORITHMS
@pytest.mark.gen_test
async def test_a_key_replaced_at_once_still_verifies_what_a_process_that_had_not_reloaded_signed(app, make_user, turnstile_settings):
    """A start with a changed algorithm makes its key current at once; a process still on the old key signs
    with it until its next reload (up to `switch_delay`), and those tokens live their whole lifetime."""
    keyring = app.services.keyring
    old = keyring.signing_key()
    late = await create_app(turnstile_settings.with_changes(access_algorithm="HS256" if old.alg != "HS256" else "EdDSA"))
    try:
        await keyring.load()
        [replaced] = [e for e in keyring.entries(time.time() + 1) if e.kid == old.kid]
        assert replaced.state == "retired"
        signed_late = replaced.retired_at + keyring.switch_delay - 0.5  # a process that reloads only now
        lives_until = signed_late + turnstile_settings.access_ttl + turnstile_settings.token_leeway
        assert replaced.published_until >= lives_until
    finally:
        await late.services.close()


@ALGORITHMS
@pytest.mark.gen_test
async def test_a_retired_key_drops_from_the_snapshot_the_moment_its_lifetime_ends(api, app, clock):
    """The cached states change exactly when `states` says: not up to a second later."""
    keyring = app.services.keyring
    old = keyring.signing_key().kid
    staged = await keyring.rotate(now_=True)
    clock.now = staged.active_from
    [retired] = [e for e in keyring.entries() if e.kid == old]
    clock.now = retired.published_until
    assert old in await published(api)
    clock.now = retired.published_until + 0.5
    assert old not in [e.kid for e in keyring.entries(clock.now)]
    assert old not in await published(api) and keyring.find(old) is None


@pytest.mark.settings(access_algorithm="RS256")
@pytest.mark.gen_test
async def test_keys_are_opened_off_the_event_loop(app, turnstile_settings, monkeypatch):
    """Loading an RSA private key checks it, for tens of milliseconds: a reload that finds a new key never does that on the loop."""
    import threading

    from core.keyring import Keyring

    opened_on = []
    real = core_serialization().load_pem_private_key

    def spy(*args, **kwargs):
        opened_on.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(core_serialization(), "load_pem_private_key", spy)
    await Keyring(app.services.store, turnstile_settings).rotate()  # another process stages a key
    opened_on.clear()
    await app.services.keyring.load()
    assert opened_on and threading.main_thread() not in opened_on


def core_serialization():
    import core.keyring

    return core.keyring.serialization
