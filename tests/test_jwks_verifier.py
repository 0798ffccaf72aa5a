"""core.verify.JWKSVerifier and JWKSAuthMixin: another service checks Turnstile's tokens against a published key set.

A Tornado app in the test serves a key set (Ed25519, P-256 and RSA keys made with
``cryptography``) and counts every fetch; the verifier fetches it over real HTTP.
Only the verifier's clock, which decides when the cache is stale and when a
refetch is allowed, is the test's own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from clock_kit import Clock
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from tornado.web import Application, RequestHandler

from core.verify import JWKSAuthMixin, JWKSVerifier, KeysUnavailable, TokenInvalid, cache_seconds

ISSUER = "https://auth.example.test"
AUDIENCE = "reports"
REFETCH = 30.0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Key:
    """A private key and its public JWK, whose ``kid`` is its RFC 7638 thumbprint."""

    def __init__(self, alg: str) -> None:
        self.alg = alg
        if alg == "EdDSA":
            self.private: Any = ed25519.Ed25519PrivateKey.generate()
            jwk = OKPAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
            members = ("crv", "kty", "x")
        elif alg == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
            jwk = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
            members = ("crv", "kty", "x", "y")
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
            members = ("e", "kty", "n")
        canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
        self.kid = b64url(hashlib.sha256(canonical.encode()).digest())
        self.jwk = {**jwk, "kid": self.kid, "alg": alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def token(self, *, alg: str | None = None, kid: str | None = None, signer: Any = None, **overrides: Any) -> str:
        return jwt.encode(claims(**overrides), signer or self.private, algorithm=alg or self.alg,
                          headers={"kid": kid or self.kid, "typ": "JWT"})


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"typ": "access", "jti": "j1", "iat": now, "exp": now + 300, "username": "alice", "roles": [2001],
            "iss": ISSUER, "aud": AUDIENCE}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hand_signed(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None, sign: Any = None) -> str:
    """A JWT put together by hand (HMAC with ``secret``, or ``sign``): PyJWT refuses to sign HS256 with a PEM key
    or to write a ``kid`` that is not a string; an attacker does not."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    if sign is not None:
        signature = sign(signing_input.encode())
    else:
        signature = b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


class KeySet:
    """What the test's JWKS endpoint serves, and how often it was asked."""

    def __init__(self, *keys: Key) -> None:
        self.keys = list(keys)
        self.cache_control = "public, max-age=300"
        self.fetches = 0
        self.failing: str | None = None  # None, "500", "not json", "no keys"
        self.delay = 0.0

    def document(self) -> bytes:
        if self.failing == "not json":
            return b"<html>maintenance</html>"
        if self.failing == "no keys":
            return json.dumps({"keys": []}).encode()
        return json.dumps({"keys": [k.jwk for k in self.keys]}).encode()



class JWKSHandler(RequestHandler):
    def initialize(self, keyset: KeySet) -> None:
        self.keyset = keyset

    async def get(self) -> None:
        self.keyset.fetches += 1
        if self.keyset.delay:
            await asyncio.sleep(self.keyset.delay)
        if self.keyset.failing == "500":
            raise ValueError("the key set's server is broken")
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", self.keyset.cache_control)
        self.finish(self.keyset.document())


class ReportHandler(JWKSAuthMixin, RequestHandler):
    def get(self) -> None:
        self.finish({"username": self.current_user["username"], "roles": self.current_user.get("roles", [])})


ALGS = ("EdDSA", "ES256", "RS256")


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    """One key per algorithm, and a second Ed25519 key (to rotate in), made once: RSA key generation is slow."""
    made = {alg: Key(alg) for alg in ALGS}
    made["next"] = Key("EdDSA")
    made["other"] = Key("EdDSA")
    return made


@pytest.fixture
def keyset(keys: dict[str, Key]) -> KeySet:
    return KeySet(keys["EdDSA"], keys["ES256"], keys["RS256"])


@pytest.fixture
def clock() -> Clock:
    return Clock(1000.0)


@pytest.fixture
def jwks_url(http_port: int) -> str:
    return f"http://127.0.0.1:{http_port}/.well-known/jwks.json"


@pytest.fixture
def verifier(jwks_url: str, clock: Clock) -> JWKSVerifier:
    return JWKSVerifier(jwks_url, issuer=ISSUER, audience=AUDIENCE, refetch_interval=REFETCH, clock=clock)


