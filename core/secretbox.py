"""Secrets at rest: the one module that encrypts what the store must keep but never show.

Signing keys (and, later, any other secret a feature must store, such as
second-factor seeds) are sealed with Fernet (AES-128-CBC with HMAC-SHA256,
from ``cryptography``) under a key derived from a server secret with HKDF.
A copy of the database alone therefore opens nothing: it takes the secret
from the environment as well. Each use names its own ``purpose``, so the
keys derived for different purposes are unrelated.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SecretBox", "SealBroken", "derive"]


class SealBroken(ValueError):
    """A sealed value was tampered with, or sealed under another secret or purpose."""


def derive(secret: str, purpose: str, length: int = 32) -> bytes:
    """``length`` bytes derived from ``secret`` for ``purpose`` (HKDF-SHA256); one-way, so they reveal nothing of it."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=f"turnstile:{purpose}".encode()).derive(
        secret.encode()
    )


class SecretBox:
    """Seals and opens values under a key derived from ``secret`` for ``purpose``."""

    def __init__(self, secret: str, purpose: str) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(derive(secret, purpose)))

    def seal(self, plaintext: bytes) -> str:
        """The encrypted, authenticated form of ``plaintext``, as text a store can keep."""
        return self._fernet.encrypt(plaintext).decode("ascii")

    def open(self, sealed: str) -> bytes:
        """The plaintext of what `seal` gave; raises `SealBroken` if it was altered or sealed under another key."""
        try:
            return self._fernet.decrypt(sealed.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError, ValueError):
            raise SealBroken("sealed value cannot be opened with this secret") from None
