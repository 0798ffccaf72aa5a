"""The verify mixin: 401 without a Bearer token, 403 for a bad one."""

import time

import pytest
from token_kit import foreign, hmac_forgery, unsigned

from core.signing import ACCESS, REFRESH


@pytest.mark.gen_test
@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "Token abc"])
async def test_missing_or_non_bearer_header_is_401(api, header):
    response = await api.get("/employees", headers={"Authorization": header} if header is not None else {})
    assert response.code == 401
    assert response.json()["message"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.gen_test
async def test_valid_token_is_accepted(api, tokens):
    response = await api.get("/employees", headers={"Authorization": f"Bearer {tokens.issue(ACCESS, 'alice')}"})
    assert response.code == 200


@pytest.mark.gen_test
async def test_expired_token_is_403(api, tokens):
    expired = tokens.sign(ACCESS, tokens.claims(ACCESS, "alice", iat=int(time.time()) - 120, exp=int(time.time()) - 60))
    response = await api.get("/employees", headers={"Authorization": f"Bearer {expired}"})
    assert response.code == 403


@pytest.mark.gen_test
async def test_wrong_key_is_403(api, tokens):
    """The configured algorithm and the current kid, but a key Turnstile does not hold."""
    response = await api.get("/employees", headers={"Authorization": f"Bearer {foreign(tokens, tokens.claims(ACCESS, 'alice'))}"})
    assert response.code == 403


@pytest.mark.gen_test
async def test_refresh_token_is_refused_as_access_token(api, tokens):
    refresh_typed = tokens.sign(ACCESS, tokens.claims(REFRESH, "alice"))
    response = await api.get("/employees", headers={"Authorization": f"Bearer {refresh_typed}"})
    assert response.code == 403
    signed_with_refresh_key = tokens.sign(REFRESH, tokens.claims(ACCESS, "alice"))
    response = await api.get("/employees", headers={"Authorization": f"Bearer {signed_with_refresh_key}"})
    assert response.code == 403


@pytest.mark.gen_test
async def test_algorithm_is_pinned(api, tokens):
    """An unsigned ("alg": "none") or HS512 token is refused even with correct claims and the current kid.

    The HS512 token is keyed with what verifies the current key: the secret, or the public key.
    """
    claims = tokens.claims(ACCESS, "alice")
    for bad in (unsigned(tokens, claims), hmac_forgery(tokens, claims, "HS512")):
        response = await api.get("/employees", headers={"Authorization": f"Bearer {bad}"})
        assert response.code == 403


@pytest.mark.gen_test
async def test_garbage_token_is_403(api):
    response = await api.get("/employees", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.code == 403
