"""User accounts and refresh-token sessions, on the store.

Shared by the auth and users plugins and the command line, so the data
layout lives in one place:

* ``auth.users``, keyed by username: ``{username, password (bcrypt), roles
  (codes, see core.roles), created}``.
* ``auth.sessions``, keyed by the SHA-256 of a refresh token (the raw token
  is never stored): ``{digest (the key again), username, family, created,
  expires, retired, successor}``. A *family* is one login; every ``/refresh``
  retires the presented token (``retired`` = when) and adds its successor to
  the family. ``family`` and ``username`` are indexed, so ending a session or
  all of a user's sessions costs O(their records), not a scan.

Every read-modify-write runs in one store transaction, so concurrent
requests (and the command line, in another process) see each other's
changes and never interleave. A transaction re-reads files another process
changed, which is also how a running server picks up what the command line
did.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .errors import APIError
from .jsondb import KeyExists, Store, TxCollection
from .roles import stored_roles
from .security import BCRYPT_MAX_BYTES

USERS = "auth.users"
SESSIONS = "auth.sessions"
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"
_USERNAME = re.compile(USERNAME_PATTERN)


def check_username(name: str) -> str:
    """400 unless ``name`` is 1-32 letters, digits, ``_ . -``, starting with a letter or digit."""
    if not _USERNAME.match(name):
        raise APIError(
            400, "Username must be 1 to 32 letters, digits, '_', '.' or '-', starting with a letter or digit."
        )
    return name


def check_password_length(pwd: str, minimum: int) -> str:
    """400 for a password bcrypt would refuse (over 72 bytes) or one shorter than ``minimum`` characters."""
    if len(pwd.encode()) > BCRYPT_MAX_BYTES:
        raise APIError(400, f"Password must be at most {BCRYPT_MAX_BYTES} bytes.")
    if len(pwd) < minimum:
        raise APIError(400, f"Password must be at least {minimum} characters.")
    return pwd


def public_user(doc: dict[str, Any], sessions: int | None = None) -> dict[str, Any]:
    """What may be shown about a user: never the password hash or anything about tokens."""
    view: dict[str, Any] = {
        "username": doc["username"],
        "roles": stored_roles(doc),
        "created": doc.get("created"),
    }
    if sessions is not None:
        view["sessions"] = sessions
    return view


class RefreshOutcome(Enum):
    """What presenting a refresh token did."""

    ROTATED = "rotated"  # the token was current: ``token`` is its successor
    GRACE = "grace"  # retired moments ago (two tabs refreshing together): answer, but issue no new refresh token
    REUSED = "reused"  # retired earlier: the whole family was revoked
    UNKNOWN = "unknown"  # no such live session of that user


@dataclass
class Refreshed:
    """Outcome of presenting a refresh token, with what the answer needs."""

    outcome: RefreshOutcome
    username: str | None = None
    roles: list[int] | None = None
    token: str | None = None


class Accounts:
    """Users and sessions. One per application (``services.accounts``), built by `open`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    async def open(cls, store: Store) -> "Accounts":
        """The accounts on ``store``, with the session indexes in place (idempotent)."""
        sessions = store.collection(SESSIONS)
        sessions.ensure_index("family")
        sessions.ensure_index("username")
        return cls(store)

    # -- users --------------------------------------------------------------------------

    async def user(self, name: str) -> dict[str, Any] | None:
        """The user as currently on disk (picks up changes made by another process)."""
        async with self.store.transaction() as tx:
            return tx.collection(USERS).get(name)

    async def users(self) -> list[dict[str, Any]]:
        """Public views of every user with their live session count, sorted by name."""
        now = int(time.time())
        async with self.store.transaction() as tx:
            users = tx.collection(USERS).all()
            counts: dict[str, set[str]] = {}
            for s in tx.collection(SESSIONS).all():
                if s.get("expires", 0) >= now and s.get("retired") is None:
                    counts.setdefault(s["username"], set()).add(s.get("family", ""))
        return [public_user(u, len(counts.get(u["username"], ()))) for u in sorted(users, key=lambda u: u["username"])]

    async def exists(self, name: str) -> bool:
        """Whether a user ``name`` exists (a cheap check before the slow hashing of a registration)."""
        return await self.user(name) is not None

    async def create_user(self, name: str, hashed: str, roles: list[int]) -> dict[str, Any]:
        """Insert a user; `KeyExists` if the name is taken."""
        doc = {"username": name, "password": hashed, "roles": roles, "created": int(time.time())}
        async with self.store.transaction() as tx:
            tx.collection(USERS).insert(doc, key=name)
        return doc

    async def set_roles(self, name: str, roles: list[int]) -> bool:
        async with self.store.transaction() as tx:
            return tx.collection(USERS).update(name, {"roles": roles}) is not None

    async def set_password(self, name: str, hashed: str, expected_old: str | None = None) -> bool:
        """Store a new hash and end every session of the user, atomically.

        With ``expected_old``, refuse (False) if the stored hash changed since
        the caller checked the old password.
        """
        async with self.store.transaction() as tx:
            users = tx.collection(USERS)
            current = users.get(name)
            if current is None or (expected_old is not None and current["password"] != expected_old):
                return False
            users.update(name, {"password": hashed})
            _drop(tx.collection(SESSIONS), username=name)
        return True

    async def delete_user(self, name: str) -> int | None:
        """Delete the user and their sessions; the number of session records removed, or None if absent."""
        async with self.store.transaction() as tx:
            if not tx.collection(USERS).delete(name):
                return None
            return _drop(tx.collection(SESSIONS), username=name)

    # -- sessions -------------------------------------------------------------------------

    async def revoke_all(self, name: str) -> int:
        """End every session of ``name``; the number of session records removed."""
        async with self.store.transaction() as tx:
            return _drop(tx.collection(SESSIONS), username=name)

    async def start_session(self, name: str, digest: str, ttl: int, password_hash: str) -> bool:
        """Record a new login's first refresh token, if the user and password are unchanged."""
        now = int(time.time())
        async with self.store.transaction() as tx:
            user = tx.collection(USERS).get(name)
            if user is None or user["password"] != password_hash:
                return False
            tx.collection(SESSIONS).put(digest, _session(digest, name, secrets.token_hex(16), now, ttl))
        return True

    async def refresh(self, digest: str, username: str, new_token: str, new_digest: str, ttl: int, grace: int) -> Refreshed:
        """Rotate the token whose SHA-256 is ``digest``, with reuse detection.

        ``new_token`` becomes the successor if the presented token is current.
        A retired token seen again more than ``grace`` seconds after it was
        retired revokes its whole family, the newest token included.
        """
        now = int(time.time())
        async with self.store.transaction() as tx:
            sessions = tx.collection(SESSIONS)
            record = sessions.get(digest)
            if record is None or record.get("expires", 0) < now or record.get("username") != username:
                return Refreshed(RefreshOutcome.UNKNOWN)
            family = record.get("family") or digest  # a record from before families is its own
            user = tx.collection(USERS).get(username)
            if user is None:
                _drop_family(sessions, family, digest)
                return Refreshed(RefreshOutcome.UNKNOWN)
            roles = stored_roles(user)
            retired = record.get("retired")
            if retired is not None:
                if grace > 0 and now - retired <= grace:
                    return Refreshed(RefreshOutcome.GRACE, username, roles)
                _drop_family(sessions, family, digest)
                return Refreshed(RefreshOutcome.REUSED, username)
            sessions.update(digest, {"digest": digest, "family": family, "retired": now, "successor": new_digest})
            sessions.put(new_digest, _session(new_digest, username, family, now, ttl))
        return Refreshed(RefreshOutcome.ROTATED, username, roles, new_token)

    async def end_session(self, digest: str) -> int:
        """Log out: end the family of the token whose SHA-256 is ``digest``."""
        async with self.store.transaction() as tx:
            sessions = tx.collection(SESSIONS)
            record = sessions.get(digest)
            if record is None:
                return 0
            return _drop_family(sessions, record.get("family") or digest, digest)

    async def prune(self) -> int:
        """Delete expired session records (retired ones are kept until then, for reuse detection)."""
        now = int(time.time())
        async with self.store.transaction() as tx:
            sessions = tx.collection(SESSIONS)
            expired = lambda s: s.get("expires", 0) < now  # noqa: E731
            return sessions.delete_where(expired) if sessions.find(expired) else 0


def _session(digest: str, username: str, family: str, now: int, ttl: int) -> dict[str, Any]:
    return {
        "digest": digest,
        "username": username,
        "family": family,
        "created": now,
        "expires": now + ttl,
        "retired": None,
        "successor": None,
    }


def _drop(sessions: TxCollection, **equals: Any) -> int:
    """Delete the session records matching ``field=value`` through the index; how many."""
    docs = sessions.find(**equals)
    if all("digest" in d for d in docs):
        for doc in docs:
            sessions.delete(doc["digest"])
        return len(docs)
    # Records written before they carried their own key: find them by scanning.
    return sessions.delete_where(lambda s: all(s.get(k) == v for k, v in equals.items()))


def _drop_family(sessions: TxCollection, family: str, digest: str) -> int:
    """End a family: every record in it, and the presented record itself."""
    return _drop(sessions, family=family) + int(sessions.delete(digest))


__all__ = [
    "Accounts",
    "KeyExists",
    "RefreshOutcome",
    "Refreshed",
    "SESSIONS",
    "USERS",
    "USERNAME_PATTERN",
    "check_password_length",
    "check_username",
    "public_user",
]
