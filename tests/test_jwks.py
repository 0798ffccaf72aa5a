"""The published key set, the discovery document, and the issuer and audience of access tokens."""

import time

import jwt
import pytest

from core.signing import ACCESS

EDDSA = pytest.mark.settings(access_algorithm="EdDSA")


@EDDSA
@pytest.mark.gen_test
async def test_the_key_set_is_public_and_cacheable_for_jwks_max_age(api, app, turnstile_settings):
    response = await api.get("/.well-known/jwks.json")  # no Authorization header
    assert response.code == 200
    assert response.headers["Cache-Control"] == f"public, max-age={turnstile_settings.jwks_max_age}"
    assert response.headers["Content-Type"].startswith("application/json")
    [key] = response.json()["keys"]
    assert key["kid"] == app.services.keyring.signing_key().kid
    # A cache revalidates cheaply: the same set answers 304 to its Etag.
    again = await api.get("/.well-known/jwks.json", headers={"If-None-Match": response.headers["Etag"]})
    assert again.code == 304


@pytest.mark.settings(access_algorithm="HS256")
@pytest.mark.gen_test
async def test_with_hs256_the_key_set_is_empty(api):
    response = await api.get("/.well-known/jwks.json")
    assert response.code == 200 and response.json() == {"keys": []}


@pytest.mark.settings(jwks_max_age=60)
@pytest.mark.gen_test
async def test_discovery_without_an_issuer_names_only_the_key_set(api, base_url):
    response = await api.get("/.well-known/openid-configuration")
    assert response.code == 200
    assert response.json() == {"jwks_uri": base_url + "/.well-known/jwks.json"}
    assert response.headers["Cache-Control"] == "public, max-age=60"


@EDDSA
@pytest.mark.settings(token_issuer="https://auth.example.com", token_audience="reports")
@pytest.mark.gen_test
async def test_issuer_and_audience_go_into_access_tokens_and_are_checked(api, app, make_user):
    discovery = (await api.get("/.well-known/openid-configuration")).json()
    assert discovery == {"issuer": "https://auth.example.com", "jwks_uri": "https://auth.example.com/.well-known/jwks.json"}

    await make_user("alice")
    token = await api.login("alice")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == "https://auth.example.com" and claims["aud"] == "reports"
    assert "iss" not in jwt.decode(api.cookies["jwt"], options={"verify_signature": False})  # refresh tokens: neither

    tokens = app.services.tokens
    good = tokens.claims(ACCESS, "alice", roles=[2001])
    for changes, code in [
        ({}, 200),
        ({"iss": "https://evil.example.com"}, 403),
        ({"aud": "billing"}, 403),
        ({"aud": ["billing", "reports"]}, 200),
        ({"iss": None}, 403),
        ({"aud": None}, 403),
    ]:
        claims = {k: v for k, v in {**good, **changes}.items() if v is not None}
        response = await api.get("/employees", headers={"Authorization": f"Bearer {tokens.sign(ACCESS, claims)}"})
        assert response.code == code, changes


@EDDSA
@pytest.mark.gen_test
async def test_without_an_audience_a_token_naming_one_is_refused(api, app, make_user):
    """A token minted for another audience must not pass where none is configured."""
    await make_user("alice")
    tokens = app.services.tokens
    claims = {**tokens.claims(ACCESS, "alice", roles=[2001]), "aud": "somewhere-else"}
    response = await api.get("/employees", headers={"Authorization": f"Bearer {tokens.sign(ACCESS, claims)}"})
    assert response.code == 403
    expired = {**tokens.claims(ACCESS, "alice"), "iat": int(time.time()) - 100, "exp": int(time.time()) - 50}
    response = await api.get("/employees", headers={"Authorization": f"Bearer {tokens.sign(ACCESS, expired)}"})
    assert response.code == 403
