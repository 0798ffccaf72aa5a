"""User accounts and refresh-token sessions, on the store.

Shared by the auth and users plugins and the command line, so the data
layout lives in one place:

* ``auth.users``, keyed by username: ``{username, password (bcrypt), roles
  (codes, see core.roles), created}``. Usernames are case-insensitive: a new
  user is stored lower-cased (`fold_username`), and every lookup folds the name
  it is given, so ``Alice`` and ``alice`` are one account and one throttle key.
  A user stored with capitals by an earlier build is still found under the
  exact name it was created with.
  ``email`` (lower-cased, or absent) and ``email_verified`` are optional: the
  `recovery` plugin mails reset links to a verified address. ``factors``
  (optional) maps each second factor the user has (``totp``, ``passkeys``,
  ``recovery_codes``...) to what the plugin that checks it keeps: secrets
  sealed or hashed by that plugin. Keeping them on the user makes them go with
  the user (deleted, copied between stores) and lets an operator remove them
  all at once (``user mfa-reset``) without knowing which plugin made them.
* ``auth.emails``, keyed by address: ``{username}``, for verified addresses
  only. It is what makes an address belong to one account: verifying one
  claims it with an insert under its key, in the same transaction as the
  user's change, so two accounts never own one, on any backend and however
  many processes race. An unverified address claims nothing: nobody can squat
  an address they cannot read mail at, and setting one never tells whether
  another account has it.
* ``auth.sessions``, keyed by the SHA-256 of a refresh token (the raw token
  is never stored): ``{digest (the key again), username, family, created,
  expires, retired, successor, amr, auth_time}``. A *family* is one login;
  every ``/refresh`` retires the presented token (``retired`` = when) and adds
  its successor to the family, which keeps the login's ``amr`` (how it was
  made) and ``auth_time`` (when) for the access tokens it goes on to get. ``family`` and ``username`` are indexed, so ending a session or
  all of a user's sessions costs O(their records), not a scan.

Every read-modify-write runs in one store transaction, so concurrent
requests (and the command line, or another instance on the same database)
see each other's changes and never interleave. Only the `core.store`
interface is used, so any backend serves.
"""

from __future__ import annotations

import inspect
import re
import secrets
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Awaitable, Callable, Sequence

from email_validator import EmailNotValidError, validate_email

from .errors import APIError
from .roles import stored_roles
from .security import BCRYPT_MAX_BYTES
from .store import Collection, KeyExists, Store, where

PASSWORD_AMR = ("pwd",)  # RFC 8176: a sign-in by password alone (and sessions from before ``amr`` was kept)
USERS = "auth.users"
SESSIONS = "auth.sessions"
EMAILS = "auth.emails"
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"
USERNAME_RULE = "Username must be 1 to 32 letters, digits, '_', '.' or '-', starting with a letter or digit."
_USERNAME = re.compile(USERNAME_PATTERN)


def check_username(name: str) -> str:
    """400 unless ``name`` is 1-32 letters, digits, ``_ . -``, starting with a letter or digit."""
    if not _USERNAME.match(name):
        raise APIError(400, USERNAME_RULE)
    return name


def fold_username(name: str) -> str:
    """The one spelling a username is stored and looked up under: lower case (usernames are ASCII)."""
    return name.lower()


def check_password_length(pwd: str, minimum: int) -> str:
    """400 for a password bcrypt would refuse (over 72 bytes) or one shorter than ``minimum`` characters."""
    if len(pwd.encode()) > BCRYPT_MAX_BYTES:
        raise APIError(400, f"Password must be at most {BCRYPT_MAX_BYTES} bytes.")
    if len(pwd) < minimum:
        raise APIError(400, f"Password must be at least {minimum} characters.")
    return pwd


def check_email(address: str) -> str:
    """The address as stored: email-validator's normalized ASCII form (an international domain as punycode),
    lower-cased; 400 naming what is wrong.

    Syntax only: no DNS lookup, so a check never waits on the network. A
    non-ASCII local part is refused: it needs SMTPUTF8, which many relays lack,
    and a mail that cannot be delivered is a reset that never arrives.
    """
    try:
        checked = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise APIError(400, f"Invalid email address: {exc}") from None
    return str(checked.ascii_email or checked.normalized).lower()


