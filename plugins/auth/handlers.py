"""Register, log in, refresh, log out: the tutorial's controllers, with sessions done properly.

* Every login starts its own session *family*; a second device never ends the
  first. The store keeps only SHA-256 digests of refresh tokens.
* ``/refresh`` rotates: it retires the presented token and sets a new cookie.
  A retired token presented again revokes its whole family (RFC 9700
  §4.14.2), except inside ``REFRESH_REUSE_GRACE`` seconds, where it is
  answered without a new refresh token so two tabs refreshing together both
  succeed.
* ``/logout`` ends one family, ``/logout-all`` and ``/password`` end all of a
  user's sessions.
* Failed logins are throttled per username and per client address, and the
  cookie endpoints refuse cross-site requests from origins not allowed.
"""

from __future__ import annotations

from typing import Any

from core.plugin import (
    ACCESS,
    BCRYPT_MAX_BYTES,
    REFRESH,
    REFRESH_COOKIE,
    USER,
    USERNAME_PATTERN,
    USERNAME_RULE,
    PASSWORD_AMR,
    Accounts,
    APIError,
    BaseHandler,
    HashingBusy,
    KeyExists,
    PluginContext,
    RefreshOutcome,
    SignIn,
    Throttle,
    TokenInvalid,
    check_email,
    check_password_length,
    clear_cookie_header,
    error_response,
    finish_sign_in,
    fold_username,
    json_body,
    json_response,
    public,
    run_sign_in_steps,
    set_cookie_header,
    token_digest,
)
from core.plugin import MESSAGE_KEY as MESSAGE

from .metrics import AuthMetrics

LOGIN_OUTCOMES = {401: "bad_credentials", 429: "locked"}
CREDENTIALS_REQUIRED = "Username and password are required."
NEW_PASSWORD_REQUIRED = "Current and new password are required."
REFRESH_REFUSED = "Unknown or expired refresh token."

