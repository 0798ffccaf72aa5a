"""The passkey routes: register one (signed in), sign in with one (no password), remove one.

The option answers are py_webauthn's ``options_to_json`` text as it is, the
form ``PublicKeyCredential.parseCreationOptionsFromJSON`` and
``parseRequestOptionsFromJSON`` read. A passwordless sign-in ends as ``/auth``
does (`finish_sign_in`), its failures throttled per client address in the
store, so every worker and instance counts them together.
"""

from __future__ import annotations

import contextlib
from typing import Any

from core.plugin import MESSAGE_KEY as MESSAGE
from core.plugin import (
    APIError,
    confirm_identity,
    BaseHandler,
    PluginContext,
    StoreError,
    Throttle,
    error_response,
    finish_sign_in,
    json_body,
    json_response,
    protected,
    public,
)

from .handlers import PWD
from .passkeys import NAME_LENGTH, Passkeys

#: Failed passkey sign-ins per client address within the throttle's window before it is locked out.
MAX_FAILURES_PER_ADDRESS = 20
#: Request options (each a stored challenge) per client address within the throttle's window.
OPTIONS_PER_ADDRESS = 200
TOO_MANY = "Too many tries. Try again later."

CREDENTIAL = {
    "type": "object",
    "maxProperties": 16,
    "description": "The credential's toJSON() form (PublicKeyCredential), as the browser gives it.",
    MESSAGE: "Field 'credential' must be the credential's JSON form.",
}
EMPTY = json_body({"type": "object", "additionalProperties": False}, required=False)
OPTIONS = {"type": "object", "description": "WebAuthn options in their JSON form (options_to_json)."}
PASSKEY = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
    "required": ["id", "name"],
}
TOKENS = json_response(
    "Signed in: roles and an access token; the refresh token is in the httpOnly cookie.",
    {
        "type": "object",
        "properties": {"roles": {"type": "array", "items": {"type": "integer"}}, "accessToken": {"type": "string"}},
        "required": ["roles", "accessToken"],
    },
)
LOCKED = {
    **error_response("Too many failures from this address: try again after Retry-After seconds."),
    "headers": {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
}


class PasskeyBase(BaseHandler):
    def initialize(self, plugin: PluginContext | None = None, passkeys: Passkeys | None = None, throttle: Throttle | None = None) -> None:
        super().initialize(plugin)
        assert passkeys is not None
        self.passkeys = passkeys
        self.throttle = throttle

    def send_options(self, text: str) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(text)

    async def signed_in_user(self) -> dict[str, Any]:
        user = await self.services.accounts.user(self.username or "")
        if user is None:
            raise APIError(403, "No such user.")
        return user

    def locked(self, wait: int) -> APIError:
        return APIError(429, TOO_MANY, headers={"Retry-After": str(wait)})


@protected
class RegisterOptionsHandler(PasskeyBase):
    openapi = {
        "post": {
            "summary": "Creation options for a new passkey of the signed-in user (for parseCreationOptionsFromJSON); "
            "after REAUTH_WINDOW since the sign-in, the current password too.",
            "requestBody": json_body({"type": "object", "properties": {"pwd": PWD}, "additionalProperties": False}, required=False),
            "responses": {
                "200": json_response("Creation options.", OPTIONS),
                "400": error_response("The user has too many passkeys, or a wrong current password, or none after REAUTH_WINDOW."),
                "429": LOCKED,
            },
        }
    }

    async def post(self) -> None:
        assert self.throttle is not None
        await confirm_identity(self, self.json_body().get("pwd"), self.throttle)
        self.send_options(await self.passkeys.registration_options(await self.signed_in_user()))


@protected
class RegisterHandler(PasskeyBase):
    openapi = {
        "post": {
            "summary": "Register the passkey the browser created from the creation options.",
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {"credential": CREDENTIAL, "name": {"type": "string", "maxLength": NAME_LENGTH}},
                    "required": ["credential"],
                    "additionalProperties": False,
                    MESSAGE: {"required": "Field 'credential' is required."},
                }
            ),
            "responses": {
                "201": json_response("Registered.", PASSKEY),
                "400": error_response("A malformed or unverifiable credential, a used or expired challenge, or too many passkeys."),
            },
        }
    }

    async def post(self) -> None:
        body = self.json_body()
        added = await self.passkeys.register(await self.signed_in_user(), body["credential"], body.get("name"))
        self.send_json(added, 201)


