"""One-time tokens for the links in recovery mails: random, single-use, short-lived, stored only as SHA-256.

``recovery.tokens`` is keyed by the token's SHA-256 (hex); the raw token
exists only in the mail. A token is 32 random bytes (256 bits) from
`secrets`, so it cannot be guessed and a fast hash is enough to store it:
unlike a password there is nothing to stretch. Being in the store, a token
issued by one worker or instance is redeemed by any other, on either backend.

A document records what the token was issued against: its ``kind``
(``reset`` or ``verify``), the user, the address the link went to and, for a
reset, a fingerprint of the password hash of that moment. A change of any of
these voids the token without anyone having to find it: a password changed
by ``/password`` or ``user passwd`` no longer matches the fingerprint.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Callable

from core.plugin import Doc, Namespace, token_digest, where

RESET = "reset"
VERIFY = "verify"
COLLECTION = "tokens"
TOKEN_BYTES = 32  # 256 bits


def password_fingerprint(hashed: str) -> str:
    """What a reset token remembers of the password hash it was issued against (not the hash itself)."""
    return hashlib.sha256(hashed.encode()).hexdigest()


class OneTimeTokens:
    """Issue, check and redeem the tokens of ``recovery.tokens``."""

    def __init__(self, db: Namespace, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    async def setup(self) -> None:
        """Index the field tokens are voided by; idempotent."""
        await self.db.ensure_index(COLLECTION, "username")

    async def issue(self, kind: str, username: str, ttl: int, *, single: bool = False, **bound: str) -> str:
        """A new raw token of ``kind`` for ``username``, valid ``ttl`` seconds; only its SHA-256 is stored.

        ``single``: void the user's other tokens of this kind in the same
        transaction (a new reset request ends the earlier links).
        """
        raw = secrets.token_urlsafe(TOKEN_BYTES)
        now = int(self.clock())
        doc = {"kind": kind, "username": username, "created": now, "expires": now + ttl, **bound}
        async with self.db.transaction() as tx:
            tokens = tx.collection(COLLECTION)
            if single:
                await tokens.delete_where(username=username, kind=kind)
            await tokens.insert(doc, key=token_digest(raw))
        return raw

    async def peek(self, kind: str, raw: str) -> Doc | None:
        """The live token's document, without using it up (to check it before slow work); None if unknown or expired."""
        return self._live(kind, await self.db.collection(COLLECTION).get(token_digest(raw)))

    async def redeem(self, kind: str, raw: str) -> Doc | None:
        """Use the token up: its document if it was live, else None. Of two concurrent redeems one wins."""
        key = token_digest(raw)
        async with self.db.transaction() as tx:
            tokens = tx.collection(COLLECTION)
            doc = await tokens.get(key)
            if doc is None:
                return None
            await tokens.delete(key)
        return self._live(kind, doc)

    async def void(self, kind: str, username: str) -> int:
        """End every outstanding token of ``kind`` of the user; how many."""
        return await self.db.collection(COLLECTION).delete_where(username=username, kind=kind)

    async def prune(self) -> int:
        """Delete expired tokens; how many."""
        return await self.db.collection(COLLECTION).delete_where(where("expires") < int(self.clock()))

    def _live(self, kind: str, doc: Doc | None) -> Doc | None:
        if doc is None or doc.get("kind") != kind or doc["expires"] <= self.clock():
            return None
        return doc
