"""``server.py keys rotate`` and ``keys list``: on the running server's store, picked up without a restart."""

import asyncio
import time

import jwt
import pytest

from core.keyring import COLLECTION, RELOAD_EVERY


async def published(api) -> list[str]:
    return [key["kid"] for key in (await api.get("/.well-known/jwks.json")).json()["keys"]]


@pytest.mark.settings(access_algorithm="EdDSA")
@pytest.mark.gen_test(timeout=60)
async def test_rotate_now_from_the_command_line_reaches_the_running_server(api, app, make_user, run_cli):
    await make_user("alice")
    old_token = await api.login("alice")
    old = jwt.get_unverified_header(old_token)["kid"]

    code, out, err = await run_cli("keys", "rotate", "--now")
    assert code == 0, err
    [staged] = [kid for kid in await _kids(app) if kid != old and not kid.startswith("hs256-")]
    assert f"staged {staged} (EdDSA)" in out

    deadline = time.monotonic() + 3 * RELOAD_EVERY + 5
    while True:  # the server's own reload publishes it, then signs with it once every process may have it
        token = await api.login("alice")
        if jwt.get_unverified_header(token)["kid"] == staged:
            break
        assert time.monotonic() < deadline, "the running server never signed with the rotated key"
        await asyncio.sleep(0.25)
    assert set(await published(api)) == {staged, old}
    for each in (old_token, token):
        assert (await api.get("/employees", headers={"Authorization": f"Bearer {each}"})).code == 200


async def _kids(app) -> list[str]:
    return [doc["kid"] for doc in await app.services.store.collection(COLLECTION).all()]


@pytest.mark.settings(access_algorithm="ES256")
@pytest.mark.gen_test(timeout=60)
async def test_list_shows_states_and_dates_and_nothing_private(app, run_cli):
    code, _, err = await run_cli("keys", "rotate")
    assert code == 0, err
    code, out, err = await run_cli("keys", "list")
    assert code == 0, err
    header, *rows = out.strip().splitlines()
    assert header.split("\t") == ["kid", "alg", "state", "created", "signs from", "retired", "published until"]
    states = {row.split("\t")[0]: row.split("\t")[2] for row in rows}
    current = app.services.keyring.signing_key().kid
    assert states.pop(current) == "current"
    assert sorted(states.values()) == ["next", "retired"]  # the staged key, and the HS256 secret from before
    docs = await app.services.store.collection(COLLECTION).all()
    for doc in docs:
        if "private" in doc:
            assert doc["private"] not in out
    assert "PRIVATE" not in out and '"d"' not in out


@pytest.mark.settings(access_algorithm="HS256")
@pytest.mark.gen_test(timeout=60)
async def test_with_hs256_rotate_says_why_not_and_list_says_there_are_no_keys(app, run_cli):
    code, out, err = await run_cli("keys", "rotate")
    assert code == 1 and out == ""
    assert err.strip() == (
        "turnstile: keys rotate needs an asymmetric ACCESS_TOKEN_ALGORITHM (EdDSA, ES256, RS256); "
        "with HS256 the key is ACCESS_TOKEN_SECRET"
    )
    assert await app.services.store.collection(COLLECTION).all() == []
    code, out, err = await run_cli("keys", "list")
    assert (code, out, err) == (0, "no signing keys: access tokens are signed with ACCESS_TOKEN_SECRET (HS256)\n", "")
