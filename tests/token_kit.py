"""Forged tokens for the refusal tests, whatever ``ACCESS_TOKEN_ALGORITHM`` is.

Good tokens, and odd claims signed with the real key, come from the ``tokens``
fixture (the app's `TokenSigner`). The forgeries here are what an attacker
builds: a token with no signature, an HMAC keyed with what a verifier knows (the
HS256 secret, or the public key), a token signed by a key Turnstile does not
hold. Each names the current key's ``kid``, so the refusal is for the attack,
not merely for an unknown ``kid``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from core.signing import ACCESS, HS256, Key, TokenSigner, generate_private_key

#: The HMAC algorithms, by JWS name.
HMAC_DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def current_key(tokens: TokenSigner, typ: str = ACCESS) -> Key:
    """The key the app signs ``typ`` tokens with now."""
    return tokens.keys[typ].signing_key()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hmac_token(claims: dict[str, Any], secret: bytes, alg: str, kid: str | None) -> str:
    """``claims`` signed with HMAC ``alg`` keyed with ``secret``, built by hand: PyJWT refuses a public key as an HMAC secret."""
    header = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid is not None else {})}
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    digest = hmac.new(secret, signing_input.encode(), HMAC_DIGESTS[alg]).digest()
    return signing_input + "." + _b64(digest)


def verifier_material(key: Key) -> bytes:
    """What an attacker keys an HMAC with: the HS256 secret itself, or the public key in PEM (the algorithm confusion attack)."""
    if key.alg == HS256:
        return str(key.verify_with).encode()
    return key.verify_with.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def other_hmacs(tokens: TokenSigner, typ: str = ACCESS) -> list[str]:
    """Every HMAC algorithm but the one ``typ`` tokens are signed with (under EdDSA, HS256 too)."""
    return [alg for alg in HMAC_DIGESTS if alg != current_key(tokens, typ).alg]


def hmac_forgery(tokens: TokenSigner, claims: dict[str, Any], alg: str, typ: str = ACCESS) -> str:
    """``claims`` under the current ``kid``, signed with HMAC ``alg`` keyed with the current key's verifier material."""
    key = current_key(tokens, typ)
    return hmac_token(claims, verifier_material(key), alg, key.kid)


def unsigned(tokens: TokenSigner, claims: dict[str, Any], typ: str = ACCESS) -> str:
    """``claims`` with ``"alg": "none"`` and no signature, under the current ``kid``."""
    return jwt.encode(claims, None, algorithm="none", headers={"kid": current_key(tokens, typ).kid})


def foreign(tokens: TokenSigner, claims: dict[str, Any], typ: str = ACCESS) -> str:
    """``claims`` in the right algorithm under the current ``kid``, signed by a key Turnstile does not hold."""
    key = current_key(tokens, typ)
    other = secrets.token_hex(32) if key.alg == HS256 else generate_private_key(key.alg)
    return jwt.encode(claims, other, algorithm=key.alg, headers={"kid": key.kid})
