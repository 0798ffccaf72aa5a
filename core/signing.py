"""Signing and verifying tokens: one signer, whatever the algorithm.

A `KeySource` knows the key to sign with now and finds a key by ``kid`` to
verify with. Two implement it: `SecretKey`, HS256 with a secret from the
environment (refresh tokens always; access tokens by default), and
`core.keyring.Keyring`, asymmetric keys kept in the store. `TokenSigner`
issues and verifies both kinds of token through them, and is the only code
that calls PyJWT's encode and decode: tests and fixtures mint tokens through
it too, so the suite runs unchanged under every ``ACCESS_TOKEN_ALGORITHM``.

Verification trusts nothing in a token before its signature is checked
except the ``kid`` that picks the key. The key then fixes the algorithm: a
token whose ``alg`` is not its key's (``none``; HS256 keyed with a public
key) is refused, as is an unknown ``kid``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from .secretbox import derive

ACCESS = "access"
REFRESH = "refresh"
HS256 = "HS256"
#: ``ACCESS_TOKEN_ALGORITHM`` values: the default, then the asymmetric ones a keyring holds.
ALGORITHMS = (HS256, "EdDSA", "ES256", "RS256")
ASYMMETRIC = ALGORITHMS[1:]
#: JWK members that are private in some key type: never published.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_REQUIRED = ["exp", "iat", "typ", "jti", "username"]
#: Distinct verified token headers remembered (a few per key: one per token kind and algorithm).
HEADER_CACHE = 64
_THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}


class TokenInvalid(Exception):
    """Expired, forged, malformed, signed by an unknown key or of the wrong type. Never says which to the client."""


@dataclass(frozen=True, eq=False)
class Key:
    """One key: ``sign_with`` is None for a key this process can only verify with."""

    kid: str
    alg: str
    verify_with: Any
    sign_with: Any = None


class KeySource(Protocol):
    """Where a `TokenSigner` gets its keys for one kind of token."""

    def signing_key(self) -> Key:
        """The key new tokens are signed with."""
        ...

    def find(self, kid: str | None) -> Key | None:
        """The key that ``kid`` names, if tokens signed by it are still good; None otherwise."""
        ...


def secret_kid(secret: str) -> str:
    """A ``kid`` for an HS256 secret: derived one-way, so it reveals nothing of the secret."""
    return "hs256-" + base64.urlsafe_b64encode(derive(secret, "kid", 12)).decode().rstrip("=")


class SecretKey:
    """HS256 with one secret: signs and verifies with it (a token from before ``kid`` headers counts as its own)."""

    def __init__(self, secret: str) -> None:
        self.key = Key(secret_kid(secret), HS256, secret, secret)

    def signing_key(self) -> Key:
        return self.key

    def find(self, kid: str | None) -> Key | None:
        return self.key if kid is None or kid == self.key.kid else None


# -- asymmetric keys and their JWKs ----------------------------------------------------------------


def generate_private_key(alg: str) -> Any:
    """A new private key for ``alg`` (EdDSA is Ed25519, ES256 P-256, RS256 RSA 2048)."""
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"not an asymmetric algorithm: {alg!r}; use one of {', '.join(ASYMMETRIC)}")


def _algorithm(alg: str) -> Any:
    if alg == "EdDSA":
        return OKPAlgorithm
    if alg == "ES256":
        return ECAlgorithm
    if alg == "RS256":
        return RSAAlgorithm
    raise ValueError(f"not an asymmetric algorithm: {alg!r}")


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url): a ``kid`` every library can recompute."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).decode().rstrip("=")


def public_jwk(alg: str, public_key: Any) -> dict[str, Any]:
    """The public JWK of a key, as a JWKS publishes it: ``kid``, ``kty``, ``alg``, ``use`` and the public members."""
    jwk = _algorithm(alg).to_jwk(public_key, as_dict=True)
    jwk = {name: value for name, value in jwk.items() if name not in PRIVATE_MEMBERS}
    jwk.update(kid=thumbprint(jwk), alg=alg, use="sig")
    return jwk


def key_from_jwk(jwk: dict[str, Any], private: Any = None) -> Key:
    """A verifying `Key` from a public JWK (and the private key object, to sign with too)."""
    public = _algorithm(jwk["alg"]).from_jwk(jwk)
    return Key(jwk["kid"], jwk["alg"], public, private)


# -- tokens ------------------------------------------------------------------------------------------


class TokenSigner:
    """Issues and verifies access and refresh tokens, each kind with its own `KeySource`.

    Access tokens carry ``iss`` and ``aud`` when ``issuer`` and ``audience``
    are set, and must carry them then; refresh tokens are read only here and
    carry neither.
    """

    def __init__(
        self,
        access: KeySource,
        refresh: KeySource,
        access_ttl: int,
        refresh_ttl: int,
        leeway: int = 0,
        issuer: str = "",
        audience: str = "",
    ) -> None:
        self.keys: dict[str, KeySource] = {ACCESS: access, REFRESH: refresh}
        self.ttl = {ACCESS: access_ttl, REFRESH: refresh_ttl}
        self.leeway = leeway
        self.issuer = issuer
        self.audience = audience
        self._headers: dict[str, dict[str, Any]] = {}  # header segment -> parsed header, of verified tokens only

    def claims(self, typ: str, username: str, **extra: Any) -> dict[str, Any]:
        """The claims `issue` signs: the standard ones for ``typ``, then ``extra``."""
        now = int(time.time())
        claims: dict[str, Any] = {"typ": typ, "jti": uuid.uuid4().hex, "iat": now, "exp": now + self.ttl[typ]}
        if typ == ACCESS:
            if self.issuer:
                claims["iss"] = self.issuer
            if self.audience:
                claims["aud"] = self.audience
        claims["username"] = username
        claims.update(extra)
        return claims

    def issue(self, typ: str, username: str, **extra: Any) -> str:
        """A new token of type ``typ`` for ``username``."""
        return self.sign(typ, self.claims(typ, username, **extra))

    def sign(self, typ: str, claims: dict[str, Any]) -> str:
        """``claims`` exactly as given, signed with the current key for ``typ`` (tests build odd tokens with it)."""
        key = self.keys[typ].signing_key()
        return jwt.encode(claims, key.sign_with, algorithm=key.alg, headers={"kid": key.kid})

    def verify(self, typ: str, token: str) -> dict[str, Any]:
        """Claims of a valid token of type ``typ``; raises `TokenInvalid` otherwise."""
        segment = token.partition(".")[0]
        header = self._headers.get(segment)
        if header is None:
            try:
                header = jwt.get_unverified_header(token)
            except jwt.PyJWTError as exc:
                raise TokenInvalid(type(exc).__name__) from None
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenInvalid("malformed kid")
        key = self.keys[typ].find(kid)
        if key is None:
            raise TokenInvalid("unknown kid")
        if header.get("alg") != key.alg:
            raise TokenInvalid("algorithm not allowed for this key")
        access = typ == ACCESS
        try:
            claims = jwt.decode(
                token,
                key.verify_with,
                algorithms=[key.alg],
                leeway=self.leeway,
                issuer=(self.issuer or None) if access else None,
                audience=(self.audience or None) if access else None,
                options={"require": _REQUIRED + (["iss"] if access and self.issuer else [])},
            )
        except jwt.PyJWTError as exc:
            raise TokenInvalid(type(exc).__name__) from None
        if claims.get("typ") != typ or not isinstance(claims.get("username"), str):
            raise TokenInvalid("wrong token type")
        if segment not in self._headers:
            # Every token a key signs has the same header: remember it once verified, to parse it once.
            if len(self._headers) >= HEADER_CACHE:
                self._headers.clear()
            self._headers[segment] = header
        return claims