@public
class LoginOptionsHandler(PasskeyBase):
    openapi = {
        "post": {
            "summary": "Request options for a passkey (for parseRequestOptionsFromJSON): any passkey of this site for a "
            "passwordless sign-in, or, with the mfaToken of a sign-in the password started, one of that user's.",
            "requestBody": json_body(
                {"type": "object", "properties": {"mfaToken": {"type": "string", "minLength": 1, "maxLength": 128}}, "additionalProperties": False},
                required=False,
            ),
            "responses": {
                "200": json_response("Request options.", OPTIONS),
                "401": error_response("A forged, expired or spent mfaToken."),
                "429": LOCKED,
            },
        }
    }

    def initialize(self, plugin: PluginContext | None = None, passkeys: Passkeys | None = None, throttle: Throttle | None = None, pending: Any = None) -> None:
        super().initialize(plugin, passkeys, throttle)
        self.pending = pending

    async def post(self) -> None:
        body = self.json_body()
        if self.throttle is not None:  # each answer stores a challenge: no client may pile them up
            wait = await self.throttle.hit({f"options:{self.request.remote_ip}": OPTIONS_PER_ADDRESS})
            if wait:
                raise self.locked(wait)
        username = None
        if "mfaToken" in body:
            doc = await self.pending.peek(body["mfaToken"]) if self.pending is not None else None
            if doc is None:
                raise APIError(401, "This sign-in has expired or was used up; sign in again.")
            username = doc["username"]
        self.send_options(await self.passkeys.authentication_options(username))


@public
class LoginHandler(PasskeyBase):
    openapi = {
        "post": {
            "summary": "Sign in without a password, with a discoverable passkey: as /auth answers.",
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {"credential": CREDENTIAL},
                    "required": ["credential"],
                    "additionalProperties": False,
                    MESSAGE: {"required": "Field 'credential' is required."},
                }
            ),
            "responses": {
                "200": TOKENS,
                "400": error_response("A malformed credential."),
                "401": error_response("An unknown, wrong, replayed or expired assertion."),
                "429": LOCKED,
            },
        }
    }

    async def post(self) -> None:
        credential = self.json_body()["credential"]
        throttle = self.throttle
        assert throttle is not None
        key = f"addr:{self.request.remote_ip}"
        wait, attempt = await throttle.begin({key: MAX_FAILURES_PER_ADDRESS}, key)
        if wait:
            raise self.locked(wait)
        try:
            user, amr = await self.passkeys.authenticate(credential, None)
        except APIError:
            wait = await throttle.failed(attempt)
            if wait:
                raise self.locked(wait) from None
            raise
        except BaseException:  # no verdict (the store failed): no guess counted
            with contextlib.suppress(StoreError):
                await throttle.abandoned(attempt)
            raise
        wait = await throttle.succeeded(attempt)
        if wait:
            raise self.locked(wait)
        await finish_sign_in(self, user, amr)


@protected
class CredentialHandler(PasskeyBase):
    openapi = {
        "delete": {
            "summary": "Remove one of the signed-in user's passkeys.",
            "responses": {"204": {"description": "Removed."}, "404": error_response("No such passkey of this user.")},
        }
    }

    async def delete(self, credential_id: str) -> None:
        if not await self.passkeys.remove(self.username or "", credential_id):
            raise APIError(404, "No such passkey.")
        self.set_status(204)
        self.finish()
