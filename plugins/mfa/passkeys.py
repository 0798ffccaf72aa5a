"""Passkeys (WebAuthn Level 3, with py_webauthn): registering them, and signing in with them.

What is kept where, and why:

* a user's passkeys are on the user record, ``factors["passkeys"]``: a list of
  ``{id, public_key, sign_count, name, created, lastUsed, device_type,
  backed_up, transports}`` (ids and keys base64url). So they go with the user
  and ``user mfa-reset`` removes them with every other factor, and the
  counter check and its update are one transaction (`Accounts.update_factors`).
* ``mfa.credentials``, keyed by credential id: ``{username}``. A discoverable
  sign-in names no user, only the credential; this finds the user. A row whose
  credential is no longer in that user's factors (after ``user mfa-reset``) is
  a dead end: refused, and replaced if that credential is registered again.
* ``mfa.challenges``, keyed by the SHA-256 (hex) of the challenge bytes:
  ``{kind, username, expires}``. Random, single use (read and deleted in one
  transaction), short-lived, and in the store, so a ceremony begun on one
  worker or instance can end on any other.
* ``mfa.handles``, keyed by username: ``{handle}``, the random WebAuthn user
  handle (``user.id``) of the account. It is stable, so an authenticator
  replaces its old passkey for the account rather than piling them up, and it
  says nothing about the user (WebAuthn forbids personal data there).

A refusal tells the client nothing about why: one message for any failure of
a ceremony (the reason goes to the error log only).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from typing import Any, Callable, Sequence

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    generate_challenge,
    generate_user_handle,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from core.plugin import Accounts, APIError, KeyExists, Namespace, StoreError, fold_username, where

REGISTER = "register"
LOGIN = "login"
CREDENTIALS = "credentials"
CHALLENGES = "challenges"
HANDLES = "handles"
MAX_PASSKEYS = 20  # per user: keeps the user record (and excludeCredentials) small
NAME_LENGTH = 64
SINGLE_DEVICE = CredentialDeviceType.SINGLE_DEVICE.value
MULTI_DEVICE = CredentialDeviceType.MULTI_DEVICE.value
#: RFC 8176: a key held in hardware (a security key, a TPM) or in software (synced between devices), with the user verified.
AMR = {SINGLE_DEVICE: ["hwk", "user"], MULTI_DEVICE: ["swk", "user"]}

SIGN_IN_REFUSED = "Passkey sign-in failed."
REGISTRATION_REFUSED = "The passkey could not be registered; start again."
TOO_MANY = f"You have {MAX_PASSKEYS} passkeys; remove one before adding another."


def challenge_key(challenge: bytes) -> str:
    """Where a challenge is stored: its SHA-256, so the store never holds a challenge that could still be answered."""
    return hashlib.sha256(challenge).hexdigest()


def _passkeys(factors: dict[str, Any]) -> list[dict[str, Any]]:
    return list(factors.get("passkeys") or [])


def _find(passkeys: list[dict[str, Any]], credential_id: str) -> dict[str, Any] | None:
    return next((p for p in passkeys if p.get("id") == credential_id), None)


def _descriptors(passkeys: list[dict[str, Any]]) -> list[PublicKeyCredentialDescriptor]:
    known = {t.value for t in AuthenticatorTransport}
    return [
        PublicKeyCredentialDescriptor(
            id=base64url_to_bytes(p["id"]),
            transports=[AuthenticatorTransport(t) for t in p.get("transports") or [] if t in known] or None,
        )
        for p in passkeys
    ]


def _same_user(a: str | None, b: str | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and fold_username(a) == fold_username(b))


class Passkeys:
    """The passkey ceremonies over the store; stateless apart from it, so any number may serve the same data."""

    def __init__(
        self,
        accounts: Accounts,
        db: Namespace,
        rp_id: str,
        rp_name: str,
        origins: Sequence[str],
        clock: Callable[[], float] = time.time,
        challenge_ttl: int = 300,
    ) -> None:
        if not rp_id or not rp_name or not origins:
            raise ValueError("a passkey relying party needs an id, a name and at least one origin")
        self.accounts = accounts
        self.db = db
        self.rp_id = rp_id
        self.rp_name = rp_name
        self.origins = list(dict.fromkeys(o.rstrip("/") for o in origins))
        self.clock = clock
        self.challenge_ttl = challenge_ttl

    # -- challenges -----------------------------------------------------------------------

    async def _issue_challenge(self, kind: str, username: str | None) -> bytes:
        challenge = generate_challenge()
        expires = self.clock() + self.challenge_ttl
        await self.db.collection(CHALLENGES).put(challenge_key(challenge), {"kind": kind, "username": username, "expires": expires})
        return challenge

    async def _consume_challenge(self, challenge: bytes, kind: str, username: str | None) -> str | None:
        """Take a challenge (deleted in the transaction that reads it); None if it is good, else why not."""
        key = challenge_key(challenge)
        async with self.db.transaction() as tx:
            challenges = tx.collection(CHALLENGES)
            doc = await challenges.get(key)
            if doc is None:
                return "challenge unknown, used or pruned"
            await challenges.delete(key)
        if doc.get("expires", 0) < self.clock():
            return "challenge expired"
        if doc.get("kind") != kind:
            return f"challenge was issued for {doc.get('kind')}"
        if not _same_user(doc.get("username"), username):
            return "challenge was issued for another sign-in"
        return None

    async def prune(self) -> int:
        """Delete expired challenges; how many."""
        return await self.db.collection(CHALLENGES).delete_where(where("expires") < self.clock())

    async def _user_handle(self, username: str) -> bytes:
        """The account's WebAuthn user handle: random, made on first use, then the same every time."""
        handles = self.db.collection(HANDLES)
        key = fold_username(username)
        doc = await handles.get(key)
        if doc is None:
            try:
                doc = await handles.insert({"handle": bytes_to_base64url(generate_user_handle())}, key=key)
            except KeyExists:  # another request made it meanwhile
                doc = await handles.get(key)
        assert doc is not None
        return base64url_to_bytes(doc["handle"])

    # -- registration ---------------------------------------------------------------------

    async def registration_options(self, user: dict[str, Any]) -> str:
        """Creation options (``options_to_json`` text) for a discoverable, user-verified passkey of ``user``."""
        username = user["username"]
        passkeys = _passkeys(user.get("factors") or {})
        if len(passkeys) >= MAX_PASSKEYS:
            raise APIError(400, TOO_MANY)
        options = generate_registration_options(
            rp_id=self.rp_id,
            rp_name=self.rp_name,
            user_name=username,
            user_id=await self._user_handle(username),
            challenge=await self._issue_challenge(REGISTER, username),
            timeout=self.challenge_ttl * 1000,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=_descriptors(passkeys),
        )
        return options_to_json(options)

    async def register(self, user: dict[str, Any], credential: dict[str, Any], name: str | None) -> dict[str, Any]:
        """Verify a new passkey of ``user`` (its challenge used up) and store it; ``{"id", "name"}``. 400 if refused."""
        username = user["username"]

        def refused(reason: str) -> APIError:
            return APIError(400, REGISTRATION_REFUSED, log_message=f"passkey registration refused: {reason}")

        try:
            parsed = parse_registration_credential_json(credential)
            challenge = parse_client_data_json(parsed.response.client_data_json).challenge
        except Exception as exc:  # pure parsing of client input: any failure is the client's
            raise refused(f"malformed credential: {type(exc).__name__}") from None
        why = await self._consume_challenge(challenge, REGISTER, username)
        if why:
            raise refused(why)
        try:  # attestation statements may carry certificate chains to check: off the event loop
            verified = await asyncio.get_running_loop().run_in_executor(
                None,
                lambda: verify_registration_response(
                    credential=parsed,
                    expected_challenge=challenge,
                    expected_rp_id=self.rp_id,
                    expected_origin=self.origins,
                    require_user_verification=True,
                ),
            )
        except Exception as exc:
            raise refused(f"{type(exc).__name__}: {exc}") from None
        credential_id = bytes_to_base64url(verified.credential_id)
        await self._claim(credential_id, username, refused)
        now = int(self.clock())
        entry: dict[str, Any] = {
            "id": credential_id,
            "public_key": bytes_to_base64url(verified.credential_public_key),
            "sign_count": verified.sign_count,
            "name": "",
            "created": now,
            "lastUsed": None,
            "device_type": verified.credential_device_type.value,
            "backed_up": verified.credential_backed_up,
            "transports": [t.value for t in parsed.response.transports or []],
        }
        full = False

        def add(factors: dict[str, Any]) -> dict[str, Any] | None:
            nonlocal full
            passkeys = [p for p in _passkeys(factors) if p.get("id") != credential_id]
            if len(passkeys) >= MAX_PASSKEYS:
                full = True
                return None
            entry["name"] = (name or "").strip()[:NAME_LENGTH] or f"Passkey {len(passkeys) + 1}"
            return {**factors, "passkeys": [*passkeys, entry]}

        try:
            after = await self.accounts.update_factors(username, add)
        except BaseException:
            with contextlib.suppress(StoreError):  # the error that got here is the one to report
                await self._release(credential_id, username)
            raise
        if after is None or full:
            await self._release(credential_id, username)
            raise APIError(400, TOO_MANY) if full else refused("the user is gone")
        return {"id": credential_id, "name": entry["name"]}

    async def _claim(self, credential_id: str, username: str, refused: Callable[[str], APIError]) -> None:
        """Point the credential id at ``username``; refused if another user's passkey has that id."""
        credentials = self.db.collection(CREDENTIALS)
        try:
            await credentials.insert({"username": username}, key=credential_id)
            return
        except KeyExists:
            pass
        owner = await credentials.get(credential_id)
        if owner is not None and not _same_user(owner["username"], username):
            if _find(_passkeys(await self.accounts.factors(owner["username"])), credential_id) is not None:
                raise refused("the credential id is another user's passkey")
        await credentials.put(credential_id, {"username": username})  # a dead row (a reset), or this user's own

    async def _release(self, credential_id: str, username: str) -> None:
        """Drop the credential's row if it is ``username``'s."""
        async with self.db.transaction() as tx:
            credentials = tx.collection(CREDENTIALS)
            owner = await credentials.get(credential_id)
            if owner is not None and _same_user(owner["username"], username):
                await credentials.delete(credential_id)

    # -- authentication -------------------------------------------------------------------

    async def authentication_options(self, username: str | None) -> str:
        """Request options (``options_to_json`` text): any discoverable passkey (``username`` None), or that user's."""
        passkeys: list[dict[str, Any]] = []
        if username is not None:
            passkeys = _passkeys(await self.accounts.factors(username))
        options = generate_authentication_options(
            rp_id=self.rp_id,
            challenge=await self._issue_challenge(LOGIN, username),
            timeout=self.challenge_ttl * 1000,
            allow_credentials=_descriptors(passkeys),
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        return options_to_json(options)

    async def authenticate(self, credential: dict[str, Any], username: str | None) -> tuple[dict[str, Any], list[str]]:
        """Check an assertion; ``(user record, amr)``. 400 if it is malformed, 401 if it is wrong, unknown or replayed.

        With ``username`` (a second factor after a password), the challenge must
        have been issued for that user and the passkey must be theirs.
        """

        def refused(status: int, reason: str) -> APIError:
            return APIError(status, SIGN_IN_REFUSED, log_message=f"passkey sign-in refused: {reason}")

        try:
            parsed = parse_authentication_credential_json(credential)
            challenge = parse_client_data_json(parsed.response.client_data_json).challenge
        except Exception as exc:  # pure parsing of client input: any failure is the client's
            raise refused(400, f"malformed credential: {type(exc).__name__}") from None
        why = await self._consume_challenge(challenge, LOGIN, username)
        if why:
            raise refused(401, why)
        credential_id = bytes_to_base64url(parsed.raw_id)
        owner = await self.db.collection(CREDENTIALS).get(credential_id)
        if owner is None:
            raise refused(401, "unknown credential")
        if username is not None and not _same_user(owner["username"], username):
            raise refused(401, "the credential is another user's")
        user = await self.accounts.user(owner["username"])
        passkey = _find(_passkeys((user or {}).get("factors") or {}), credential_id) if user else None
        if user is None or passkey is None:
            raise refused(401, "the credential was removed")
        handle, stored_handle = parsed.response.user_handle, await self.db.collection(HANDLES).get(fold_username(user["username"]))
        if handle is not None and (stored_handle is None or handle != base64url_to_bytes(stored_handle["handle"])):
            raise refused(401, "the user handle is not the account's")
        try:
            verified = verify_authentication_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origins,
                credential_public_key=base64url_to_bytes(passkey["public_key"]),
                credential_current_sign_count=int(passkey.get("sign_count") or 0),
                require_user_verification=True,
            )
        except Exception as exc:
            raise refused(401, f"{type(exc).__name__}: {exc}") from None
        new_count = verified.new_sign_count
        now = int(self.clock())
        problem = ""

        def used(factors: dict[str, Any]) -> dict[str, Any] | None:
            """Check the counter against the stored one again, under the user's lock: two sign-ins never both pass."""
            nonlocal problem
            passkeys = _passkeys(factors)
            stored = _find(passkeys, credential_id)
            if stored is None:
                problem = "the credential was removed meanwhile"
                return None
            current = int(stored.get("sign_count") or 0)
            if (new_count or current) and new_count <= current:
                problem = f"signature counter {new_count} not above {current}: a cloned authenticator?"
                return None
            stored.update(sign_count=new_count, lastUsed=now, backed_up=verified.credential_backed_up)
            return {**factors, "passkeys": passkeys}

        if await self.accounts.update_factors(user["username"], used) is None:
            raise refused(401, "the user is gone")
        if problem:
            raise refused(401, problem)
        return user, list(AMR.get(passkey.get("device_type"), AMR[MULTI_DEVICE]))

    # -- removal --------------------------------------------------------------------------

    async def remove(self, username: str, credential_id: str) -> bool:
        """Remove one of ``username``'s passkeys; whether it was theirs."""
        removed = False

        def drop(factors: dict[str, Any]) -> dict[str, Any] | None:
            nonlocal removed
            passkeys = _passkeys(factors)
            kept = [p for p in passkeys if p.get("id") != credential_id]
            removed = len(kept) != len(passkeys)
            return {**factors, "passkeys": kept} if removed else None

        await self.accounts.update_factors(username, drop)
        if removed:
            await self._release(credential_id, username)
        return removed
