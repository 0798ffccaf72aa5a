"""The tutorial's register/auth/refresh/logout controllers, on the shared store.

The refresh token lives in an httpOnly cookie and the store keeps only its
SHA-256 digest, keyed for O(1) lookup, one record per login, so logging in
on a second device never ends the first session.
"""

from __future__ import annotations

import time

from core.cookies import REFRESH_COOKIE, clear_cookie_header, set_cookie_header
from core.errors import APIError
from core.jsondb import KeyExists
from core.openapi import error_response, json_body, json_response
from core.plugin import BaseHandler, public
from core.security import ACCESS, BCRYPT_MAX_BYTES, REFRESH, TokenInvalid, token_digest

CREDENTIALS_REQUIRED = "Username and password are required."
CREDENTIALS = json_body(
    {
        "type": "object",
        "properties": {"user": {"type": "string", "minLength": 1}, "pwd": {"type": "string", "minLength": 1}},
        "required": ["user", "pwd"],
    }
)
ACCESS_TOKEN = {"type": "object", "properties": {"accessToken": {"type": "string"}}, "required": ["accessToken"]}
REFRESH_COOKIE_PARAM = {"name": REFRESH_COOKIE, "in": "cookie", "required": False, "schema": {"type": "string"}}


class CredentialsMixin:
    def credentials(self) -> tuple[str, str]:
        body = self.json_body()  # type: ignore[attr-defined]
        user = self.field(body, "user")  # type: ignore[attr-defined]
        pwd = self.field(body, "pwd")  # type: ignore[attr-defined]
        if not user or not pwd or not user.strip():
            raise APIError(400, CREDENTIALS_REQUIRED)
        if len(pwd.encode()) > BCRYPT_MAX_BYTES:
            raise APIError(400, f"Password must be at most {BCRYPT_MAX_BYTES} bytes.")
        return user.strip(), pwd


@public
class RegisterHandler(CredentialsMixin, BaseHandler):
    openapi = {
        "post": {
            "summary": "Create a user.",
            "requestBody": CREDENTIALS,
            "responses": {
                "201": json_response("Created.", {"type": "object", "properties": {"success": {"type": "string"}}, "required": ["success"]}),
                "400": error_response("Missing or malformed user or pwd."),
                "409": error_response("The username is taken."),
            },
        }
    }

    async def post(self) -> None:
        user, pwd = self.credentials()
        users = self.db.collection("users")
        if user in users:
            raise APIError(409, f"Username {user} is already taken.")
        hashed = await self.services.passwords.hash(pwd)
        try:
            await users.insert({"username": user, "password": hashed, "created": int(time.time())}, key=user)
        except KeyExists:
            raise APIError(409, f"Username {user} is already taken.") from None
        self.set_status(201)
        self.finish({"success": f"New user {user} created!"})


@public
class AuthHandler(CredentialsMixin, BaseHandler):
    openapi = {
        "post": {
            "summary": "Log in: an access token in the body, the refresh token in the httpOnly `jwt` cookie.",
            "requestBody": CREDENTIALS,
            "responses": {
                "200": json_response("Logged in.", ACCESS_TOKEN),
                "400": error_response("Missing or malformed user or pwd."),
                "401": error_response("Unknown user or wrong password."),
            },
        }
    }

    async def post(self) -> None:
        user, pwd = self.credentials()
        found = self.db.collection("users").get(user)
        if not await self.services.passwords.check(pwd, found["password"] if found else None):
            raise APIError(401, "Invalid username or password.")
        tokens = self.services.tokens
        refresh = tokens.issue(REFRESH, user)
        now = int(time.time())
        await self.db.collection("sessions").put(
            token_digest(refresh), {"username": user, "created": now, "expires": now + tokens.ttl[REFRESH]}
        )
        self.add_header("Set-Cookie", set_cookie_header(self.services.settings, refresh, tokens.ttl[REFRESH]))
        self.finish({"accessToken": tokens.issue(ACCESS, user)})


@public
class RefreshHandler(BaseHandler):
    openapi = {
        "get": {
            "summary": "A new access token for the refresh token in the `jwt` cookie.",
            "parameters": [REFRESH_COOKIE_PARAM],
            "responses": {
                "200": json_response("A new access token.", ACCESS_TOKEN),
                "401": error_response("No refresh cookie."),
                "403": error_response("Unknown, expired or invalid refresh token."),
            },
        }
    }

    def get(self) -> None:
        token = self.get_cookie(REFRESH_COOKIE)
        if not token:
            raise APIError(401, "Missing refresh cookie.")
        session = self.db.collection("sessions").get(token_digest(token))
        if session is None:
            raise APIError(403, "Unknown or expired refresh token.")
        try:
            claims = self.services.tokens.verify(REFRESH, token)
        except TokenInvalid as exc:
            raise APIError(403, "Unknown or expired refresh token.", log_message=f"refresh token refused: {exc}") from None
        if claims["username"] != session["username"]:
            raise APIError(403, "Unknown or expired refresh token.", log_message="refresh token username mismatch")
        self.finish({"accessToken": self.services.tokens.issue(ACCESS, session["username"])})


@public
class LogoutHandler(BaseHandler):
    openapi = {
        "get": {
            "summary": "End the session of the `jwt` cookie and clear the cookie.",
            "parameters": [REFRESH_COOKIE_PARAM],
            "responses": {"204": {"description": "Logged out (always)."}},
        }
    }

    async def get(self) -> None:
        token = self.get_cookie(REFRESH_COOKIE)
        if token:
            await self.db.collection("sessions").delete(token_digest(token))
        self.add_header("Set-Cookie", clear_cookie_header(self.services.settings))
        self.set_status(204)
        self.finish()