def public_user(doc: dict[str, Any], sessions: int | None = None) -> dict[str, Any]:
    """What may be shown about a user (to an admin): never the password hash or anything about tokens."""
    view: dict[str, Any] = {
        "username": doc["username"],
        "roles": stored_roles(doc),
        "created": doc.get("created"),
        "email": doc.get("email"),
        "email_verified": bool(doc.get("email_verified")),
        "factors": sorted(name for name, value in (doc.get("factors") or {}).items() if value),
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
    #: How the sign-in this session descends from was made (RFC 8176), for the new access token.
    amr: list[str] = field(default_factory=lambda: list(PASSWORD_AMR))
    #: When that sign-in was (0: a session from before it was kept), for the token's ``auth_time``.
    auth_time: int = 0


class Accounts:
    """Users and sessions. One per application (``services.accounts``), built by `open`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._users = store.collection(USERS)
        self._sessions = store.collection(SESSIONS)
        self._emails = store.collection(EMAILS)

    @classmethod
    async def open(cls, store: Store) -> "Accounts":
        """The accounts on ``store``: session indexes in place, old session records brought up to date."""
        await store.ensure_index(SESSIONS, "family")
        await store.ensure_index(SESSIONS, "username")
        accounts = cls(store)
        await accounts._upgrade_old_sessions()
        return accounts

    async def _upgrade_old_sessions(self) -> int:
        """Give session records from early builds the fields every record now has; how many.

        Builds before commit 099584a stored no ``digest`` in the record, and
        those before 5708930 no ``family`` either (such a record is a family of
        its own). Rewriting them once here keeps every other path free of
        branches for them. Cheap when there are none: one indexed count.
        """
        if not await self._sessions.count(digest=None):
            return 0
        fixed = 0
        async with self.store.transaction() as tx:
            sessions = tx.collection(SESSIONS)
            for key, doc in await sessions.items():
                if doc.get("digest") is None:
                    await sessions.put(key, {"family": key, "retired": None, "successor": None, **doc, "digest": key})
                    fixed += 1
        return fixed

    # -- users --------------------------------------------------------------------------

    async def user(self, name: str) -> dict[str, Any] | None:
        """The user as stored now (what another process or instance changed included), in any case."""
        key = fold_username(name)
        doc = await self._users.get(key)
        if doc is None and key != name:  # stored with capitals by an earlier build
            doc = await self._users.get(name)
        return doc

    async def exists(self, name: str) -> bool:
        """Whether a user ``name`` exists, in any case (a cheap check before the slow hashing of a registration)."""
        key = fold_username(name)
        return await self._users.exists(key) or (key != name and await self._users.exists(name))

    async def _key(self, name: str) -> str:
        """The key to change ``name`` under: folded, unless only an earlier build's capitalised record exists."""
        key = fold_username(name)
        if key == name or await self._users.exists(key) or not await self._users.exists(name):
            return key
        return name

    async def users(self) -> list[dict[str, Any]]:
        """Public views of every user with their live session count, sorted by name."""
        now = int(time.time())
        users = await self._users.all()
        counts: dict[str, set[str]] = {}
        for s in await self._sessions.find(where("expires") >= now, retired=None):
            counts.setdefault(s["username"], set()).add(s["family"])
        return [public_user(u, len(counts.get(u["username"], ()))) for u in sorted(users, key=lambda u: u["username"])]

    async def create_user(self, name: str, hashed: str, roles: list[int], email: str | None = None) -> dict[str, Any]:
        """Insert a user under its folded name, with an unverified ``email`` (checked by `check_email`) if given.

        `KeyExists` if the name is taken in any case. The address claims nothing until it is verified.
        """
        if name != fold_username(name) and await self._users.exists(name):  # an earlier build's user
            raise KeyExists(name)
        name = fold_username(name)
        doc: dict[str, Any] = {"username": name, "password": hashed, "roles": roles, "created": int(time.time())}
        if email is not None:
            doc.update(email=email, email_verified=False)
        await self._users.insert(doc, key=name)
        return doc

    async def user_by_email(self, email: str) -> dict[str, Any] | None:
        """The user who verified ``email`` (as `check_email` returns it), or None: an unverified address is nobody's."""
        owner = await self._emails.get(email)
        if owner is None:
            return None
        user = await self._users.get(owner["username"])
        return user if user is not None and user.get("email") == email and user.get("email_verified") else None

    async def set_email(self, name: str, email: str) -> dict[str, Any] | None:
        """Give the user ``email``, unverified, and release their old one; the user as stored, or None if absent.

        The same address again changes nothing (a verified one stays verified).
        """
        name = await self._key(name)
        async with self.store.transaction() as tx:
            users = tx.collection(USERS)
            user = await users.get(name)
            if user is None or user.get("email") == email:
                return user
            await _free_email(tx.collection(EMAILS), user.get("email"), name)
            return await users.update(name, {"email": email, "email_verified": False})

    async def factors(self, name: str) -> dict[str, Any]:
        """The user's second factors as stored (each plugin's own entries); empty for no user."""
        user = await self.user(name)
        return dict((user or {}).get("factors") or {})

    async def update_factors(
        self, name: str, change: Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None] | dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Read-modify-write the user's factors in one transaction: ``change(factors)`` returns the new map
        (None: leave it as it is). The factors after, or None if there is no such user.

        A check that must not race (a TOTP step used once, a passkey's counter)
        goes inside ``change``: two requests for one user run one after the other.
        """
        name = await self._key(name)
        async with self.store.transaction() as tx:
            users = tx.collection(USERS)
            user = await users.get(name)
            if user is None:
                return None
            current = dict(user.get("factors") or {})
            result = change(current)
            new = await result if inspect.isawaitable(result) else result
            if new is None:
                return current
            await users.update(name, {"factors": {k: v for k, v in new.items() if v}})
            return new

    async def reset_factors(self, name: str) -> bool:
        """Remove every second factor of the user (``user mfa-reset``); whether the user exists."""
        return await self.update_factors(name, lambda factors: {}) is not None

    async def mark_email_verified(self, name: str, email: str) -> bool:
        """Mark the user's address verified and make it theirs, if it is still ``email`` (the one a link was
        sent to) and no other account verified it first; whether it is now verified."""
        name = await self._key(name)
        async with self.store.transaction() as tx:
            users, emails = tx.collection(USERS), tx.collection(EMAILS)
            user = await users.get(name)
            if user is None or user.get("email") != email:
                return False
            if user.get("email_verified"):
                return True
            owner = await emails.get(email)  # read in the transaction: the key is held until it ends
            if owner is not None and owner.get("username") != name:
                return False
            await emails.put(email, {"username": name})
            await users.update(name, {"email_verified": True})
            return True

    async def set_roles(self, name: str, roles: list[int]) -> bool:
        return await self._users.update(await self._key(name), {"roles": roles}) is not None

    async def set_password(self, name: str, hashed: str, expected_old: str | None = None) -> bool:
        """Store a new hash and end every session of the user, atomically.

        With ``expected_old``, refuse (False) if the stored hash changed since
        the caller checked the old password.
        """
        name = await self._key(name)
        async with self.store.transaction() as tx:
            users = tx.collection(USERS)
            current = await users.get(name)
            if current is None or (expected_old is not None and current["password"] != expected_old):
                return False
            await users.update(name, {"password": hashed})
            await tx.collection(SESSIONS).delete_where(username=name)
        return True

    async def delete_user(self, name: str) -> int | None:
        """Delete the user and their sessions; the number of session records removed, or None if absent."""
        name = await self._key(name)
        async with self.store.transaction() as tx:
            users = tx.collection(USERS)
            user = await users.get(name)
            if user is None:
                return None
            await users.delete(name)
            await _free_email(tx.collection(EMAILS), user.get("email"), name)
            return await tx.collection(SESSIONS).delete_where(username=name)

    # -- sessions -------------------------------------------------------------------------

    async def revoke_all(self, name: str) -> int:
        """End every session of ``name``; the number of session records removed."""
        name = await self._key(name)
        return await self._sessions.delete_where(username=name)

    async def start_session(
        self, name: str, digest: str, ttl: int, password_hash: str, amr: Sequence[str] = PASSWORD_AMR, auth_time: int | None = None
    ) -> bool:
        """Record a new sign-in's first refresh token, if the user and password are unchanged.

        ``amr`` says how the user signed in and ``auth_time`` when (now by
        default); every token refreshed from this session carries both.
        """
        now = int(time.time())
        signed_in = now if auth_time is None else auth_time
        async with self.store.transaction() as tx:
            user = await tx.collection(USERS).get(name)
            if user is None or user["password"] != password_hash:
                return False
            await tx.collection(SESSIONS).put(digest, _session(digest, name, secrets.token_hex(16), now, ttl, list(amr), signed_in))
        return True

    async def refresh(self, digest: str, username: str, new_token: str, new_digest: str, ttl: int, grace: int) -> Refreshed:
        """Rotate the token whose SHA-256 is ``digest``, with reuse detection.

        ``new_token`` becomes the successor if the presented token is current.
        A retired token seen again more than ``grace`` seconds after it was
        retired revokes its whole family, the newest token included.
        """
        now = int(time.time())
        # The user is read outside the transaction: a refresh never writes it, and reading it inside
        # would lock it, so every rotation of that user's sessions (one per device) would queue behind
        # the others on PostgreSQL. Any interleaving with a role change equals a serial order; deleting
        # the user or changing the password ends the sessions under their own locks.
        user = await self._users.get(username)
        async with self.store.transaction() as tx:
            sessions = tx.collection(SESSIONS)
            record = await sessions.get(digest)
            if record is None or record["expires"] < now or record["username"] != username:
                return Refreshed(RefreshOutcome.UNKNOWN)
            family = record["family"]
            if user is None:
                await _drop_family(sessions, family)
                return Refreshed(RefreshOutcome.UNKNOWN)
            roles = stored_roles(user)
            retired = record["retired"]
            if retired is not None:
                if grace > 0 and now - retired <= grace:
                    return Refreshed(RefreshOutcome.GRACE, username, roles, amr=_amr(record), auth_time=record.get("auth_time", 0))
                await _drop_family(sessions, family)
                return Refreshed(RefreshOutcome.REUSED, username)
            await sessions.update(digest, {"retired": now, "successor": new_digest})
            signed_in = record.get("auth_time", 0)
            await sessions.put(new_digest, _session(new_digest, username, family, now, ttl, _amr(record), signed_in))
        return Refreshed(RefreshOutcome.ROTATED, username, roles, new_token, _amr(record), signed_in)

    async def end_session(self, digest: str) -> int:
        """Log out: end the family of the token whose SHA-256 is ``digest``."""
        async with self.store.transaction() as tx:
            sessions = tx.collection(SESSIONS)
            record = await sessions.get(digest)
            if record is None:
                return 0
            return await _drop_family(sessions, record["family"])

    async def prune(self) -> int:
        """Delete expired session records (retired ones are kept until then, for reuse detection)."""
        return await self._sessions.delete_where(where("expires") < int(time.time()))


def _amr(record: dict[str, Any]) -> list[str]:
    return list(record.get("amr") or PASSWORD_AMR)


def _session(digest: str, username: str, family: str, now: int, ttl: int, amr: list[str], auth_time: int) -> dict[str, Any]:
    return {
        "digest": digest,
        "username": username,
        "family": family,
        "created": now,
        "expires": now + ttl,
        "retired": None,
        "successor": None,
        "amr": amr,
        "auth_time": auth_time,
    }


async def _free_email(emails: Collection, email: str | None, name: str) -> None:
    """Release ``name``'s old address (only if it is still theirs)."""
    if email is not None:
        owner = await emails.get(email)
        if owner is not None and owner.get("username") == name:
            await emails.delete(email)


async def _drop_family(sessions: Collection, family: str) -> int:
    """End a family (one login): every record in it, the presented one included."""
    return await sessions.delete_where(family=family)


__all__ = [
    "Accounts",
    "EMAILS",
    "KeyExists",
    "PASSWORD_AMR",
    "RefreshOutcome",
    "Refreshed",
    "SESSIONS",
    "USERS",
    "USERNAME_PATTERN",
    "check_email",
    "check_password_length",
    "check_username",
    "fold_username",
    "public_user",
]
