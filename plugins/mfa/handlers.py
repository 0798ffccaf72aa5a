"""The signed-in user's second factors: TOTP on and off, recovery codes, and what is on (``GET /mfa``).

Every route that takes a code counts a wrong one against the user on the
plugin's throttle (``user:<name>``, ``LOGIN_MAX_FAILURES`` per
``LOGIN_FAILURE_WINDOW``, locked for ``LOGIN_LOCKOUT``): a stolen access token
must not buy unlimited guesses at the code that would turn TOTP off. Wrong
codes on these account routes are 400 (the caller is signed in; 401 would
read as "your token is bad"); only the sign-in step answers 401.

Nothing secret is logged: not the TOTP secret, its URI, a code, or a
recovery code. Responses carry ``Cache-Control: no-store`` (`BaseHandler`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Awaitable, Callable, TypeVar

import segno

from core.plugin import MESSAGE_KEY as MESSAGE
from core.plugin import (
    APIError,
    confirm_identity,
    BaseHandler,
    PluginContext,
    StoreError,
    Throttle,
    error_response,
    fold_username,
    json_body,
    json_response,
    protected,
)

from . import codes as recovery
from .totp import NoEnrolment, TOTPAlreadyOn, TOTPFactor, TOTPNotOn

T = TypeVar("T")

WRONG_CODE = "Wrong or already used code."
NO_ENROLMENT = "No TOTP enrolment is pending (or it expired); start one with POST /mfa/totp."
ALREADY_ON = "TOTP is already on; turn it off first."
NOT_ON = "TOTP is not on."
TOO_MANY = "Too many wrong codes. Try again later."
NO_USER = "No such user."
QR_SCALE = 4

CODE = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "description": "a 6-digit code from the authenticator app, or (where allowed) a recovery code",
    MESSAGE: {"minLength": "Field 'code' is required."},
}
CODE_BODY = json_body(
    {
        "type": "object",
        "properties": {"code": CODE},
        "required": ["code"],
        "additionalProperties": False,
        MESSAGE: {"required": "Field 'code' is required."},
    }
)
EMPTY_BODY = json_body({"type": "object", "additionalProperties": False}, required=False)
#: The optional ``pwd`` of the bodies that add a factor (`confirm_identity`).
PWD = {"type": "string", "minLength": 1, "maxLength": 72, "description": "the current password; needed after REAUTH_WINDOW"}
PROOF_BODY = json_body({"type": "object", "properties": {"pwd": PWD}, "additionalProperties": False}, required=False)
RECOVERY_CODES = json_response(
    "The new recovery codes: shown this once, stored only as hashes.",
    {
        "type": "object",
        "properties": {"recoveryCodes": {"type": "array", "items": {"type": "string"}, "minItems": recovery.COUNT, "maxItems": recovery.COUNT}},
        "required": ["recoveryCodes"],
    },
)
THROTTLED = {
    **error_response("Too many wrong codes for this user: try again after Retry-After seconds."),
    "headers": {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
}
PASSKEY = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "created": {"type": "integer"},
        "lastUsed": {"type": ["integer", "null"]},
    },
    "required": ["id", "name", "created", "lastUsed"],
}
STATUS = json_response(
    "Which second factors the user has.",
    {
        "type": "object",
        "properties": {
            "totp": {"type": "boolean"},
            "passkeys": {"type": "array", "items": PASSKEY},
            "recoveryCodesLeft": {"type": "integer", "minimum": 0},
        },
        "required": ["totp", "passkeys", "recoveryCodesLeft"],
    },
)


def qr_data_uri(uri: str) -> str:
    """The otpauth URI as a QR code in an SVG ``data:`` URI: an ``<img src>`` shows it, no QR library needed."""
    return str(segno.make(uri).svg_data_uri(scale=QR_SCALE))


def status(factors: dict[str, Any]) -> dict[str, Any]:
    """``GET /mfa``'s answer from the stored factors: whether TOTP is on, the passkeys, codes left."""
    passkeys = [
        {"id": p.get("id"), "name": p.get("name"), "created": p.get("created"), "lastUsed": p.get("lastUsed")}
        for p in factors.get("passkeys") or []
    ]
    return {"totp": bool(factors.get("totp")), "passkeys": passkeys, "recoveryCodesLeft": recovery.codes_left(factors)}


