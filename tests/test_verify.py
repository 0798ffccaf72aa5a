"""The verify mixin: 401 without a Bearer token, 403 for a bad one."""

import time

import jwt
import pytest


def token(secret, **overrides):
    now = int(time.time())
    claims = {"typ": "access", "jti": "j", "iat": now, "exp": now + 60, "username": "alice", **overrides}
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.mark.gen_test
@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "Token abc"])
async def test_missing_or_non_bearer_header_is_401(api, header):
    response = await api.get("/employees", headers={"Authorization": header} if header is not None else {})
    assert response.code == 401
    assert response.json()["message"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.gen_test
async def test_valid_token_is_accepted(api, turnstile_settings):
    response = await api.get("/employees", headers={"Authorization": f"Bearer {token(turnstile_settings.access_secret)}"})
    assert response.code == 200


@pytest.mark.gen_test
async def test_expired_token_is_403(api, turnstile_settings):
    expired = token(turnstile_settings.access_secret, iat=int(time.time()) - 120, exp=int(time.time()) - 60)
    response = await api.get("/employees", headers={"Authorization": f"Bearer {expired}"})
    assert response.code == 403


@pytest.mark.gen_test
async def test_wrong_secret_is_403(api):
    response = await api.get("/employees", headers={"Authorization": f"Bearer {token('x' * 64)}"})
    assert response.code == 403


@pytest.mark.gen_test
async def test_refresh_token_is_refused_as_access_token(api, turnstile_settings):
    refresh_typed = token(turnstile_settings.access_secret, typ="refresh")
    response = await api.get("/employees", headers={"Authorization": f"Bearer {refresh_typed}"})
    assert response.code == 403
    signed_with_refresh_secret = token(turnstile_settings.refresh_secret)
    response = await api.get("/employees", headers={"Authorization": f"Bearer {signed_with_refresh_secret}"})
    assert response.code == 403


@pytest.mark.gen_test
async def test_algorithm_is_pinned(api, turnstile_settings):
    """An unsigned ("alg": "none") or HS512 token is refused even with correct claims."""
    now = int(time.time())
    claims = {"typ": "access", "jti": "j", "iat": now, "exp": now + 60, "username": "alice"}
    unsigned = jwt.encode(claims, None, algorithm="none")
    hs512 = jwt.encode(claims, turnstile_settings.access_secret, algorithm="HS512")
    for bad in (unsigned, hs512):
        response = await api.get("/employees", headers={"Authorization": f"Bearer {bad}"})
        assert response.code == 403


@pytest.mark.gen_test
async def test_garbage_token_is_403(api):
    response = await api.get("/employees", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.code == 403
