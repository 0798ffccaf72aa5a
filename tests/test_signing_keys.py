"""Access tokens signed by a key from the keyring (EdDSA, ES256, RS256): the whole flow, and what is refused.

Every test runs under each asymmetric algorithm. Tokens are checked the way
another service would check them: with nothing but the published key set.
"""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from core.keyring import COLLECTION
from core.signing import ACCESS, ASYMMETRIC, REFRESH, generate_private_key, public_jwk

ALGORITHMS = pytest.mark.parametrize(
    "turnstile_settings", [{"access_algorithm": alg} for alg in ASYMMETRIC], indirect=True, ids=list(ASYMMETRIC)
)


def header_of(token: str) -> dict:
    return jwt.get_unverified_header(token)


async def published(api) -> dict:
    response = await api.get("/.well-known/jwks.json")
    assert response.code == 200
    return {key["kid"]: key for key in response.json()["keys"]}


def verify_with_jwks(token: str, keys: dict) -> dict:
    """What a service holding no secret does: the kid picks a published key, whose alg is the only one allowed."""
    jwk = keys[header_of(token)["kid"]]
    return jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[jwk["alg"]])


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def claims_now(username: str = "alice") -> dict:
    now = int(time.time())
    return {"typ": "access", "jti": "j", "iat": now, "exp": now + 60, "username": username, "roles": [2001]}


async def protected(api, token: str):
    return await api.get("/employees", headers={"Authorization": f"Bearer {token}"})


@ALGORITHMS
@pytest.mark.gen_test
async def test_the_whole_flow_signs_with_the_configured_algorithm(api, make_user, turnstile_settings):
    alg = turnstile_settings.access_algorithm
    await make_user("alice")
    login = await api.post("/auth", json={"user": "alice", "pwd": "correct horse battery staple"})
    assert login.code == 200
    token = login.json()["accessToken"]
    assert header_of(token)["alg"] == alg
    keys = await published(api)
    assert header_of(token)["kid"] in keys and keys[header_of(token)["kid"]]["alg"] == alg
    claims = verify_with_jwks(token, keys)
    assert claims["username"] == "alice" and claims["typ"] == "access"

    assert (await protected(api, token)).code == 200
    refreshed = await api.get("/refresh")
    assert refreshed.code == 200
    again = refreshed.json()["accessToken"]
    assert header_of(again)["alg"] == alg and verify_with_jwks(again, keys)["username"] == "alice"
    assert (await protected(api, again)).code == 200
    # The refresh cookie stays HS256, read only by Turnstile.
    assert header_of(api.cookies["jwt"])["alg"] == "HS256"
    assert (await api.get("/logout")).code == 204


@ALGORITHMS
@pytest.mark.gen_test
async def test_the_private_key_is_sealed_in_the_store(app, turnstile_settings):
    [doc] = await app.services.store.collection(COLLECTION).find(alg=turnstile_settings.access_algorithm)
    stored = json.dumps(doc)
    assert "PRIVATE KEY" not in stored and turnstile_settings.access_secret not in stored
    assert set(doc) == {"kid", "alg", "created", "active_from", "jwk", "private"}
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(doc["jwk"])


@ALGORITHMS
@pytest.mark.gen_test
async def test_an_unknown_kid_is_403(api, app, make_user, turnstile_settings):
    await make_user("alice")
    other = generate_private_key(turnstile_settings.access_algorithm)
    token = jwt.encode(claims_now(), other, algorithm=turnstile_settings.access_algorithm, headers={"kid": "no-such-key"})
    response = await protected(api, token)
    assert response.code == 403 and response.json() == {"message": "Invalid or expired access token."}


@ALGORITHMS
@pytest.mark.gen_test
async def test_a_token_signed_by_another_key_under_a_real_kid_is_403(api, app, make_user, turnstile_settings):
    await make_user("alice")
    real_kid = app.services.keyring.signing_key().kid
    forger = generate_private_key(turnstile_settings.access_algorithm)
    token = jwt.encode(claims_now(), forger, algorithm=turnstile_settings.access_algorithm, headers={"kid": real_kid})
    assert (await protected(api, token)).code == 403
    # The same claims through the app's own signer pass: the refusal is the signature's.
    assert (await protected(api, app.services.tokens.sign(ACCESS, claims_now()))).code == 200


@ALGORITHMS
@pytest.mark.gen_test
async def test_alg_none_is_403(api, app, make_user):
    await make_user("alice")
    kid = app.services.keyring.signing_key().kid
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{b64(claims_now())}."
    assert (await protected(api, unsigned)).code == 403
    assert (await protected(api, unsigned.rstrip("."))).code == 403


@ALGORITHMS
@pytest.mark.gen_test
async def test_hs256_keyed_with_the_public_key_is_403(api, app, make_user):
    """The classic confusion attack: the published public key used as an HMAC secret."""
    await make_user("alice")
    key = app.services.keyring.signing_key()
    pem = key.verify_with.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    jwk_text = json.dumps((await published(api))[key.kid])
    for secret in (pem, jwk_text.encode()):
        signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': key.kid})}.{b64(claims_now())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()  # PyJWT refuses to make it
        forged = signing_input + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")
        assert (await protected(api, forged)).code == 403


@ALGORITHMS
@pytest.mark.gen_test
async def test_another_asymmetric_algorithm_under_a_real_kid_is_403(api, app, make_user, turnstile_settings):
    await make_user("alice")
    kid = app.services.keyring.signing_key().kid
    for alg in ASYMMETRIC:
        if alg != turnstile_settings.access_algorithm:
            token = jwt.encode(claims_now(), generate_private_key(alg), algorithm=alg, headers={"kid": kid})
            assert (await protected(api, token)).code == 403


@ALGORITHMS
@pytest.mark.gen_test
async def test_a_token_without_kid_is_403_unless_the_secret_signed_it(api, app, make_user, turnstile_settings):
    """A first keyring records the HS256 secret as retired: its tokens (from before the switch) stay good until they expire."""
    await make_user("alice")
    key = generate_private_key(turnstile_settings.access_algorithm)
    no_kid = jwt.encode(claims_now(), key, algorithm=turnstile_settings.access_algorithm)
    assert (await protected(api, no_kid)).code == 403
    from_before = jwt.encode(claims_now(), turnstile_settings.access_secret, algorithm="HS256")
    assert (await protected(api, from_before)).code == 200


@ALGORITHMS
@pytest.mark.gen_test
async def test_a_refresh_token_is_not_an_access_token(api, app, make_user):
    await make_user("alice")
    refresh = app.services.tokens.issue(REFRESH, "alice")
    assert (await protected(api, refresh)).code == 403
    access = app.services.tokens.issue(ACCESS, "alice", roles=[2001])
    assert (await api.get("/refresh", headers={"Cookie": f"jwt={access}"})).code == 403


@ALGORITHMS
@pytest.mark.gen_test
async def test_published_keys_hold_no_private_member(api, turnstile_settings):
    keys = await published(api)
    assert keys
    for kid, key in keys.items():
        assert key["kid"] == kid and key["use"] == "sig" and key["alg"] == turnstile_settings.access_algorithm
        assert key["kty"] == {"EdDSA": "OKP", "ES256": "EC", "RS256": "RSA"}[key["alg"]]
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(key)
        assert public_jwk(key["alg"], jwt.PyJWK(key).key)["kid"] == kid  # the kid is the RFC 7638 thumbprint
