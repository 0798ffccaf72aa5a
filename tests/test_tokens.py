"""Token claims, the pinned algorithm, leeway, and token types kept apart."""

import time

import jwt
import pytest

from core.signing import ACCESS, SecretKey, TokenInvalid, TokenSigner


def access(secret, algorithm="HS256", **overrides):
    now = int(time.time())
    claims = {"typ": "access", "jti": "j", "iat": now, "exp": now + 60, "username": "alice", "roles": [2001], **overrides}
    return jwt.encode(claims, secret, algorithm=algorithm)


@pytest.mark.gen_test
async def test_access_and_refresh_claims(api, make_user, turnstile_settings):
    await make_user("alice")
    response = await api.post("/auth", json={"user": "alice", "pwd": "correct horse battery staple"})
    claims = jwt.decode(response.json()["accessToken"], turnstile_settings.access_secret, algorithms=["HS256"])
    assert set(claims) == {"typ", "jti", "iat", "exp", "username", "roles"}
    assert claims["typ"] == "access" and claims["username"] == "alice" and claims["roles"] == [2001]
    assert claims["exp"] - claims["iat"] == turnstile_settings.access_ttl
    refresh = jwt.decode(api.cookies["jwt"], turnstile_settings.refresh_secret, algorithms=["HS256"])
    assert set(refresh) == {"typ", "jti", "iat", "exp", "username"}
    assert refresh["typ"] == "refresh" and refresh["exp"] - refresh["iat"] == turnstile_settings.refresh_ttl
    assert refresh["jti"] != claims["jti"]


@pytest.mark.gen_test
async def test_every_token_has_its_own_jti(api, make_user, turnstile_settings):
    await make_user("alice")
    first = await api.login("alice")
    second = (await api.get("/refresh")).json()["accessToken"]
    decode = lambda t: jwt.decode(t, turnstile_settings.access_secret, algorithms=["HS256"])  # noqa: E731
    assert decode(first)["jti"] != decode(second)["jti"]


@pytest.mark.gen_test
@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
async def test_other_algorithms_are_refused_even_with_the_right_secret(api, turnstile_settings, algorithm):
    response = await api.get("/employees", headers={"Authorization": f"Bearer {access(turnstile_settings.access_secret, algorithm)}"})
    assert response.code == 403


@pytest.mark.gen_test
async def test_unsigned_token_is_refused(api):
    unsigned = jwt.encode({"typ": "access", "jti": "j", "iat": 1, "exp": 2**40, "username": "alice"}, None, algorithm="none")
    response = await api.get("/employees", headers={"Authorization": f"Bearer {unsigned}"})
    assert response.code == 403


@pytest.mark.gen_test
async def test_refresh_token_is_not_an_access_token(api, make_user):
    await make_user("alice")
    await api.login("alice")
    response = await api.get("/employees", headers={"Authorization": f"Bearer {api.cookies['jwt']}"})
    assert response.code == 403


@pytest.mark.gen_test
async def test_access_token_signed_with_refresh_secret_but_typed_access_is_refused_as_refresh(api, turnstile_settings):
    """Same secret, wrong ``typ``: /refresh still refuses it."""
    forged = access(turnstile_settings.refresh_secret)
    response = await api.get("/refresh", headers={"Cookie": f"jwt={forged}"}, cookies=False)
    assert response.code == 403


@pytest.mark.gen_test
@pytest.mark.parametrize("turnstile_settings, status", [({}, 403), ({"token_leeway": 30}, 200)], indirect=["turnstile_settings"])
async def test_leeway_is_configurable(api, turnstile_settings, status):
    just_expired = access(turnstile_settings.access_secret, iat=int(time.time()) - 70, exp=int(time.time()) - 5)
    response = await api.get("/employees", headers={"Authorization": f"Bearer {just_expired}"})
    assert response.code == status


def test_signer_requires_the_claims():
    signer = TokenSigner(SecretKey("a" * 32), SecretKey("b" * 32), 60, 60)
    missing_jti = jwt.encode({"typ": "access", "iat": 1, "exp": 2**40, "username": "u"}, "a" * 32, algorithm="HS256")
    with pytest.raises(TokenInvalid):
        signer.verify(ACCESS, missing_jti)
