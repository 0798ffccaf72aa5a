"""The recovery routes: an account's address and its verification, and the forgotten-password reset.

What none of them ever tells a caller who is not signed in is whether an
account exists: ``/password/forgot`` answers every well-formed request with
the same 202 after the same work (a throttle count and one queued job, keyed
by what was typed); whether a mail goes out is decided later, off the
request path, by the mail queue. The links' tokens are redeemed by
``/password/reset`` and ``/email/verify``, which answer one generic 400 for a
token that is unknown, used, expired or voided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.plugin import MESSAGE_KEY as MESSAGE
from core.plugin import (
    APIError,
    BaseHandler,
    PluginContext,
    Throttle,
    check_email,
    confirm_identity,
    check_password_length,
    error_response,
    fold_username,
    json_body,
    json_response,
    protected,
    public,
)

from .queue import MailQueue
from .tokens import RESET, VERIFY, OneTimeTokens, password_fingerprint

EMAIL_CHANGED = "email-changed"  # a notice to the verified address an account just left

FORGOT_ANSWER = "If that account exists and has a verified email address, a link to reset its password is on its way."
VERIFY_ANSWER = "A verification link is on its way to your email address."
TOKEN_REFUSED = "This link is invalid or has expired; ask for a new one."
NO_ADDRESS = "Your account has no email address; set one with PUT /email first."
ALREADY_VERIFIED = "Your email address is already verified."
PASSWORD_REQUIRED = "Field 'pwd', when given, must be the current password."
TOO_MANY = "Too many mails asked for. Try again later."
EITHER = "Give either 'user' or 'email'."

TOKEN = {"type": "string", "minLength": 1, "maxLength": 128, MESSAGE: "Field 'token' must be the token from the link."}
EMAIL = {"type": "string", "minLength": 1, "maxLength": 254, MESSAGE: {"minLength": "Field 'email' is required."}}
EMAIL_STATE = json_response(
    "The account's address and whether it is verified.",
    {
        "type": "object",
        "properties": {"email": {"type": ["string", "null"]}, "email_verified": {"type": "boolean"}},
        "required": ["email", "email_verified"],
    },
)
ACCEPTED = json_response("Accepted; any mail is sent in the background.", {"type": "object", "properties": {"message": {"type": "string"}}})
THROTTLED = {
    **error_response("Too many mails for this user, address or client: try again after Retry-After seconds."),
    "headers": {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
}


@dataclass(frozen=True)
class Limits:
    """Mails per window for each key kind; 0 never limits."""

    per_user: int
    per_address: int
    per_ip: int


@dataclass(frozen=True)
class Recovery:
    """What the handlers and the mail composer share: settings, the one-time tokens, the mail-rate throttle."""

    config: Any  # the plugin's Config
    tokens: OneTimeTokens
    rate: Throttle
    limits: Limits
    passwords: Throttle  # wrong current passwords on PUT /email


class RecoveryBase(BaseHandler):
    def initialize(self, plugin: PluginContext | None = None, recovery: Recovery | None = None, queue: MailQueue | None = None) -> None:
        super().initialize(plugin)
        assert recovery is not None and queue is not None
        self.recovery = recovery
        self.queue = queue

    async def limit(self, **keys: str) -> None:
        """Count one mail on each key (``user=``, ``address=``) and on the client's IP; 429 past a limit."""
        limits = self.recovery.limits
        per = {"user": limits.per_user, "address": limits.per_address}
        counted = {f"{kind}:{value}": per[kind] for kind, value in keys.items()}
        counted[f"ip:{self.request.remote_ip}"] = limits.per_ip
        wait = await self.recovery.rate.hit(counted)
        if wait:
            raise APIError(429, TOO_MANY, headers={"Retry-After": str(wait)})

    def no_content(self) -> None:
        self.set_status(204)
        self.finish()


@protected
class EmailHandler(RecoveryBase):
    """The signed-in user's address: read it, or set a new one (unverified until its link is opened).

    The address is where password resets go, so setting one asks for more
    than an access token: a sign-in within ``REAUTH_WINDOW``, or the current
    password (``pwd``). A token refreshed long after its sign-in (a stolen
    refresh cookie) cannot move it.
    """

    openapi = {
        "get": {"summary": "The signed-in user's email address and whether it is verified.", "responses": {"200": EMAIL_STATE}},
        "put": {
            "summary": "Set or change the signed-in user's email address (with the current password after REAUTH_WINDOW); "
            "it is unverified until confirmed.",
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {
                        "email": EMAIL,
                        "pwd": {"type": "string", "minLength": 1, "maxLength": 72, MESSAGE: {"minLength": PASSWORD_REQUIRED, "maxLength": "Password must be at most 72 bytes."}},
                    },
                    "required": ["email"],
                    "additionalProperties": False,
                    MESSAGE: {"required": "Field 'email' is required."},
                }
            ),
            "responses": {
                "200": EMAIL_STATE,
                "400": error_response("A missing or invalid address, or a wrong current password, or none after REAUTH_WINDOW."),
                "429": THROTTLED,
            },
        },
    }

    async def get(self) -> None:
        user = await self.services.accounts.user(self.username or "")
        if user is None:
            raise APIError(403, "No such user.")
        self.send_json(_state(user))

    async def put(self) -> None:
        """Set the address; if it replaces a verified one, tell that one (whoever holds the token may not be the owner)."""
        body = self.json_body()
        email = check_email(body["email"])
        await confirm_identity(self, body.get("pwd"), self.recovery.passwords)
        accounts = self.services.accounts
        before = await accounts.user(self.username or "")
        user = await accounts.set_email(self.username or "", email)
        if user is None or before is None:
            raise APIError(403, "No such user.")
        old = before.get("email")
        if old and old != email and before.get("email_verified"):
            await self.queue.enqueue(EMAIL_CHANGED, {"username": user["username"], "old": old, "new": email})
        self.send_json(_state(user))