@pytest.fixture
def app(keyset: KeySet, verifier: JWKSVerifier) -> Application:
    return Application(
        [("/.well-known/jwks.json", JWKSHandler, {"keyset": keyset}), ("/report", ReportHandler)],
        jwks_verifier=verifier,
    )


# -- accepted ---------------------------------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize("alg", ALGS)
async def test_a_token_of_each_algorithm_is_accepted_with_one_fetch(http_server, verifier, keyset, keys, alg):
    token = keys[alg].token()
    assert (await verifier.verify(token))["username"] == "alice"
    assert (await verifier.verify(token))["roles"] == [2001]
    assert keyset.fetches == 1
    assert sorted(verifier.kids) == sorted(k.kid for k in keyset.keys)


# -- the unknown kid refetch, rate limited ---------------------------------------------------


@pytest.mark.gen_test
async def test_an_unknown_kid_refetches_once_and_then_the_new_key_works(http_server, verifier, keyset, keys, clock):
    await verifier.verify(keys["EdDSA"].token())
    keyset.keys.append(keys["next"])  # rotated in on the issuer
    clock.now += REFETCH  # past the rate limit, well within max-age
    assert (await verifier.verify(keys["next"].token()))["username"] == "alice"
    assert keyset.fetches == 2
    await verifier.verify(keys["next"].token())
    await verifier.verify(keys["EdDSA"].token())
    assert keyset.fetches == 2


@pytest.mark.gen_test
async def test_unknown_kids_within_the_rate_limit_fetch_nothing(http_server, verifier, keyset, keys, clock):
    await verifier.verify(keys["EdDSA"].token())
    keyset.keys.append(keys["next"])
    clock.now += REFETCH - 1
    for _ in range(5):
        with pytest.raises(TokenInvalid, match="unknown kid"):
            await verifier.verify(keys["next"].token())
    for kid in ("made-up-1", "made-up-2", "made-up-3"):  # a flood of invented kids costs nothing either
        with pytest.raises(TokenInvalid):
            await verifier.verify(keys["EdDSA"].token(kid=kid))
    assert keyset.fetches == 1
    clock.now += 1
    await verifier.verify(keys["next"].token())
    assert keyset.fetches == 2
    with pytest.raises(TokenInvalid, match="unknown kid"):
        await verifier.verify(keys["EdDSA"].token(kid="made-up-4"))
    assert keyset.fetches == 2


@pytest.mark.gen_test
async def test_concurrent_callers_share_one_fetch(http_server, verifier, keyset, keys, clock):
    keyset.delay = 0.2  # every caller arrives while the fetch is on the wire
    results = await asyncio.gather(*(verifier.verify(keys[alg].token()) for alg in ALGS for _ in range(5)))
    assert [r["username"] for r in results] == ["alice"] * 15
    assert keyset.fetches == 1

    keyset.keys.append(keys["next"])
    clock.now += REFETCH
    results = await asyncio.gather(*(verifier.verify(keys["next"].token()) for _ in range(10)))
    assert len(results) == 10
    assert keyset.fetches == 2


# -- refused ------------------------------------------------------------------------------


def forged_tokens(keys: dict[str, Key]) -> dict[str, str]:
    ed, es, rs = keys["EdDSA"], keys["ES256"], keys["RS256"]
    now = int(time.time())
    return {
        "forged signature (another key under a real kid)": ed.token(signer=keys["other"].private),
        "alg none": jwt.encode(claims(), None, algorithm="none", headers={"kid": ed.kid}),
        "alg none, hand made": hand_signed({"alg": "none", "kid": ed.kid}, claims(), None),
        "HS256 with the public key's PEM as the secret": hand_signed({"alg": "HS256", "kid": rs.kid, "typ": "JWT"}, claims(), rs.public_pem()),
        "HS256 with the Ed25519 key's x as the secret": hand_signed(
            {"alg": "HS256", "kid": ed.kid}, claims(), base64.urlsafe_b64decode(ed.jwk["x"] + "==")),
        "HS256 with the JWK's JSON as the secret": hand_signed({"alg": "HS256", "kid": es.kid}, claims(), json.dumps(es.jwk).encode()),
        "ES256 header on the Ed25519 key's kid": es.token(kid=ed.kid),
        "EdDSA header on the RSA key's kid": ed.token(kid=rs.kid),
        "PS256 signed with the RSA key": rs.token(alg="PS256"),
        "RS512 signed with the RSA key": rs.token(alg="RS512"),
        "a refresh token": ed.token(typ="refresh"),
        "no typ": ed.token(typ=None),
        "expired": ed.token(iat=now - 600, exp=now - 300),
        "no exp": ed.token(exp=None),
        "no iat": ed.token(iat=None),
        "no username": ed.token(username=None),
        "a username that is not a string": ed.token(username=["alice"]),
        "wrong issuer": ed.token(iss="https://evil.example.test"),
        "no issuer": ed.token(iss=None),
        "wrong audience": ed.token(aud="billing"),
        "no audience": ed.token(aud=None),
        "no kid": jwt.encode(claims(), ed.private, algorithm="EdDSA"),
        "a kid that is not a string": hand_signed({"alg": "EdDSA", "kid": [ed.kid]}, claims(), None, ed.private.sign),
        "a kid no key has": ed.token(kid="not-a-published-kid"),
        "not a JWT": "not.a.jwt",
        "garbage": "x" * 40,
    }