class MFABase(BaseHandler):
    """Shared by the routes: the TOTP factor, and the throttle wrong codes count on."""

    def initialize(self, plugin: PluginContext | None = None, totp: TOTPFactor | None = None, throttle: Throttle | None = None) -> None:
        super().initialize(plugin)
        assert totp is not None and throttle is not None, "the mfa routes need totp= and throttle="
        self.totp = totp
        self.throttle = throttle

    @property
    def user(self) -> str:
        return self.username or ""

    async def guarded(self, check: Callable[[], Awaitable[T]], right: Callable[[T], bool]) -> T:
        """``await check()`` as one guess on the user's throttle key; 429 with ``Retry-After`` while it is locked.

        ``right(result)`` says whether the guess was right. A check that raises
        (no enrolment, nothing to turn off, a store error) told nothing about the
        code, so it is taken back. A right code is answered even if the key
        locked meanwhile (the throttle's 429 "do not tell the verdict"): its
        change is made and shows anyway (``GET /mfa``), and a new set of recovery
        codes must reach the user.
        """
        key = f"user:{fold_username(self.user)}"
        wait, attempt = await self.throttle.begin({key: self.services.settings.login_max_failures}, key)
        if wait:
            raise APIError(429, TOO_MANY, headers={"Retry-After": str(wait)})
        try:
            result = await check()
        except BaseException:
            with contextlib.suppress(StoreError):  # the error that got here is the one to report
                await self.throttle.abandoned(attempt)
            raise
        if right(result):
            await self.throttle.succeeded(attempt)
            return result
        wait = await self.throttle.failed(attempt)
        if wait:
            raise APIError(429, TOO_MANY, headers={"Retry-After": str(wait)})
        raise APIError(400, WRONG_CODE, log_message=f"wrong second-factor code for {self.user!r}")

    async def require_user(self) -> dict[str, Any]:
        """The caller's factors; 403 if the account is gone (a token outliving its user)."""
        if not await self.services.accounts.exists(self.user):
            raise APIError(403, NO_USER)
        return await self.services.accounts.factors(self.user)

    def no_content(self) -> None:
        self.set_status(204)
        self.finish()


@protected
class MFAStatusHandler(MFABase):
    openapi = {"get": {"summary": "The signed-in user's second factors.", "responses": {"200": STATUS}}}

    async def get(self) -> None:
        self.send_json(status(await self.require_user()))


@protected
class TOTPHandler(MFABase):
    openapi = {
        "post": {
            "summary": "Start TOTP enrolment: a new secret, its otpauth URI and a QR code of it; on only once confirmed. "
            "After REAUTH_WINDOW since the sign-in, the current password too.",
            "requestBody": PROOF_BODY,
            "responses": {
                "200": json_response(
                    "The secret to put in an authenticator app (type it, or scan the QR code of the URI).",
                    {
                        "type": "object",
                        "properties": {"secret": {"type": "string"}, "uri": {"type": "string"}, "qr": {"type": "string"}},
                        "required": ["secret", "uri", "qr"],
                    },
                ),
                "400": error_response("A wrong current password, or none after REAUTH_WINDOW."),
                "409": error_response(ALREADY_ON),
                "429": THROTTLED,
            },
        },
        "delete": {
            "summary": "Turn TOTP off (and void the recovery codes) with a current code or a recovery code.",
            "requestBody": CODE_BODY,
            "responses": {
                "204": {"description": "TOTP is off; the recovery codes are void."},
                "400": error_response("A wrong, used or malformed code."),
                "409": error_response(NOT_ON),
                "429": THROTTLED,
            },
        },
    }

    async def post(self) -> None:
        await confirm_identity(self, self.json_body().get("pwd"), self.throttle)
        await self.require_user()
        try:
            started = await self.totp.begin(self.user)
        except TOTPAlreadyOn:
            raise APIError(409, ALREADY_ON) from None
        qr = await asyncio.get_running_loop().run_in_executor(None, qr_data_uri, started["uri"])
        self.send_json({"secret": started["secret"], "uri": started["uri"], "qr": qr})

    async def delete(self) -> None:
        code = self.json_body()["code"]
        try:
            await self.guarded(lambda: self.totp.disable(self.user, code), bool)
        except TOTPNotOn:
            raise APIError(409, NOT_ON) from None
        if self.plugin is not None:
            self.plugin.log.info("TOTP turned off for %s", self.user)
        self.no_content()


@protected
class TOTPConfirmHandler(MFABase):
    openapi = {
        "post": {
            "summary": "Turn TOTP on with a code from the new secret; answers the recovery codes, shown this once.",
            "requestBody": CODE_BODY,
            "responses": {
                "200": RECOVERY_CODES,
                "400": error_response("A wrong code, or no enrolment pending."),
                "409": error_response(ALREADY_ON),
                "429": THROTTLED,
            },
        }
    }

    async def post(self) -> None:
        code = self.json_body()["code"]
        try:
            codes = await self.guarded(lambda: self.totp.confirm(self.user, code), lambda found: found is not None)
        except NoEnrolment:
            raise APIError(400, NO_ENROLMENT) from None
        except TOTPAlreadyOn:
            raise APIError(409, ALREADY_ON) from None
        if self.plugin is not None:
            self.plugin.log.info("TOTP turned on for %s", self.user)
        self.send_json({"recoveryCodes": codes})


@protected
class RecoveryCodesHandler(MFABase):
    openapi = {
        "post": {
            "summary": "A new set of recovery codes, voiding the old set, with a current TOTP code or a recovery code.",
            "requestBody": CODE_BODY,
            "responses": {
                "200": RECOVERY_CODES,
                "400": error_response("A wrong, used or malformed code."),
                "409": error_response(NOT_ON),
                "429": THROTTLED,
            },
        }
    }

    async def post(self) -> None:
        code = self.json_body()["code"]
        try:
            codes = await self.guarded(lambda: self.totp.regenerate_codes(self.user, code), lambda found: found is not None)
        except TOTPNotOn:
            raise APIError(409, NOT_ON) from None
        if self.plugin is not None:
            self.plugin.log.info("new recovery codes for %s", self.user)
        self.send_json({"recoveryCodes": codes})
