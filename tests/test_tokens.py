"""Token claims, the pinned algorithm, leeway, and token types kept apart."""

import time

import jwt
import pytest
from token_kit import hmac_forgery, other_hmacs, unsigned

from core.signing import ACCESS, REFRESH, SecretKey, TokenInvalid


def access(tokens, **overrides):
    """An access token for alice signed with the app's key, with ``overrides`` in its claims."""
    return tokens.sign(ACCESS, tokens.claims(ACCESS, "alice", roles=[2001], **overrides))


@pytest.mark.gen_test
async def test_access_and_refresh_claims(api, make_user, tokens, turnstile_settings):
    await make_user("alice")
    response = await api.post("/auth", json={"user": "alice", "pwd": "correct horse battery staple"})
    claims = tokens.verify(ACCESS, response.json()["accessToken"])
    assert set(claims) == {"typ", "jti", "iat", "exp", "username", "roles", "amr", "auth_time"}
    assert claims["typ"] == "access" and claims["username"] == "alice" and claims["roles"] == [2001]
    assert claims["amr"] == ["pwd"]  # RFC 8176: a password alone
    assert abs(claims["auth_time"] - claims["iat"]) <= 1  # the sign-in is now
    assert claims["exp"] - claims["iat"] == turnstile_settings.access_ttl
    refresh = tokens.verify(REFRESH, api.cookies["jwt"])
    assert set(refresh) == {"typ", "jti", "iat", "exp", "username"}
    assert refresh["typ"] == "refresh" and refresh["exp"] - refresh["iat"] == turnstile_settings.refresh_ttl
    assert refresh["jti"] != claims["jti"]


@pytest.mark.gen_test
async def test_access_tokens_use_the_configured_algorithm_and_refresh_tokens_hs256(api, make_user, turnstile_settings):
    """Access tokens follow ``ACCESS_TOKEN_ALGORITHM``; refresh tokens, read only by Turnstile, stay HS256 with ``REFRESH_TOKEN_SECRET``."""
    await make_user("alice")
    access_token = await api.login("alice")
    header = jwt.get_unverified_header(access_token)
    assert header["alg"] == turnstile_settings.access_algorithm and header["kid"]
    refresh_header = jwt.get_unverified_header(api.cookies["jwt"])
    assert refresh_header["alg"] == "HS256" and refresh_header["kid"] == SecretKey(turnstile_settings.refresh_secret).signing_key().kid
    assert jwt.decode(api.cookies["jwt"], turnstile_settings.refresh_secret, algorithms=["HS256"])["typ"] == "refresh"


@pytest.mark.gen_test
async def test_every_token_has_its_own_jti(api, make_user, tokens):
    await make_user("alice")
    first = await api.login("alice")
    second = (await api.get("/refresh")).json()["accessToken"]
    assert tokens.verify(ACCESS, first)["jti"] != tokens.verify(ACCESS, second)["jti"]


@pytest.mark.gen_test
async def test_other_algorithms_are_refused_even_with_the_right_key(api, tokens):
    """HMACs other than the configured algorithm, keyed with the secret or the public key, under the current kid."""
    claims = tokens.claims(ACCESS, "alice", roles=[2001])
    assert (await api.get("/employees", headers={"Authorization": f"Bearer {tokens.sign(ACCESS, claims)}"})).code == 200
    for algorithm in other_hmacs(tokens):
        response = await api.get("/employees", headers={"Authorization": f"Bearer {hmac_forgery(tokens, claims, algorithm)}"})
        assert response.code == 403, algorithm


@pytest.mark.gen_test
async def test_unsigned_token_is_refused(api, tokens):
    """``"alg": "none"`` under the current kid, and with no kid (as tokens from before kid headers)."""
    claims = tokens.claims(ACCESS, "alice", roles=[2001])
    for token in (unsigned(tokens, claims), jwt.encode(claims, None, algorithm="none")):
        response = await api.get("/employees", headers={"Authorization": f"Bearer {token}"})
        assert response.code == 403


@pytest.mark.gen_test
async def test_refresh_token_is_not_an_access_token(api, make_user):
    await make_user("alice")
    await api.login("alice")
    response = await api.get("/employees", headers={"Authorization": f"Bearer {api.cookies['jwt']}"})
    assert response.code == 403


@pytest.mark.gen_test
async def test_access_token_signed_with_refresh_secret_but_typed_access_is_refused_as_refresh(api, tokens):
    """Same key, wrong ``typ``: /refresh still refuses it."""
    forged = tokens.sign(REFRESH, tokens.claims(ACCESS, "alice", roles=[2001]))
    response = await api.get("/refresh", headers={"Cookie": f"jwt={forged}"}, cookies=False)
    assert response.code == 403


@pytest.mark.gen_test
@pytest.mark.parametrize("turnstile_settings, status", [({}, 403), ({"token_leeway": 30}, 200)], indirect=["turnstile_settings"])
async def test_leeway_is_configurable(api, tokens, turnstile_settings, status):
    just_expired = access(tokens, iat=int(time.time()) - 70, exp=int(time.time()) - 5)
    response = await api.get("/employees", headers={"Authorization": f"Bearer {just_expired}"})
    assert response.code == status


def test_signer_requires_the_claims(tokens):
    claims = tokens.claims(ACCESS, "u")
    assert tokens.verify(ACCESS, tokens.sign(ACCESS, claims)) == claims
    for missing in ("exp", "iat", "typ", "jti", "username"):
        with pytest.raises(TokenInvalid):
            tokens.verify(ACCESS, tokens.sign(ACCESS, {k: v for k, v in claims.items() if k != missing}))