PASSWORD_TOO_LONG = f"Password must be at most {BCRYPT_MAX_BYTES} bytes."
# Surrounding white space is allowed, and removed before the name is used.
USERNAME_INPUT = r"^\s*" + USERNAME_PATTERN[1:-1] + r"\s*$"
# A password of more than 72 characters is more than 72 bytes; bcrypt takes no more. The byte
# count itself (and the minimum length, a setting) the handlers check after the schema.
PASSWORD = {"type": "string", "minLength": 1, "maxLength": BCRYPT_MAX_BYTES, "description": f"at most {BCRYPT_MAX_BYTES} bytes"}
CREDENTIALS_SCHEMA = {
    "type": "object",
    "properties": {
        "user": {
            "type": "string",
            "maxLength": 64,
            "description": f"matches {USERNAME_PATTERN}, after surrounding white space is removed",
            "allOf": [
                {"pattern": r"\S", MESSAGE: CREDENTIALS_REQUIRED},
                {"pattern": USERNAME_INPUT, MESSAGE: USERNAME_RULE},
            ],
        },
        "pwd": {**PASSWORD, MESSAGE: {"minLength": CREDENTIALS_REQUIRED, "maxLength": PASSWORD_TOO_LONG}},
    },
    "required": ["user", "pwd"],
    "additionalProperties": False,
    MESSAGE: {"required": CREDENTIALS_REQUIRED},
}
CREDENTIALS = json_body(CREDENTIALS_SCHEMA)
TOKENS = json_response(
    "The user's role codes and a new access token.",
    {
        "type": "object",
        "properties": {"roles": {"type": "array", "items": {"type": "integer"}}, "accessToken": {"type": "string"}},
        "required": ["roles", "accessToken"],
    },
)
REGISTRATION = json_body(
    {
        **CREDENTIALS_SCHEMA,
        "properties": {
            **CREDENTIALS_SCHEMA["properties"],
            "email": {"type": "string", "maxLength": 254, "description": "optional; unverified until confirmed (recovery plugin)"},
        },
    }
)
REFRESH_COOKIE_PARAM = {"name": REFRESH_COOKIE, "in": "cookie", "required": False, "schema": {"type": "string"}}
CROSS_SITE = error_response("The request's Origin is not in ALLOWED_ORIGINS.")
LOCKED = {
    **error_response("Too many failures: locked out for the number of seconds in Retry-After."),
    "headers": {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
}


class AuthBase(BaseHandler):
    def initialize(
        self, plugin: PluginContext | None = None, throttle: Throttle | None = None, metrics: AuthMetrics | None = None
    ) -> None:
        super().initialize(plugin)
        self.throttle = throttle
        self.metrics = metrics

    @property
    def accounts(self) -> Accounts:
        return self.services.accounts

    def credentials(self, register: bool = False) -> tuple[str, str]:
        """``user`` and ``pwd`` from the body (checked by `CREDENTIALS`); 400 if ``pwd`` is too long or (on register) too short."""
        body = self.json_body()
        pwd = body["pwd"]
        check_password_length(pwd, self.services.settings.password_min_length if register else 0)
        return body["user"].strip(), pwd

    def send_tokens(self, username: str, roles: list[int], refresh: str | None, amr: list[str], auth_time: int) -> None:
        """``{"roles", "accessToken"}`` for a refresh, plus the successor cookie when one was issued; the access
        token keeps the ``amr`` and ``auth_time`` of the sign-in the session descends from."""
        tokens = self.services.tokens
        if refresh is not None:
            self.add_header("Set-Cookie", set_cookie_header(self.services.settings, refresh, tokens.ttl[REFRESH]))
        self.finish({"roles": roles, "accessToken": tokens.issue(ACCESS, username, roles=roles, amr=amr, auth_time=auth_time)})

    def clear_cookie_and_end(self) -> None:
        self.add_header("Set-Cookie", clear_cookie_header(self.services.settings))
        self.set_status(204)
        self.finish()

    async def check_password(self, user: str, pwd: str, limits: dict[str, int], locked: str) -> dict[str, Any] | None:
        """Check ``pwd`` against ``user``'s hash under the login throttle; the user record if it is right.

        429 with ``Retry-After`` while any key in ``limits`` is locked, or when the
        verdict would be a guess more than the throttle allows (see
        core/throttle.py). None for a wrong password, which counts
        against every key; the right one forgets the user's failures. An attempt
        that raises before a verdict (hashing queue full, store error) is taken
        back: it was no guess.
        """
        throttle = self.throttle
        assert throttle is not None
        found = None

        async def check() -> bool:
            nonlocal found
            found = await self.accounts.user(user)
            return await self.services.passwords.check(pwd, found["password"] if found else None)

        wait, ok = await throttle.guess(limits, f"user:{fold_username(user)}", check)
        if wait:
            raise APIError(429, locked, headers={"Retry-After": str(wait)})
        return found if ok else None

    def check_origin(self) -> None:
        """403 for a cross-site request: an ``Origin`` that is not allowed. No ``Origin`` is fine."""
        origin = self.request.headers.get("Origin")
        if origin is not None and not self.allowed_origin():
            raise APIError(403, "Origin not allowed.", log_message="cookie endpoint called from a disallowed origin")


@public
class RegisterHandler(AuthBase):
    openapi = {
        "post": {
            "summary": "Create a user (role User), with an optional email address.",
            "requestBody": REGISTRATION,
            "responses": {
                "201": json_response("Created.", {"type": "object", "properties": {"success": {"type": "string"}}, "required": ["success"]}),
                "400": error_response("Missing or malformed user or pwd, an unsafe username, a password too short or long, or an invalid email."),
                "409": error_response("The username is taken."),
            },
        }
    }

    async def post(self) -> None:
        user, pwd = self.credentials(register=True)
        given = self.json_body().get("email")
        email = check_email(given) if given else None
        if await self.accounts.exists(user):  # in any case: usernames are case-insensitive
            raise APIError(409, f"Username {user} is already taken.")
        hashed = await self.services.passwords.hash(pwd)
        try:
            created = await self.accounts.create_user(user, hashed, [USER], email=email)
        except KeyExists:
            raise APIError(409, f"Username {user} is already taken.") from None
        self.set_status(201)
        self.finish({"success": f"New user {created['username']} created!"})


@public
class AuthHandler(AuthBase):
    openapi = {
        "post": {
            "summary": "Log in: roles and an access token in the body, the refresh token in the httpOnly `jwt` cookie.",
            "requestBody": CREDENTIALS,
            "responses": {
                "200": TOKENS,
                "400": error_response("Missing or malformed user or pwd."),
                "401": error_response("Unknown user or wrong password."),
                "429": LOCKED,
            },
        }
    }

    async def post(self) -> None:
        """Log in, counting the outcome in ``turnstile_logins_total`` (400s are no login attempt)."""
        assert self.metrics is not None
        logins = self.metrics.logins
        try:
            await self.log_in()
        except HashingBusy:
            logins.labels("overloaded").inc()
            raise
        except APIError as exc:
            outcome = LOGIN_OUTCOMES.get(exc.status_code)
            if outcome:
                logins.labels(outcome).inc()
            raise
        else:
            logins.labels("ok").inc()

    async def log_in(self) -> None:
        user, pwd = self.credentials()
        settings = self.services.settings
        # Usernames are case-insensitive: ``Alice`` and ``alice`` share one lockout.
        user_key, addr_key = f"user:{fold_username(user)}", f"addr:{self.request.remote_ip}"
        limits = {user_key: settings.login_max_failures, addr_key: settings.login_max_failures_per_address}
        found = await self.check_password(user, pwd, limits, "Too many failed logins. Try again later.")
        if found is None:
            raise APIError(401, "Invalid username or password.")
        # The password is right: plugins may step in before any token exists (a second factor).
        answer = await run_sign_in_steps(self.services.sign_in_steps, SignIn(found, PASSWORD_AMR, self))
        if answer is not None:
            self.finish(answer)
            return
        await finish_sign_in(self, found, PASSWORD_AMR, password_hash=found["password"])


@public
class RefreshHandler(AuthBase):
    openapi = {
        "get": {
            "summary": "Rotate the refresh token in the `jwt` cookie: a new cookie, the roles and a new access token.",
            "parameters": [REFRESH_COOKIE_PARAM],
            "responses": {
                "200": TOKENS,
                "401": error_response("No refresh cookie."),
                "403": error_response("Unknown, expired, invalid or reused refresh token, or a cross-site Origin."),
            },
        }
    }

    async def get(self) -> None:
        self.check_origin()
        token = self.get_cookie(REFRESH_COOKIE)
        if not token:
            raise APIError(401, "Missing refresh cookie.")
        tokens = self.services.tokens
        try:
            claims = tokens.verify(REFRESH, token)
        except TokenInvalid as exc:
            raise APIError(403, REFRESH_REFUSED, log_message=f"refresh token refused: {exc}") from None
        username = claims["username"]
        successor = tokens.issue(REFRESH, username)
        result = await self.accounts.refresh(
            token_digest(token),
            username,
            successor,
            token_digest(successor),
            tokens.ttl[REFRESH],
            self.services.settings.refresh_reuse_grace,
        )
        assert self.metrics is not None
        self.metrics.refreshes.labels(result.outcome.value).inc()
        if result.outcome is RefreshOutcome.REUSED:
            raise APIError(
                403,
                REFRESH_REFUSED,
                log_message=f"retired refresh token reused; revoked that session of user {username}",
                headers={"Set-Cookie": clear_cookie_header(self.services.settings)},
            )
        if result.outcome is RefreshOutcome.UNKNOWN:
            raise APIError(403, REFRESH_REFUSED)
        assert result.roles is not None
        self.send_tokens(username, result.roles, result.token, result.amr, result.auth_time)


@public
class LogoutHandler(AuthBase):
    openapi = {
        "get": {
            "summary": "End the session of the `jwt` cookie (this device only) and clear the cookie.",
            "parameters": [REFRESH_COOKIE_PARAM],
            "responses": {"204": {"description": "Logged out (also without a live session)."}, "403": CROSS_SITE},
        }
    }

    async def get(self) -> None:
        self.check_origin()
        token = self.get_cookie(REFRESH_COOKIE)
        if token:
            await self.accounts.end_session(token_digest(token))
        self.clear_cookie_and_end()


class LogoutAllHandler(AuthBase):
    """Ends every session of the signed-in user, on every device."""

    openapi = {"post": {"summary": "End every session of the signed-in user.", "responses": {"204": {"description": "Logged out everywhere."}}}}

    async def post(self) -> None:
        await self.accounts.revoke_all(self.username)
        self.clear_cookie_and_end()


class PasswordHandler(AuthBase):
    """``{"pwd": current, "newPwd": new}``: changes the password and ends every session of the user."""

    openapi = {
        "post": {
            "summary": "Change the password (current and new) and end every session of the user.",
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {
                        "pwd": {**PASSWORD, MESSAGE: {"minLength": NEW_PASSWORD_REQUIRED, "maxLength": PASSWORD_TOO_LONG}},
                        "newPwd": {**PASSWORD, MESSAGE: {"minLength": NEW_PASSWORD_REQUIRED, "maxLength": PASSWORD_TOO_LONG}},
                    },
                    "required": ["pwd", "newPwd"],
                    "additionalProperties": False,
                    MESSAGE: {"required": NEW_PASSWORD_REQUIRED},
                }
            ),
            "responses": {
                "204": {"description": "Changed; every session ended."},
                "400": error_response("Missing fields, or a new password too short or long."),
                "403": error_response("Invalid access token, or the current password is wrong."),
                "409": error_response("The account changed meanwhile."),
                "429": LOCKED,
            },
        }
    }

    async def post(self) -> None:
        body = self.json_body()
        current, new = body["pwd"], body["newPwd"]
        check_password_length(current, 0)
        check_password_length(new, self.services.settings.password_min_length)
        user = self.username
        assert user is not None and self.throttle is not None
        limits = {f"user:{fold_username(user)}": self.services.settings.login_max_failures}
        found = await self.check_password(user, current, limits, "Too many failed attempts. Try again later.")
        if found is None:
            raise APIError(403, "Current password is incorrect.")
        old_hash = found["password"]
        new_hash = await self.services.passwords.hash(new)
        if not await self.accounts.set_password(user, new_hash, expected_old=old_hash):
            raise APIError(409, "The account changed meanwhile; try again.")
        self.clear_cookie_and_end()