@pytest.mark.gen_test
async def test_every_forgery_and_bad_claim_is_refused(http_server, verifier, keyset, keys):
    assert (await verifier.verify(keys["EdDSA"].token()))["username"] == "alice"  # the keys are held
    accepted = {}
    for name, token in forged_tokens(keys).items():
        try:
            accepted[name] = await verifier.verify(token)
        except TokenInvalid as exc:
            assert not isinstance(exc, KeysUnavailable), name
    assert accepted == {}


@pytest.mark.gen_test
async def test_without_issuer_or_audience_configured_those_claims_are_not_required(http_server, jwks_url, keys):
    verifier = JWKSVerifier(jwks_url)
    assert (await verifier.verify(keys["ES256"].token(iss=None, aud=None)))["username"] == "alice"
    assert (await verifier.verify(keys["ES256"].token(aud=None)))["iss"] == ISSUER
    with pytest.raises(TokenInvalid):  # a token meant for some audience is not for a service that names none
        await verifier.verify(keys["ES256"].token())


@pytest.mark.gen_test
async def test_algorithms_pin_which_keys_count(http_server, jwks_url, keyset, keys):
    verifier = JWKSVerifier(jwks_url, issuer=ISSUER, audience=AUDIENCE, algorithms=("EdDSA",))
    await verifier.verify(keys["EdDSA"].token())
    with pytest.raises(TokenInvalid):
        await verifier.verify(keys["RS256"].token())
    assert verifier.kids == [keys["EdDSA"].kid]


def test_symmetric_algorithms_cannot_be_configured():
    for algorithms in (("HS256",), ("EdDSA", "none"), ()):
        with pytest.raises(ValueError):
            JWKSVerifier("http://127.0.0.1:9/jwks.json", algorithms=algorithms)


@pytest.mark.gen_test
async def test_hmac_and_unusable_keys_in_the_set_are_ignored(http_server, verifier, keyset, keys, clock):
    keyset.keys = [keys["EdDSA"]]
    oct_key = {"kty": "oct", "kid": "shared", "alg": "HS256", "k": b64url(b"s" * 32)}
    encryption_key = {**keys["next"].jwk, "use": "enc"}
    original = keyset.document
    keyset.document = lambda: json.dumps({"keys": [keys["EdDSA"].jwk, oct_key, encryption_key, {"kty": "EC", "kid": "broken"}]}).encode()
    await verifier.verify(keys["EdDSA"].token())
    assert verifier.kids == [keys["EdDSA"].kid]
    with pytest.raises(TokenInvalid):
        await verifier.verify(jwt.encode(claims(), b"s" * 32, algorithm="HS256", headers={"kid": "shared"}))
    keyset.document = original


# -- caching ---------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_max_age_is_honoured_and_a_dropped_key_then_stops_working(http_server, verifier, keyset, keys, clock):
    keyset.cache_control = "public, max-age=120"
    await verifier.verify(keys["EdDSA"].token())
    keyset.keys.remove(keys["RS256"])  # retired on the issuer: its tokens have all expired
    clock.now += 119
    await verifier.verify(keys["RS256"].token())  # still in the cache
    assert keyset.fetches == 1
    clock.now += 1
    await verifier.verify(keys["EdDSA"].token())
    assert keyset.fetches == 2
    with pytest.raises(TokenInvalid, match="unknown kid"):
        await verifier.verify(keys["RS256"].token())
    assert keyset.fetches == 2


