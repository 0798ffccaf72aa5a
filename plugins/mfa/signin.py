"""The second step of a sign-in: the sign-in step that asks for it, the mfaToken, and ``POST /auth/mfa``.

When the password of a user with a second factor is right, the step answers
``{"mfaRequired": true, "mfaToken", "methods"}`` instead of tokens. The
``mfaToken`` is 32 random bytes; the store keeps its SHA-256 in
``mfa.pending`` with the user, a fingerprint of the password hash that was
checked, and a count of tries. It lasts ``MFA_TOKEN_TTL`` (5 minutes), allows
``MFA_TOKEN_TRIES`` (5) tries in all, and is spent by the one that succeeds,
so it cannot start two sessions. A password changed meanwhile voids it.
Wrong codes also count against the user in the plugin's throttle, shared by
every worker and instance, so a user cannot be guessed through many tokens.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any, Callable

from core.plugin import MESSAGE_KEY as MESSAGE
from core.plugin import (
    APIError,
    BaseHandler,
    Doc,
    Namespace,
    PluginContext,
    SignIn,
    Throttle,
    error_response,
    finish_sign_in,
    fold_username,
    json_body,
    json_response,
    public,
    token_digest,
    where,
)

from .codes import use_code
from .passkeys import Passkeys
from .totp import TOTPFactor

PENDING = "pending"
TOKEN_REFUSED = "This sign-in has expired or was used up; sign in again."
WRONG = "Wrong code."
OTP_AMR = ["otp", "mfa"]  # RFC 8176: a one-time password, and so more than one factor


def fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()


def methods(factors: dict[str, Any]) -> list[str]:
    """What the user can answer the second step with: ``totp``, ``recovery_code``, ``webauthn``."""
    found = []
    if factors.get("totp"):
        found.append("totp")
    if (factors.get("recovery_codes") or {}).get("hashes"):
        found.append("recovery_code")
    if factors.get("passkeys"):
        found.append("webauthn")
    return found


class PendingSignIns:
    """Sign-ins waiting for their second factor, in the store (any worker or instance may finish one)."""

    def __init__(self, db: Namespace, ttl: int, tries: int, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.ttl = ttl
        self.tries = tries
        self.clock = clock

    async def start(self, user: dict[str, Any], amr: list[str]) -> str:
        token = secrets.token_urlsafe(32)
        now = int(self.clock())
        doc = {"username": user["username"], "password": fingerprint(user["password"]), "amr": amr, "expires": now + self.ttl, "tries": 0}
        await self.db.collection(PENDING).insert(doc, key=token_digest(token))
        return token

    async def peek(self, token: str) -> Doc | None:
        """The live pending sign-in of ``token``, counting no try (passkey options for its user)."""
        doc = await self.db.collection(PENDING).get(token_digest(token))
        if doc is None or doc["expires"] <= self.clock() or doc["tries"] >= self.tries:
            return None
        return doc

    async def try_once(self, token: str) -> Doc | None:
        """Count one try of ``token``; its document if it was live and had a try left, else None (and it is gone)."""
        key, now = token_digest(token), self.clock()
        async with self.db.transaction() as tx:
            pending = tx.collection(PENDING)
            doc = await pending.get(key)
            if doc is None:
                return None
            if doc["expires"] <= now or doc["tries"] >= self.tries:
                await pending.delete(key)
                return None
            doc["tries"] += 1
            await pending.put(key, doc)
        return doc

    async def spend(self, token: str) -> bool:
        """Use the token up after a right answer; False if another request spent it first."""
        return await self.db.collection(PENDING).delete(token_digest(token))

    async def prune(self) -> int:
        return await self.db.collection(PENDING).delete_where(where("expires") < self.clock())


def sign_in_step(pending: PendingSignIns) -> Callable[[SignIn], Any]:
    """The step registered with the sign-in extension point: a user with a factor gets the second step."""

    async def step(sign_in: SignIn) -> dict[str, Any] | None:
        offered = methods(sign_in.user.get("factors") or {})
        if not offered:
            return None
        token = await pending.start(sign_in.user, list(sign_in.amr))
        return {"mfaRequired": True, "mfaToken": token, "methods": offered}

    return step


SECOND_STEP = json_body(
    {
        "type": "object",
        "properties": {
            "mfaToken": {"type": "string", "minLength": 1, "maxLength": 128},
            "code": {"type": "string", "minLength": 1, "maxLength": 16},
            "recoveryCode": {"type": "string", "minLength": 1, "maxLength": 64},
            "credential": {"type": "object", "maxProperties": 16},
        },
        "required": ["mfaToken"],
        "minProperties": 2,
        "maxProperties": 2,
        "additionalProperties": False,
        MESSAGE: {
            "required": "Field 'mfaToken' is required.",
            "minProperties": "Give the mfaToken with one of code, recoveryCode or credential.",
            "maxProperties": "Give the mfaToken with one of code, recoveryCode or credential.",
        },
    }
)


@public
class SecondStepHandler(BaseHandler):
    """``POST /auth/mfa``: the second factor for a sign-in the password started."""

    openapi = {
        "post": {
            "summary": "Finish a sign-in with a second factor: a TOTP code, a recovery code or a passkey assertion.",
            "requestBody": SECOND_STEP,
            "responses": {
                "200": json_response(
                    "The user's role codes and an access token (amr names the factors); the refresh cookie is set.",
                    {"type": "object", "properties": {"roles": {"type": "array"}, "accessToken": {"type": "string"}}, "required": ["roles", "accessToken"]},
                ),
                "400": error_response("A malformed body."),
                "401": error_response("A wrong or used code, or a forged, expired or spent mfaToken."),
                "429": error_response("Too many wrong codes for this user: wait Retry-After seconds."),
            },
        }
    }

    def initialize(
        self,
        plugin: PluginContext | None = None,
        pending: PendingSignIns | None = None,
        totp: TOTPFactor | None = None,
        passkeys: Passkeys | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        super().initialize(plugin)
        assert pending and totp and passkeys and throttle
        self.pending, self.totp, self.passkeys, self.throttle = pending, totp, passkeys, throttle

    async def post(self) -> None:
        body = self.json_body()
        doc = await self.pending.try_once(body["mfaToken"])
        if doc is None:
            raise APIError(401, TOKEN_REFUSED)
        username = doc["username"]
        settings = self.services.settings
        user_key = f"user:{fold_username(username)}"  # the same key the account routes count wrong codes under
        added: list[str] | None = None

        async def check() -> bool:
            nonlocal added
            added = await self.check(body, username)
            return added is not None

        wait, right = await self.throttle.guess({user_key: settings.login_max_failures}, user_key, check)
        if wait:
            raise APIError(429, "Too many wrong codes. Try again later.", headers={"Retry-After": str(wait)})
        if not right or added is None:
            raise APIError(401, WRONG)
        user = await self.services.accounts.user(username)
        if user is None or fingerprint(user["password"]) != doc["password"] or not await self.pending.spend(body["mfaToken"]):
            raise APIError(401, TOKEN_REFUSED, log_message="account changed, or mfaToken spent, during the second step")
        await finish_sign_in(self, user, [*doc["amr"], *added], password_hash=user["password"])

    async def check(self, body: dict[str, Any], username: str) -> list[str] | None:
        """The amr values the answer adds, or None for a wrong one."""
        if "code" in body:
            return OTP_AMR if await self.totp.check(username, body["code"]) else None
        if "recoveryCode" in body:
            return OTP_AMR if await use_code(self.services.accounts, username, body["recoveryCode"]) else None
        try:
            _, amr = await self.passkeys.authenticate(body["credential"], username)
        except APIError as exc:
            if exc.status_code == 401:
                return None
            raise
        return [*amr, "mfa"]