@protected
class VerifyRequestHandler(RecoveryBase):
    openapi = {
        "post": {
            "summary": "Mail a verification link to the signed-in user's address.",
            "requestBody": json_body({"type": "object", "additionalProperties": False}),
            "responses": {"202": ACCEPTED, "400": error_response("No address, or it is verified already."), "429": THROTTLED},
        }
    }

    async def post(self) -> None:
        self.json_body()
        user = await self.services.accounts.user(self.username or "")
        if user is None:
            raise APIError(403, "No such user.")
        email = user.get("email")
        if not email:
            raise APIError(400, NO_ADDRESS)
        if user.get("email_verified"):
            raise APIError(400, ALREADY_VERIFIED)
        await self.limit(user=user["username"], address=email)
        await self.queue.enqueue(VERIFY, {"username": user["username"], "email": email})
        self.send_json({"message": VERIFY_ANSWER}, 202)


@public
class VerifyHandler(RecoveryBase):
    openapi = {
        "post": {
            "summary": "Confirm an address with the token from its verification link.",
            "requestBody": json_body(
                {"type": "object", "properties": {"token": TOKEN}, "required": ["token"], "additionalProperties": False, MESSAGE: {"required": "Field 'token' is required."}}
            ),
            "responses": {"204": {"description": "Verified."}, "400": error_response("An unknown, used or expired token.")},
        }
    }

    async def post(self) -> None:
        doc = await self.recovery.tokens.redeem(VERIFY, self.json_body()["token"])
        if doc is None or not await self.services.accounts.mark_email_verified(doc["username"], doc["email"]):
            raise APIError(400, TOKEN_REFUSED)
        self.no_content()


@public
class ForgotHandler(RecoveryBase):
    openapi = {
        "post": {
            "summary": "Ask for a password reset link by username or address; the answer never tells whether the account exists.",
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {
                        "user": {"type": "string", "maxLength": 64, "pattern": r"\S", MESSAGE: {"pattern": "Field 'user' is required."}},
                        "email": EMAIL,
                    },
                    "minProperties": 1,
                    "maxProperties": 1,
                    "additionalProperties": False,
                    MESSAGE: {"minProperties": EITHER, "maxProperties": EITHER},
                }
            ),
            "responses": {"202": ACCEPTED, "400": error_response("Neither or both of user and email, or a malformed one."), "429": THROTTLED},
        }
    }

    async def post(self) -> None:
        body = self.json_body()
        if "email" in body:
            email = check_email(body["email"])
            await self.limit(address=email)
            job = {"email": email}
        else:
            name = body["user"].strip()
            await self.limit(user=fold_username(name))
            job = {"user": name}  # as typed: the lookup folds it, and finds an earlier build's capitalised name too
        await self.queue.enqueue(RESET, job)
        self.send_json({"message": FORGOT_ANSWER}, 202)


@public
class ResetHandler(RecoveryBase):
    openapi = {
        "post": {
            "summary": "Set a new password with the token from a reset link; ends every session of the user.",
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {
                        "token": TOKEN,
                        "newPwd": {"type": "string", "minLength": 1, "maxLength": 72, MESSAGE: {"minLength": "Field 'newPwd' is required.", "maxLength": "Password must be at most 72 bytes."}},
                    },
                    "required": ["token", "newPwd"],
                    "additionalProperties": False,
                    MESSAGE: {"required": "Fields 'token' and 'newPwd' are required."},
                }
            ),
            "responses": {"204": {"description": "Changed; every session ended."}, "400": error_response("An unknown, used or expired token, or a password too short or long.")},
        }
    }

    async def post(self) -> None:
        body = self.json_body()
        new = check_password_length(body["newPwd"], self.services.settings.password_min_length)
        tokens, accounts = self.recovery.tokens, self.services.accounts
        # Check the token before hashing, so a made-up one costs no bcrypt time; redeem it after.
        doc = await tokens.peek(RESET, body["token"])
        user = doc and await accounts.user(doc["username"])
        if not doc or not user or not _still_valid(user, doc):
            raise APIError(400, TOKEN_REFUSED)
        hashed = await self.services.passwords.hash(new)
        if await tokens.redeem(RESET, body["token"]) is None:  # used meanwhile by a concurrent request
            raise APIError(400, TOKEN_REFUSED)
        if not await accounts.set_password(user["username"], hashed, expected_old=user["password"]):
            raise APIError(400, TOKEN_REFUSED, log_message="password changed while a reset was redeemed")
        await tokens.void(RESET, user["username"])
        self.no_content()


def _still_valid(user: dict[str, Any], doc: dict[str, Any]) -> bool:
    """Whether a reset token still matches the account: the same password, and the same address, still verified."""
    return (
        password_fingerprint(user["password"]) == doc["password"]
        and user.get("email") == doc["email"]
        and bool(user.get("email_verified"))
    )


def _state(user: dict[str, Any]) -> dict[str, Any]:
    return {"email": user.get("email"), "email_verified": bool(user.get("email_verified"))}