@pytest.mark.gen_test
@pytest.mark.parametrize("cache_control, expected", [
    ("no-store", 30), ("public, max-age=0", 30), ("max-age=5", 30), (None, 300), ("public, max-age=999999999", 86400),
])
async def test_max_age_is_kept_between_a_floor_and_a_ceiling(http_server, verifier, keyset, keys, clock, cache_control, expected):
    keyset.cache_control = cache_control or "public"
    await verifier.verify(keys["EdDSA"].token())
    clock.now += expected - 1
    await verifier.verify(keys["EdDSA"].token())
    assert keyset.fetches == 1
    clock.now += 1
    await verifier.verify(keys["EdDSA"].token())
    assert keyset.fetches == 2


def test_cache_control_parsing():
    assert cache_seconds("public, max-age=600", 300, 30, 86400) == 600
    assert cache_seconds('max-age="90"', 300, 30, 86400) == 90
    assert cache_seconds("MAX-AGE=45, must-revalidate", 300, 30, 86400) == 45
    assert cache_seconds("max-age=soon", 300, 30, 86400) == 300
    assert cache_seconds("no-cache, max-age=600", 300, 30, 86400) == 30
    assert cache_seconds(None, 300, 30, 86400) == 300


@pytest.mark.gen_test
@pytest.mark.parametrize("failing", ["500", "not json", "no keys"])
async def test_a_failed_fetch_keeps_the_cached_keys(http_server, verifier, keyset, keys, clock, failing):
    await verifier.verify(keys["ES256"].token())
    keyset.failing = failing
    clock.now += 300  # stale
    assert (await verifier.verify(keys["ES256"].token()))["username"] == "alice"
    assert keyset.fetches == 2
    clock.now += REFETCH - 1  # a failure is not retried on every request either
    await verifier.verify(keys["ES256"].token())
    assert keyset.fetches == 2
    keyset.failing = None
    keyset.keys.append(keys["next"])
    clock.now += 1
    await verifier.verify(keys["next"].token())
    assert keyset.fetches == 3


@pytest.mark.gen_test
async def test_a_key_set_server_that_is_down_keeps_the_cached_keys(http_server, verifier, keys, clock):
    await verifier.verify(keys["RS256"].token())
    http_server.stop()  # connections are now refused
    clock.now += 3600
    assert (await verifier.verify(keys["RS256"].token()))["username"] == "alice"
    clock.now += REFETCH
    assert (await verifier.verify(keys["EdDSA"].token()))["username"] == "alice"


@pytest.mark.gen_test
async def test_no_keys_ever_fetched_is_keys_unavailable(http_server, verifier, keyset, keys):
    keyset.failing = "500"
    with pytest.raises(KeysUnavailable):
        await verifier.verify(keys["EdDSA"].token())
    assert issubclass(KeysUnavailable, TokenInvalid)


# -- the handler mixin -----------------------------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer  ", "Basic YWxpY2U6c2VjcmV0", "Token abc"])
async def test_the_mixin_answers_401_without_a_bearer_token(http_client, base_url, keyset, header):
    response = await http_client.fetch(f"{base_url}/report", headers={"Authorization": header} if header is not None else {},
                                       raise_error=False)
    assert response.code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert json.loads(response.body) == {"message": "Missing bearer token."}
    assert keyset.fetches == 0


@pytest.mark.gen_test
async def test_the_mixin_answers_the_caller_or_403(http_client, base_url, keys):
    response = await http_client.fetch(f"{base_url}/report", headers={"Authorization": f"Bearer {keys['EdDSA'].token()}"})
    assert json.loads(response.body) == {"username": "alice", "roles": [2001]}
    for name, token in forged_tokens(keys).items():
        response = await http_client.fetch(f"{base_url}/report", headers={"Authorization": f"Bearer {token}"}, raise_error=False)
        assert response.code == 403, name
        assert json.loads(response.body) == {"message": "Invalid or expired access token."}, name


@pytest.mark.gen_test
async def test_the_mixin_answers_503_until_keys_can_be_fetched(http_client, base_url, keyset, keys):
    keyset.failing = "500"
    response = await http_client.fetch(f"{base_url}/report", headers={"Authorization": f"Bearer {keys['EdDSA'].token()}"},
                                       raise_error=False)
    assert response.code == 503
    assert response.headers["Retry-After"] == str(int(REFETCH))
    assert json.loads(response.body)["message"]
