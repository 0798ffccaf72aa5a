"""A software authenticator for tests: real WebAuthn responses (P-256, attestation "none"), no browser.

`SoftAuthenticator.create(options)` answers creation options as
``navigator.credentials.create()`` would, and `get(options)` answers request
options as ``navigator.credentials.get()`` would, both in the ``toJSON()`` form
a browser posts. Every field a test may want to get wrong is a parameter:
the origin, the flags, the signature counter, the challenge.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    """One key pair the authenticator holds: a passkey of one account."""

    id: bytes
    key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0

    @property
    def b64id(self) -> str:
        return b64url(self.id)

    def cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})


@dataclass
class SoftAuthenticator:
    """A platform authenticator. ``synced`` makes its credentials backed up (BE and BS set): multi-device passkeys,
    whose counter stays 0 as synced passkeys' do; otherwise each use counts up as a security key's does."""

    origin: str
    synced: bool = False
    credentials: dict[bytes, Credential] = field(default_factory=dict)

    def client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin or self.origin, "crossOrigin": False}).encode()

    def flags(self, user_verified: bool) -> int:
        return UP | (UV if user_verified else 0) | ((BE | BS) if self.synced else 0)

    def create(self, options: dict[str, Any], origin: str | None = None, user_verified: bool = True) -> dict[str, Any]:
        """A registration response to ``options`` (the creation options' JSON form)."""
        excluded = {unb64url(c["id"]) for c in options.get("excludeCredentials", [])}
        if excluded & set(self.credentials):
            raise ValueError("InvalidStateError: this authenticator already holds an excluded credential")
        rp_id = options["rp"]["id"]
        credential = Credential(os.urandom(16), ec.generate_private_key(ec.SECP256R1()), rp_id, unb64url(options["user"]["id"]))
        self.credentials[credential.id] = credential
        attested = bytes(16) + struct.pack(">H", len(credential.id)) + credential.id + credential.cose_key()
        auth_data = hashlib.sha256(rp_id.encode()).digest() + bytes([self.flags(user_verified) | AT]) + struct.pack(">I", 0) + attested
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": credential.b64id,
            "rawId": credential.b64id,
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(self.client_data("webauthn.create", options["challenge"], origin)),
                "attestationObject": b64url(attestation),
                "transports": ["internal", "hybrid"],
            },
        }

    def get(
        self,
        options: dict[str, Any],
        credential: Credential | None = None,
        origin: str | None = None,
        user_verified: bool = True,
        sign_count: int | None = None,
    ) -> dict[str, Any]:
        """An assertion answering ``options`` (the request options' JSON form), by ``credential`` (default: the
        only one allowed, or the only one held), with the next counter value unless ``sign_count`` is given."""
        if credential is None:
            allowed = [unb64url(c["id"]) for c in options.get("allowCredentials", [])]
            usable = [c for c in self.credentials.values() if not allowed or c.id in allowed]
            assert len(usable) == 1, f"{len(usable)} credentials could answer; name one"
            credential = usable[0]
        if sign_count is None:
            sign_count = 0 if self.synced else credential.sign_count + 1
        credential.sign_count = max(credential.sign_count, sign_count)
        rp_id = options.get("rpId", credential.rp_id)
        auth_data = hashlib.sha256(rp_id.encode()).digest() + bytes([self.flags(user_verified)]) + struct.pack(">I", sign_count)
        client_data = self.client_data("webauthn.get", options["challenge"], origin)
        signature = credential.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": credential.b64id,
            "rawId": credential.b64id,
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(credential.user_handle),
            },
        }
